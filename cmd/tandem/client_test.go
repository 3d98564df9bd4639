package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
)

func runCLI(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

func TestClientWithNoClusterFailsWithinTimeout(t *testing.T) {
	bin := tandemBinary(t)
	addrs, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, stderr, code := runCLI(t, bin, "client", "increment", "--endpoints", strings.Join(addrs, ","), "--timeout", "2s")
	took := time.Since(start)
	if code != exitFailed {
		t.Fatalf("exit code %d, want %d; stderr: %s", code, exitFailed, stderr)
	}
	if !strings.Contains(stderr, "reachable 0 of 3, need 2") {
		t.Fatalf("stderr does not say what is missing: %q", stderr)
	}
	if took > 10*time.Second {
		t.Fatalf("took %s with --timeout 2s", took)
	}
	if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("want a one-line reason, got %q", stderr)
	}
	_, _, code = runCLI(t, bin, "client", "frobnicate")
	if code != exitUsage {
		t.Fatalf("a bad verb exited %d, want %d", code, exitUsage)
	}
}

func TestCLIClientsAcrossLeaderKill(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	l := pc.startAll()
	eps := strings.Join(pc.clients, ",")
	var attempted, acked, unknown atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				attempted.Add(1)
				out, stderr, code := runCLI(t, pc.bin, "client", "increment", "--endpoints", eps, "--timeout", "15s")
				switch code {
				case exitOK:
					if !strings.HasPrefix(out, "OK: counter=") {
						t.Errorf("output %q", out)
					}
					acked.Add(1)
				case exitUnknown:
					unknown.Add(1)
				default:
					t.Errorf("increment exited %d: %s", code, stderr)
				}
			}
		}()
	}
	for acked.Load() < 5 {
		time.Sleep(10 * time.Millisecond)
	}
	pc.kill(l)
	target := acked.Load() + 10
	deadline := time.Now().Add(60 * time.Second)
	for acked.Load() < target && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if acked.Load() < target {
		t.Fatalf("CLI increments did not continue after the leader was killed: %d acked", acked.Load())
	}
	out, stderr, code := runCLI(t, pc.bin, "client", "get", "--endpoints", eps)
	if code != 0 {
		t.Fatalf("get exited %d: %s", code, stderr)
	}
	var final int64
	if _, err := fmt.Sscan(strings.TrimPrefix(strings.TrimSpace(out), "VALUE: "), &final); err != nil {
		t.Fatalf("get printed %q", out)
	}
	if final < acked.Load() || final > attempted.Load() {
		t.Fatalf("acked %d ≤ final %d ≤ attempted %d does not hold", acked.Load(), final, attempted.Load())
	}
	t.Logf("acked %d, unknown %d, attempted %d, final %d", acked.Load(), unknown.Load(), attempted.Load(), final)
}

// sessionAcrossDowntime stops every member for longer than the session timeout and starts them
// again: the same client object carries on with the same session.
func sessionAcrossDowntime(t *testing.T, members int) {
	pc := newProcCluster(t, members)
	pc.extraArgs = []string{"--session-timeout", "2s"}
	for i := range members {
		pc.start(i)
	}
	pc.leader(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: pc.clients})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v1, err := increment(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	session := c.SessionID()
	for i := range members {
		pc.kill(i)
	}
	// Down for three session timeouts; the client waits, and comes to say for what.
	downUntil := time.Now().Add(6 * time.Second)
	want := fmt.Sprintf("reachable 0 of %d, need %d", members, members/2+1)
	said := ""
	for time.Now().Before(downUntil) {
		if w := c.Waiting(); !w.Attached {
			said = w.String()
		}
		time.Sleep(100 * time.Millisecond)
	}
	if said != want {
		t.Fatalf("after %s with every member down the client says %q, want %q", 6*time.Second, said, want)
	}
	for i := range members {
		pc.start(i)
	}
	v2, err := increment(ctx, c)
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if v2 != v1+1 || c.SessionID() != session {
		t.Fatalf("after the restart: value %d (before %d), session %s (before %s)", v2, v1, c.SessionID(), session)
	}
}

func TestSessionSurvivesFullStopLongerThanTimeout(t *testing.T) {
	t.Parallel()
	sessionAcrossDowntime(t, 3)
}

// The seed's reconnect analysis: a one-member cluster stopped and restarted; the Aeron client
// never came back, this one does by itself.
func TestSessionSurvivesOneMemberRestart(t *testing.T) {
	t.Parallel()
	sessionAcrossDowntime(t, 1)
}

// Linearizable queries: a query never returns a value older than an increment acknowledged
// before the query started, checked over a concurrent history.
func TestQueriesNeverStale(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	l := pc.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type op struct {
		query      bool
		start, end time.Time
		value      int64
	}
	var mu sync.Mutex
	var history []op
	var wg sync.WaitGroup
	var clients []*client.Client
	for range 4 {
		c, err := client.Dial(ctx, client.Config{Endpoints: pc.clients})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	stop := make(chan struct{})
	for g, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				q := (g+k)%2 == 0
				start := time.Now()
				var v int64
				var err error
				if q {
					v, err = get(ctx, c)
				} else {
					v, err = increment(ctx, c)
				}
				if err != nil {
					t.Errorf("op: %v", err)
					return
				}
				mu.Lock()
				history = append(history, op{query: q, start: start, end: time.Now(), value: v})
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(history) }
	for count() < 200 {
		time.Sleep(10 * time.Millisecond)
	}
	pc.kill(l) // reads across a leader change, too
	n := count()
	for count() < n+200 {
		select {
		case <-ctx.Done():
			t.Fatalf("history stalled at %d operations", count())
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(stop)
	wg.Wait()
	queries := 0
	for _, q := range history {
		if !q.query {
			continue
		}
		queries++
		for _, w := range history {
			if !w.query && w.end.Before(q.start) && q.value < w.value {
				t.Fatalf("a query that started after increment %d was acknowledged returned %d", w.value, q.value)
			}
		}
	}
	if queries < 100 {
		t.Fatalf("only %d queries in the history", queries)
	}
}

// A paused leader (SIGSTOP) still accepts connections but answers nothing: the client's
// per-attempt deadline moves it to the new leader, and its command is applied once.
func TestPausedLeaderDoesNotStallClient(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	l := pc.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := pc.dial(ctx)
	before, err := increment(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	p := pc.procs[l]
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	start := time.Now()
	after, err := increment(ctx, c)
	if err != nil {
		t.Fatalf("increment with the leader paused: %v", err)
	}
	if after != before+1 {
		t.Fatalf("increment returned %d after %d", after, before)
	}
	t.Logf("command acknowledged %s after the leader was paused", time.Since(start).Round(time.Millisecond))
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	// The paused member rejoins as a follower; the value is the same everywhere.
	v, err := get(ctx, c)
	if err != nil || v != after {
		t.Fatalf("get %d %v, want %d", v, err, after)
	}
}
