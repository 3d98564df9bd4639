package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Membership changes on real `tandem node` processes, under a continuous load of increments:
// members join, are removed, replaced and rebuilt in place through `tandem node N --join` and
// `tandem cluster`, killed and restarted with their first command lines. At the end the counter,
// read by a query, equals the increments acknowledged (plus at most those whose outcome was
// reported unknown), and no client saw an error.

// addJoiner prepares member id (the next one) to join through the client addresses join, on
// ephemeral ports bound now and handed to its first start (like the founders'), with flags
// added to its command line. Its command line is kept: a restart repeats it, --join included.
func (pc *procCluster) addJoiner(id int, join []string, flags ...string) {
	pc.t.Helper()
	if id != len(pc.procs) {
		pc.t.Fatalf("addJoiner(%d): the next member is %d", id, len(pc.procs))
	}
	ls, err := listenLocal(2)
	if err != nil {
		pc.t.Fatal(err)
	}
	client, member := ls[0], ls[1]
	pc.t.Cleanup(func() { client.Close(); member.Close() })
	pc.ports = append(pc.ports, [2]net.Listener{client, member})
	pc.procs = append(pc.procs, nil)
	pc.clients = append(pc.clients, client.Addr().String())
	pc.argv[id] = append([]string{"--join", strings.Join(join, ","), "--data", pc.dataDir(id),
		"--client-addr", client.Addr().String(), "--member-addr", member.Addr().String()}, flags...)
}

// dumpOnFailure logs the output of every process the test started, if it fails (or always,
// with TANDEM_TEST_DUMP set).
func (pc *procCluster) dumpOnFailure() {
	pc.t.Cleanup(func() {
		if !pc.t.Failed() && os.Getenv("TANDEM_TEST_DUMP") == "" {
			return
		}
		for _, p := range pc.started {
			pc.t.Logf("member %d (pid %d) output:\n%s", p.id, p.cmd.Process.Pid, p.output())
		}
	})
}

// endpoints are the client addresses of the members ids.
func (pc *procCluster) endpoints(ids ...int) []string {
	var eps []string
	for _, i := range ids {
		eps = append(eps, pc.clients[i])
	}
	return eps
}

// stop sends member i SIGTERM (a leader hands over first) and waits for it to exit 0.
func (pc *procCluster) stop(i int) {
	pc.t.Helper()
	if err := pc.procs[i].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		pc.t.Fatal(err)
	}
	if out, code := pc.waitExit(i, 15*time.Second, fmt.Sprintf("member %d, stopped,", i)); code != 0 {
		pc.t.Fatalf("member %d exited %d when stopped; output:\n%s", i, code, out)
	}
}

// tandemCluster runs `tandem cluster --endpoints eps args…`.
func (pc *procCluster) tandemCluster(eps []string, args ...string) (stdout, stderr string, code int) {
	pc.t.Helper()
	return runWithin(pc.t, 60*time.Second, pc.bin, append([]string{"cluster", "--endpoints", strings.Join(eps, ",")}, args...)...)
}

// mustCluster runs `tandem cluster` and fails the test unless it exits 0.
func (pc *procCluster) mustCluster(eps []string, args ...string) string {
	pc.t.Helper()
	start := time.Now()
	stdout, stderr, code := pc.tandemCluster(eps, args...)
	if code != exitOK {
		pc.t.Fatalf("tandem cluster %s exited %d after %s; stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code,
			time.Since(start).Round(time.Millisecond), stdout, stderr)
	}
	pc.t.Logf("tandem cluster %s (%s): %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout))
	return stdout
}

// listMembers is `tandem cluster list-members --json` through eps, as "id:raft-id" words, a
// learner's marked "(learner)", ordered by id then raft id.
func (pc *procCluster) listMembers(eps []string) (string, error) {
	stdout, stderr, code := pc.tandemCluster(eps, "--json", "--timeout", "5s", "list-members")
	if code != exitOK {
		return "", fmt.Errorf("list-members exited %d: %s", code, strings.TrimSpace(stderr))
	}
	var resp wire.AdminResponse
	if err := json.Unmarshal([]byte(stdout), &resp); err != nil {
		return "", fmt.Errorf("list-members --json printed %q: %v", stdout, err)
	}
	return membersText(resp.Members), nil
}

func membersText(ms []wire.AdminMember) string {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b wire.AdminMember) int {
		if a.ID != b.ID {
			return a.ID - b.ID
		}
		return int(a.RaftID) - int(b.RaftID)
	})
	words := make([]string, len(ms))
	for i, m := range ms {
		words[i] = fmt.Sprintf("%d:%d", m.ID, m.RaftID)
		if m.Role != "voter" {
			words[i] += "(" + m.Role + ")"
		}
	}
	return strings.Join(words, " ")
}

// waitMembers polls list-members through eps until it shows want (membersText), for up to d,
// and returns how long that took.
func (pc *procCluster) waitMembers(eps []string, want string, d time.Duration, what string) time.Duration {
	pc.t.Helper()
	start := time.Now()
	var got string
	var err error
	for deadline := start.Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got, err = pc.listMembers(eps); err == nil && got == want {
			took := time.Since(start)
			pc.t.Logf("%s: list-members shows %s (after %s)", what, got, took.Round(time.Millisecond))
			return took
		}
	}
	pc.t.Fatalf("%s: list-members shows %q (%v) after %s, want %q", what, got, err, d, want)
	return 0
}

// waitCaughtUp waits until the leader, asked through eps with tandem cluster status, counts
// member id within lag entries of its log, and returns how long that took.
func (pc *procCluster) waitCaughtUp(eps []string, id int, lag uint64, d time.Duration) time.Duration {
	pc.t.Helper()
	start := time.Now()
	var last string
	for deadline := start.Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		stdout, _, _ := pc.tandemCluster(eps, "--json", "--timeout", "5s", "status")
		var entries []struct {
			Status *wire.MemberStatus `json:"status"`
		}
		if err := json.Unmarshal([]byte(stdout), &entries); err != nil {
			last = stdout
			continue
		}
		for _, e := range entries {
			if e.Status == nil || e.Status.Role != "leader" {
				continue
			}
			last = fmt.Sprintf("the leader (member %d) shows lags %v", e.Status.ID, e.Status.Lag)
			if l, ok := e.Status.Lag[fmt.Sprint(id)]; ok && l <= lag {
				took := time.Since(start)
				pc.t.Logf("member %d caught up after %s: %s", id, took.Round(time.Millisecond), last)
				return took
			}
		}
	}
	pc.t.Fatalf("member %d not within %d entries of the leader's log after %s: %s", id, lag, d, last)
	return 0
}

// waitRemoved waits for member i to stop by itself as a removed member: exit code 1, saying
// that it was removed and how to come back.
func (pc *procCluster) waitRemoved(i int, d time.Duration, what string) {
	pc.t.Helper()
	start := time.Now()
	out, code := pc.waitExit(i, d, what)
	if code != exitFailed || !strings.Contains(out, "was removed") ||
		!strings.Contains(out, fmt.Sprintf("tandem clean %d", i)) || !strings.Contains(out, "--join") || strings.Contains(out, "panic:") {
		pc.t.Fatalf("%s exited %d; want %d saying it was removed and how to come back; output:\n%s", what, code, exitFailed, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	pc.t.Logf("%s stopped (exit %d) %s later: %s", what, code, time.Since(start).Round(time.Millisecond), lines[len(lines)-1])
}

// procLoad is a few clients, each with its own session, sending increments in a loop and
// counting the acknowledged ones.
type procLoad struct {
	t     *testing.T
	begin time.Time
	// base is the counter's value before the load (increments acknowledged before it started).
	base  int64
	stopc chan struct{}
	wg    sync.WaitGroup

	acked, unknown, failed atomic.Int64
	// suspended counts the increments refused because the cluster was suspended: failures,
	// unless allowSuspended (set before the suspension).
	suspended      atomic.Int64
	allowSuspended atomic.Bool

	mu     sync.Mutex
	acks   []time.Duration // when each increment was acknowledged, since begin
	lats   []time.Duration // how long each took, in the order of acks
	values map[int64]bool  // the counter values the acknowledged increments returned
	errs   []string        // the first client errors
	slow   time.Duration   // the longest wait for an acknowledged increment
	marks  []loadMark
}

type loadMark struct {
	name string
	at   time.Duration
}

// startLoad starts clients sending increments to the cluster through endpoints, and waits for
// their first acknowledgements.
func startLoad(t *testing.T, endpoints []string, clients int) *procLoad {
	t.Helper()
	l := &procLoad{t: t, begin: time.Now(), stopc: make(chan struct{}), values: map[int64]bool{}}
	for g := range clients {
		dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c, err := client.Dial(dctx, client.Config{Endpoints: endpoints})
		cancel()
		if err != nil {
			t.Fatalf("client %d: %v", g, err)
		}
		t.Cleanup(func() { c.Close() })
		l.wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-l.stopc:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				sent := time.Now()
				v, err := increment(ctx, c)
				cancel()
				l.note(g, k, v, err, time.Since(sent))
			}
		})
	}
	l.waitAcked(20, 20*time.Second, "the load's first increments")
	return l
}

func (l *procLoad) note(g, k int, v int64, err error, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at := time.Since(l.begin)
	switch {
	case err == nil && l.values[v]:
		l.failed.Add(1)
		l.errs = append(l.errs, fmt.Sprintf("%s client %d increment %d: value %d returned twice", at, g, k, v))
		return
	case err == nil:
		l.values[v] = true
		l.acks = append(l.acks, at)
		l.lats = append(l.lats, took)
		l.slow = max(l.slow, took)
		l.acked.Add(1)
		return
	case errors.Is(err, client.ErrOutcomeUnknown):
		l.unknown.Add(1)
	case errors.Is(err, client.ErrNotApplied) && strings.Contains(err.Error(), "suspended") && l.allowSuspended.Load():
		l.suspended.Add(1)
		return
	default:
		l.failed.Add(1)
	}
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf("%s client %d increment %d (after %s): %v", at.Round(time.Millisecond), g, k,
			took.Round(time.Millisecond), err))
	}
}

// waitAcked waits (up to d) until n more increments than now are acknowledged.
func (l *procLoad) waitAcked(n int64, d time.Duration, what string) {
	l.t.Helper()
	want := l.acked.Load() + n
	for deadline := time.Now().Add(d); l.acked.Load() < want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			l.mu.Lock()
			errs := strings.Join(l.errs, "\n")
			l.mu.Unlock()
			l.t.Fatalf("%s: %d increments acknowledged, want %d within %s; client errors:\n%s", what, l.acked.Load(), want, d, errs)
		}
	}
}

// mark names the moment now, for the phases the report shows.
func (l *procLoad) mark(name string) {
	l.mu.Lock()
	l.marks = append(l.marks, loadMark{name, time.Since(l.begin)})
	l.mu.Unlock()
}

// finish stops the load, reads the counter through endpoints, and checks it against the
// acknowledged increments; any client error fails the test. It logs the figures: per phase
// (between marks), the increments acknowledged, their rate and the longest time without one.
func (l *procLoad) finish(endpoints []string) {
	l.t.Helper()
	l.mark("end")
	close(l.stopc)
	l.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: endpoints})
	if err != nil {
		l.t.Fatalf("reading the counter: %v", err)
	}
	defer c.Close()
	v, err := get(ctx, c)
	if err != nil {
		l.t.Fatalf("reading the counter: %v", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	acked, unknown, failed := l.acked.Load(), l.unknown.Load(), l.failed.Load()
	from := time.Duration(0)
	for _, m := range l.marks {
		n, gap, prev := 0, time.Duration(0), from
		for _, a := range l.acks {
			if a > from && a <= m.at {
				n++
				gap, prev = max(gap, a-prev), a
			}
		}
		gap = max(gap, m.at-prev)
		if m.at-from < time.Millisecond {
			continue // a mark right before another: no phase
		}
		l.t.Logf("load, %s (%s): %d increments acknowledged, %.0f/s, longest without one %s", m.name,
			(m.at - from).Round(time.Millisecond), n, float64(n)/(m.at-from).Seconds(), gap.Round(time.Millisecond))
		from = m.at
	}
	l.t.Logf("load: %d increments acknowledged, %d of unknown outcome, %d failed; counter %d (%d before the load); slowest acknowledged %s",
		acked, unknown, failed, v, l.base, l.slow.Round(time.Millisecond))
	if v -= l.base; v < acked || v > acked+unknown {
		l.t.Errorf("counter %d (%d before the load) after %d acknowledged increments and %d of unknown outcome", v+l.base, l.base, acked, unknown)
	}
	if unknown+failed > 0 {
		l.t.Errorf("%d client errors (the bar is none):\n%s", unknown+failed, strings.Join(l.errs, "\n"))
	}
}

// A fourth member joins (tandem node 3 --join) after a few thousand increments, so that it
// catches up from a snapshot and the log, and is promoted to voter by itself; then it is removed
// (tandem cluster remove-member 3) and stops, saying so.
func TestProcessMemberJoinsAndIsRemoved(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	pc.startAll()
	load := startLoad(t, pc.endpoints(0, 1, 2), 3)
	load.waitAcked(3000, 20*time.Second, "before the join")
	load.mark("before the join")

	pc.addJoiner(3, pc.endpoints(0, 1, 2))
	pc.start(3)
	pc.waitMembers(pc.endpoints(0, 1, 2), "0:1 1:2 2:3 3:4", 20*time.Second, "the joiner is a voter")
	load.mark("joining")
	pc.waitOutput(3, "joined the cluster as a learner", time.Second)
	pc.waitCaughtUp(pc.endpoints(0, 1, 2, 3), 3, 10, 10*time.Second)
	if !strings.Contains(pc.procs[3].output(), "snapshot installed from the leader") {
		t.Log("the joiner caught up from the log alone (no snapshot installed)")
	}
	load.waitAcked(500, 20*time.Second, "with four voters")
	load.mark("four voters")

	pc.mustCluster(pc.endpoints(0, 1, 2, 3), "remove-member", "3")
	pc.waitRemoved(3, 15*time.Second, "member 3, removed,")
	pc.waitMembers(pc.endpoints(0, 1, 2), "0:1 1:2 2:3", 10*time.Second, "after the removal")
	load.mark("removing")
	load.waitAcked(500, 20*time.Second, "after the removal")
	load.finish(pc.endpoints(0, 1, 2))
}

// The leader is removed (tandem cluster remove-member LEADER): it hands leadership over first,
// then stops with its message (exit 1); the two others serve on; started again on its data, it
// refuses to serve (exit 1, the same message).
func TestProcessLeaderIsRemoved(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	l := pc.startAll()
	load := startLoad(t, pc.endpoints(0, 1, 2), 3)
	load.waitAcked(500, 20*time.Second, "before the removal")
	load.mark("before the removal")

	pc.mustCluster(pc.endpoints(0, 1, 2), "remove-member", fmt.Sprint(l))
	pc.waitRemoved(l, 15*time.Second, fmt.Sprintf("member %d, the removed leader,", l))
	if out := pc.procs[(l+1)%3].output() + pc.procs[(l+2)%3].output(); !strings.Contains(out, "ROLE CHANGE: LEADER") {
		t.Fatalf("no other member leads after the leader was removed")
	}
	rest := slices.DeleteFunc([]int{0, 1, 2}, func(i int) bool { return i == l })
	want := fmt.Sprintf("%d:%d %d:%d", rest[0], rest[0]+1, rest[1], rest[1]+1)
	pc.waitMembers(pc.endpoints(rest...), want, 10*time.Second, "after the leader's removal")
	load.mark("removing the leader")
	load.waitAcked(500, 20*time.Second, "after the leader's removal")
	load.mark("two voters")

	pc.start(l)
	pc.waitRemoved(l, 20*time.Second, fmt.Sprintf("member %d, started again on its data,", l))
	pc.waitMembers(pc.endpoints(rest...), want, 10*time.Second, "after the removed member's restart")
	load.waitAcked(200, 20*time.Second, "after the removed member's restart")
	load.finish(pc.endpoints(rest...))
}

// replaceDeadMember kills member 2, starts member 3 as a learner (tandem node 3 --join …
// --learner), waits until it is caught up and replaces 2 with it (tandem cluster replace-member
// 2 --with 3): voters 0, 1 and 3.
func replaceDeadMember(t *testing.T) (*procCluster, *procLoad) {
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	pc.startAll()
	load := startLoad(t, pc.endpoints(0, 1, 2), 3)
	load.waitAcked(1500, 20*time.Second, "before the kill")
	load.mark("before the kill")

	pc.kill(2)
	pc.leader(15 * time.Second)
	load.waitAcked(200, 20*time.Second, "with member 2 killed")
	load.mark("member 2 killed")

	pc.addJoiner(3, pc.endpoints(0, 1, 2), "--learner")
	pc.start(3)
	pc.waitMembers(pc.endpoints(0, 1), "0:1 1:2 2:3 3:4(learner)", 20*time.Second, "the learner joined")
	pc.waitCaughtUp(pc.endpoints(0, 1, 3), 3, 10, 20*time.Second)
	// A learner that joined to stay one is not promoted by itself.
	if got, err := pc.listMembers(pc.endpoints(0, 1)); err != nil || got != "0:1 1:2 2:3 3:4(learner)" {
		t.Fatalf("once caught up, list-members shows %q (%v): the learner must stay one", got, err)
	}
	load.mark("the learner catching up")

	pc.mustCluster(pc.endpoints(0, 1, 3), "replace-member", "2", "--with", "3")
	pc.waitMembers(pc.endpoints(0, 1, 3), "0:1 1:2 3:4", 10*time.Second, "after the replacement")
	load.mark("replacing")
	load.waitAcked(500, 20*time.Second, "after the replacement")
	return pc, load
}

// A dead member is replaced by a learner; started again on its old data (it was down during the
// removal), the replaced member learns from the others that it was removed, and stops.
func TestProcessDeadMemberIsReplaced(t *testing.T) {
	t.Parallel()
	pc, load := replaceDeadMember(t)
	load.mark("voters 0, 1, 3")
	pc.start(2)
	pc.waitRemoved(2, 20*time.Second, "member 2, replaced while it was down,")
	load.waitAcked(200, 20*time.Second, "after the replaced member's restart")
	load.finish(pc.endpoints(0, 1, 3))
}

// After a replacement (voters 0, 1, 3), every member is stopped and started again with the
// command line it was first started with: the founders with the founding --members list (which
// names member 2, not 3), the learner with --join and --learner. The membership comes from the
// data directories (list-members unchanged), the counter is intact, and the replaced member,
// started with its own first command line, stops as removed.
func TestProcessRestartWithFirstCommandLinesAfterReplacement(t *testing.T) {
	t.Parallel()
	pc, load := replaceDeadMember(t)
	load.mark("voters 0, 1, 3")
	var wg sync.WaitGroup
	start := time.Now()
	for _, i := range []int{0, 1, 3} {
		wg.Go(func() { pc.stop(i) })
	}
	wg.Wait()
	t.Logf("members 0, 1 and 3 stopped (SIGTERM) in %s", time.Since(start).Round(time.Millisecond))
	for _, i := range []int{0, 1, 2, 3} {
		pc.start(i)
	}
	pc.waitRemoved(2, 20*time.Second, "member 2, replaced while it was down, restarted")
	pc.leader(15 * time.Second)
	for _, i := range []int{0, 1, 3} {
		pc.waitOutput(i, "the membership comes from the data directory", 10*time.Second)
	}
	pc.waitMembers(pc.endpoints(0, 1, 3), "0:1 1:2 3:4", 10*time.Second, "after the restart")
	load.mark("the full restart")
	load.waitAcked(500, 20*time.Second, "after the restart")
	load.finish(pc.endpoints(0, 1, 3))
}

// A removed member comes back as its message says: tandem clean N, then tandem node N --join on
// its old addresses. It joins anew under a new raft id (4) and is promoted; then member 0 is
// killed, and 1 and the returned 2 serve on.
func TestProcessRemovedMemberComesBackAsItsMessageSays(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	pc.startAll()
	load := startLoad(t, pc.endpoints(0, 1, 2), 3)
	load.waitAcked(500, 20*time.Second, "before the removal")
	load.mark("before the removal")
	pc.mustCluster(pc.endpoints(0, 1, 2), "remove-member", "2")
	pc.waitRemoved(2, 15*time.Second, "member 2, removed,")
	load.mark("removing")

	stdout, stderr, code := runWithin(t, 20*time.Second, pc.bin, "clean", "--data", pc.dir, "2")
	if code != exitOK || !strings.Contains(stdout, "removed "+pc.dataDir(2)) {
		t.Fatalf("tandem clean 2 exited %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	pc.argv[2] = []string{"--members", pc.members, "--data", pc.dataDir(2), "--join", strings.Join(pc.endpoints(0, 1), ",")}
	pc.start(2)
	pc.waitMembers(pc.endpoints(0, 1), "0:1 1:2 2:4", 20*time.Second, "member 2 back")
	load.mark("coming back")
	load.waitAcked(500, 20*time.Second, "with member 2 back")
	pc.kill(0)
	pc.leader(15 * time.Second)
	load.waitAcked(500, 20*time.Second, "with member 0 killed")
	load.mark("member 0 killed")
	load.finish(pc.endpoints(1, 2))
}

// The live leader is replaced by a caught-up learner (tandem cluster replace-member LEADER
// --with 3): it hands leadership over first, then stops as removed; 3 votes in its place.
func TestProcessLiveLeaderIsReplaced(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	l := pc.startAll()
	load := startLoad(t, pc.endpoints(0, 1, 2), 3)
	load.waitAcked(500, 20*time.Second, "before the join")
	load.mark("before the join")
	pc.addJoiner(3, pc.endpoints(0, 1, 2), "--learner")
	pc.start(3)
	pc.waitCaughtUp(pc.endpoints(0, 1, 2, 3), 3, 10, 20*time.Second)
	load.mark("the learner joining")
	pc.mustCluster(pc.endpoints(0, 1, 2, 3), "replace-member", fmt.Sprint(l), "--with", "3")
	pc.waitRemoved(l, 15*time.Second, fmt.Sprintf("member %d, the replaced leader,", l))
	rest := slices.DeleteFunc([]int{0, 1, 2, 3}, func(i int) bool { return i == l })
	want := make([]string, len(rest))
	for i, id := range rest {
		want[i] = fmt.Sprintf("%d:%d", id, id+1)
	}
	pc.waitMembers(pc.endpoints(rest...), strings.Join(want, " "), 10*time.Second, "after the replacement")
	load.mark("replacing the leader")
	load.waitAcked(500, 20*time.Second, "after the replacement")
	load.finish(pc.endpoints(rest...))
}

// A member whose data directory was wiped is rebuilt in place: started on its old addresses with
// --join, it is added under a new raft id (4), and once caught up replaces its old raft id (3).
// Then member 0 is killed: 1 and the rebuilt 2 serve on, so 2 really holds the data.
func TestProcessWipedMemberIsRebuiltInPlace(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	pc.startAll()
	load := startLoad(t, pc.endpoints(0, 1, 2), 3)
	load.waitAcked(1500, 20*time.Second, "before the wipe")
	load.mark("before the wipe")

	pc.kill(2)
	if err := os.RemoveAll(pc.dataDir(2)); err != nil {
		t.Fatal(err)
	}
	pc.leader(15 * time.Second)
	load.waitAcked(200, 20*time.Second, "with member 2 down")
	load.mark("member 2 down")
	pc.argv[2] = []string{"--members", pc.members, "--data", pc.dataDir(2), "--join", strings.Join(pc.endpoints(0, 1), ",")}
	pc.start(2)
	pc.waitMembers(pc.endpoints(0, 1), "0:1 1:2 2:4", 30*time.Second, "member 2 rebuilt")
	load.mark("rebuilding")
	pc.waitOutput(2, "raft_id=4", 5*time.Second)
	load.waitAcked(500, 20*time.Second, "after the rebuild")
	load.mark("rebuilt")

	pc.kill(0)
	if l := pc.leader(15 * time.Second); l == 0 {
		t.Fatal("member 0 still leads after it was killed")
	}
	load.waitAcked(500, 20*time.Second, "with member 0 killed")
	load.mark("member 0 killed")

	// Every member again with the command line it was first started with: member 2's is the
	// founding one, without --join, on its rebuilt data.
	pc.stop(1)
	pc.stop(2)
	delete(pc.argv, 2)
	for i := range 3 {
		pc.start(i)
	}
	pc.leader(15 * time.Second)
	pc.waitMembers(pc.endpoints(0, 1, 2), "0:1 1:2 2:4", 10*time.Second, "after a restart with the first command lines")
	load.mark("restarting")
	load.waitAcked(500, 20*time.Second, "after the restart")
	load.finish(pc.endpoints(0, 1, 2))
}

// The leader is killed, its data directory wiped, and it is started again at once with --join
// on its old addresses (a supervisor restarting it), before the others noticed that it died.
// It should be rebuilt in place like any member (under raft id 4), and serve with one other.
func TestProcessLeaderWipedAndRebuiltAtOnce(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	l := pc.startAll()
	load := startLoad(t, pc.endpoints(0, 1, 2), 3)
	load.waitAcked(1000, 20*time.Second, "before the wipe")
	load.mark("before the wipe")
	rest := slices.DeleteFunc([]int{0, 1, 2}, func(i int) bool { return i == l })

	pc.kill(l)
	if err := os.RemoveAll(pc.dataDir(l)); err != nil {
		t.Fatal(err)
	}
	pc.argv[l] = []string{"--members", pc.members, "--data", pc.dataDir(l), "--join", strings.Join(pc.endpoints(rest...), ",")}
	pc.start(l)
	want := []string{"0:1", "1:2", "2:3"}
	want[l] = fmt.Sprintf("%d:4", l)
	pc.waitMembers(pc.endpoints(rest...), strings.Join(want, " "), 20*time.Second, "the leader rebuilt")
	load.mark("rebuilding the leader")
	pc.kill(rest[0])
	pc.leader(15 * time.Second)
	load.waitAcked(500, 20*time.Second, fmt.Sprintf("with member %d killed", rest[0]))
	load.mark(fmt.Sprintf("member %d killed", rest[0]))
	load.finish(pc.endpoints(l, rest[1]))
}

// A joiner stops after the join's answer (its raft id kept in its data directory) and before
// the leader reached it — a crash or Ctrl+C while the leader cannot reach it yet, or while a
// snapshot is on its way — and is started again with its command line (--join, ignored on a
// directory with data). It should catch up and be promoted like any joiner. Here the leader
// cannot reach the first process: it listens on another member port than the one it advertises.
func TestProcessJoinerRestartedBeforeTheLeaderReachedIt(t *testing.T) {
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	pc.startAll()
	load := startLoad(t, pc.endpoints(0, 1, 2), 3)
	load.waitAcked(500, 20*time.Second, "before the join")

	pc.addJoiner(3, pc.endpoints(0, 1, 2))
	argv := pc.argv[3]
	pc.ports[3][1].Close() // the advertised member port: nobody listens on it until the restart
	pc.ports[3][1] = nil
	elsewhere, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	pc.argv[3] = append(slices.Clone(argv), "--member-bind", elsewhere[0])
	pc.start(3)
	pc.waitOutput(3, "joined the cluster as a learner", 10*time.Second)
	pc.waitMembers(pc.endpoints(0, 1, 2), "0:1 1:2 2:3 3:4(learner)", 10*time.Second, "the joiner added")
	pc.kill(3)
	pc.argv[3] = argv
	pc.start(3)
	pc.waitMembers(pc.endpoints(0, 1, 2), "0:1 1:2 2:3 3:4", 20*time.Second, "the restarted joiner promoted")
	load.mark("joining")
	load.waitAcked(500, 20*time.Second, "with four voters")
	load.finish(pc.endpoints(0, 1, 2, 3))
}

// A member that is paused (SIGSTOP: a hung process) is removed, then resumed: it learns from the
// others that it was removed and stops. The endpoints given to tandem cluster name the live
// members first (TestProcessClusterCommandSkipsAHungMember: the hung one first).
func TestProcessPausedMemberIsRemoved(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	l := pc.startAll()
	v, other := (l+1)%3, (l+2)%3
	load := startLoad(t, pc.endpoints(0, 1, 2), 3)
	load.waitAcked(500, 20*time.Second, "before the pause")
	if err := syscall.Kill(pc.procs[v].cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	load.mark("before the pause")
	load.waitAcked(300, 20*time.Second, fmt.Sprintf("with member %d paused", v))
	pc.mustCluster(pc.endpoints(l, other, v), "remove-member", fmt.Sprint(v))
	want := fmt.Sprintf("%d:%d %d:%d", min(l, other), min(l, other)+1, max(l, other), max(l, other)+1)
	pc.waitMembers(pc.endpoints(l, other), want, 10*time.Second, "after the removal")
	load.mark(fmt.Sprintf("member %d paused, removed", v))
	if err := syscall.Kill(pc.procs[v].cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	pc.waitRemoved(v, 20*time.Second, fmt.Sprintf("member %d, removed while paused, resumed,", v))
	load.mark("resumed")
	load.waitAcked(300, 20*time.Second, "after the resume")
	load.finish(pc.endpoints(l, other))
}

// tandem cluster given every member's address, a hung one (SIGSTOP) first — the default
// endpoints when member 0 hangs — should reach the others: list-members should answer, and
// remove-member remove the hung member, within a few seconds.
func TestProcessClusterCommandSkipsAHungMember(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	l := pc.startAll()
	v := (l + 1) % 3
	if err := syscall.Kill(pc.procs[v].cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	eps := pc.endpoints(v, l, 3-l-v)
	start := time.Now()
	if stdout, stderr, code := pc.tandemCluster(eps, "--timeout", "10s", "list-members"); code != exitOK || time.Since(start) > 5*time.Second {
		t.Errorf("list-members with a hung member first exited %d after %s; stdout:\n%s\nstderr:\n%s", code,
			time.Since(start).Round(time.Millisecond), stdout, stderr)
	}
	start = time.Now()
	if stdout, stderr, code := pc.tandemCluster(eps, "--timeout", "10s", "remove-member", fmt.Sprint(v)); code != exitOK || time.Since(start) > 5*time.Second {
		t.Errorf("remove-member %d, the hung member, listed first, exited %d after %s; stdout:\n%s\nstderr:\n%s", v, code,
			time.Since(start).Round(time.Millisecond), stdout, stderr)
	}
}
