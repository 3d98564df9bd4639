package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
)

// buildTandem builds the tandem binary once per test binary run.
var buildOnce struct {
	sync.Once
	path string
	err  error
}

func tandemBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tandem-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "tandem")
		out, err := exec.Command("go", "build", "-o", buildOnce.path, ".").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// proc is one `tandem node` process.
type proc struct {
	id    int
	cmd   *exec.Cmd
	mu    sync.Mutex
	role  string
	term  uint64
	out   strings.Builder
	exitc chan error
}

func (p *proc) state() (string, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.role, p.term
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// procCluster runs real `tandem node` processes on ephemeral ports, each in its own process
// group, killed when the test ends so a failure leaves no orphan.
type procCluster struct {
	t       *testing.T
	bin     string
	dir     string
	members string
	clients []string
	procs   []*proc
	// ports are each member's client and member ports, bound by newProcCluster, until its first
	// start hands them to the process (--client-fd, --member-fd); a restart binds the addresses
	// again, as a restarted process does.
	ports [][2]net.Listener
	// extraArgs are added to every `tandem node` command line.
	extraArgs []string
	// shell, if set, runs before each member in the same process (`sh -c 'shell; exec tandem …'`),
	// e.g. to lower its limits.
	shell string
	// size is the number of founding members (those of members).
	size int
	// argv, where set, is member i's command line after `tandem node i`, in place of the
	// founding one (--members, --data): a member that joins (addJoiner, rejoin). A restart uses
	// it again, as an operator's unit file would.
	argv map[int][]string
	// started lists every process started, in order (dump).
	started []*proc
}

func newProcCluster(t *testing.T, n int) *procCluster {
	ls, err := listenLocal(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	pc := &procCluster{t: t, bin: tandemBinary(t), dir: t.TempDir(), procs: make([]*proc, n), size: n, argv: map[int][]string{}}
	var parts []string
	for i := range n {
		client, member := ls[2*i], ls[2*i+1]
		pc.ports = append(pc.ports, [2]net.Listener{client, member})
		t.Cleanup(func() { client.Close(); member.Close() })
		parts = append(parts, fmt.Sprintf("%d,%s,%s", i, client.Addr(), member.Addr()))
		pc.clients = append(pc.clients, client.Addr().String())
	}
	pc.members = strings.Join(parts, "|")
	t.Cleanup(pc.killAll)
	return pc
}

// dataDir is member i's data directory.
func (pc *procCluster) dataDir(i int) string { return filepath.Join(pc.dir, fmt.Sprintf("node-%d", i)) }

func (pc *procCluster) start(i int) {
	pc.t.Helper()
	args := []string{"node", strconv.Itoa(i)}
	if argv, ok := pc.argv[i]; ok {
		args = append(args, argv...)
	} else {
		args = append(args, "--members", pc.members, "--data", pc.dataDir(i))
		if pc.size == 1 {
			args = append(args, "--size", "1") // a one-member cluster, on purpose
		}
	}
	args = append(args, pc.extraArgs...)
	cmd := exec.Command(pc.bin, args...)
	if pc.shell != "" {
		cmd = exec.Command("sh", append([]string{"-c", pc.shell + `; exec "$0" "$@"`, pc.bin}, args...)...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	ports := pc.ports[i]
	pc.ports[i] = [2]net.Listener{}
	for j, l := range ports {
		if l == nil {
			continue // bound by the process (a restart), or taken away by the test
		}
		f, err := l.(*net.TCPListener).File() // a duplicate: the process gets it as fd 3 (and 4)
		if err != nil {
			pc.t.Fatal(err)
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		_ = l.Close()
		cmd.Args = append(cmd.Args, []string{"--client-fd", "--member-fd"}[j], strconv.Itoa(2+len(cmd.ExtraFiles)))
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		pc.t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	err = cmd.Start()
	for _, f := range cmd.ExtraFiles {
		_ = f.Close() // the process has its own; a crash must leave no listener behind
	}
	if err != nil {
		pc.t.Fatal(err)
	}
	p := &proc{id: i, cmd: cmd, exitc: make(chan error, 1)}
	pc.procs[i] = p
	pc.started = append(pc.started, p)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			if m := roleBanner.FindStringSubmatch(line); m != nil {
				p.role = m[1]
				p.term, _ = strconv.ParseUint(m[3], 10, 64)
			}
			p.mu.Unlock()
		}
		p.exitc <- cmd.Wait()
	}()
}

// waitExit waits (up to d) for member i, expected to stop by itself, to exit, and returns its
// output and exit code (-1 for a signal); the test fails if it still runs after d, naming what.
func (pc *procCluster) waitExit(i int, d time.Duration, what string) (out string, code int) {
	pc.t.Helper()
	p := pc.procs[i]
	var err error
	select {
	case err = <-p.exitc:
	case <-time.After(d):
		pc.t.Fatalf("%s still runs after %s; output:\n%s", what, d, p.output())
	}
	pc.procs[i] = nil
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		pc.t.Fatalf("%s: %v", what, err)
	}
	return p.output(), code
}

// startAll starts every member and waits for a leader, which it returns.
func (pc *procCluster) startAll() int {
	pc.t.Helper()
	for i := range pc.procs {
		pc.start(i)
	}
	return pc.leader(15 * time.Second)
}

// dial opens a client session on the cluster, closed when the test ends.
func (pc *procCluster) dial(ctx context.Context) *client.Client {
	pc.t.Helper()
	c, err := client.Dial(ctx, client.Config{Endpoints: pc.clients})
	if err != nil {
		pc.t.Fatal(err)
	}
	pc.t.Cleanup(func() { c.Close() })
	return c
}

func (pc *procCluster) kill(i int) {
	p := pc.procs[i]
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exitc:
	case <-time.After(10 * time.Second):
		pc.t.Errorf("node %d did not exit after SIGKILL", i)
	}
	pc.procs[i] = nil
}

func (pc *procCluster) killAll() {
	for i := range pc.procs {
		pc.kill(i)
	}
}

// leader waits for a running process whose last role line says LEADER in the highest term.
func (pc *procCluster) leader(timeout time.Duration) int {
	pc.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		best, bestTerm := -1, uint64(0)
		for i, p := range pc.procs {
			if p == nil {
				continue
			}
			if role, term := p.state(); role == "LEADER" && term >= bestTerm {
				best, bestTerm = i, term
			}
		}
		if best >= 0 {
			return best
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, p := range pc.procs {
		if p != nil {
			pc.t.Logf("node %d output:\n%s", i, p.output())
		}
	}
	pc.t.Fatalf("no leader within %s", timeout)
	return -1
}

func increment(ctx context.Context, c *client.Client) (int64, error) {
	raw, err := c.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement}))
	if err != nil {
		return 0, err
	}
	r, err := counter.DecodeResponse(raw)
	if err != nil {
		return 0, err
	}
	if !r.OK {
		return 0, fmt.Errorf("increment refused: %s", r.Err)
	}
	return r.Value, nil
}

func get(ctx context.Context, c *client.Client) (int64, error) {
	raw, err := c.Query(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpGet}))
	if err != nil {
		return 0, err
	}
	r, err := counter.DecodeResponse(raw)
	if err != nil {
		return 0, err
	}
	return r.Value, nil
}

func TestProcessesSurviveLeaderKillAndFullRestart(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	l := pc.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := pc.dial(ctx)

	// Pipelined increments from several goroutines while the leader is SIGKILLed.
	var acked sync.Map
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	stopSending := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stopSending:
					return
				default:
				}
				v, err := increment(ctx, c)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d increment %d: %w", g, k, err)
					return
				}
				if _, dup := acked.LoadOrStore(v, true); dup {
					errs <- fmt.Errorf("value %d returned twice", v)
					return
				}
			}
		}()
	}
	countAcked := func() int {
		n := 0
		acked.Range(func(_, _ any) bool { n++; return true })
		return n
	}
	waitAcked := func(n int) {
		t.Helper()
		for countAcked() < n {
			select {
			case err := <-errs:
				t.Fatal(err)
			case <-ctx.Done():
				t.Fatalf("only %d increments acknowledged, waiting for %d", countAcked(), n)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitAcked(20) // increments are flowing: now kill the leader under them
	pc.kill(l)
	var nl int
	deadline := time.Now().Add(20 * time.Second)
	for {
		nl = pc.leader(20 * time.Second)
		if nl != l || time.Now().After(deadline) {
			break
		}
	}
	// Commands continue: at least 50 more are acknowledged after the kill.
	waitAcked(countAcked() + 50)
	close(stopSending)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	total := int64(countAcked())
	v, err := get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if v != total {
		t.Fatalf("counter %d, acknowledged increments %d: every command was answered, so they must be equal", v, total)
	}

	// SIGKILL everything, restart: the same counter, the same client.
	pc.start(l)
	for i := range 3 {
		pc.kill(i)
	}
	for i := range 3 {
		pc.start(i)
	}
	pc.leader(15 * time.Second)
	v2, err := get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if v2 != v {
		t.Fatalf("counter %d after SIGKILL of every member, %d before", v2, v)
	}
	if _, err := increment(ctx, c); err != nil {
		t.Fatalf("the client did not carry on after the restart: %v", err)
	}
}
