package node

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
)

// runOne runs a one-member cluster configured by cfg (Members filled in if nil, DataDir always)
// with opts until the test ends. stop cancels Run and returns what it returned.
func runOne(t *testing.T, cfg Config, opts ...Option) (n *Node, stop func() error) {
	t.Helper()
	if cfg.Members == nil {
		cl, ml := listenLocal(t), listenLocal(t)
		cfg.Members = []Member{{ID: 0, ClientAddr: cl.Addr().String(), MemberAddr: ml.Addr().String()}}
		opts = append(opts, WithListeners(cl, ml))
	}
	cfg.DataDir = t.TempDir()
	n, err := New(cfg, counter.New(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		runErr = n.Run(ctx)
		close(done)
	}()
	stop = func() error {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return within 20 s of its context's end")
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return n, stop
}

// The member's log lines go to Config.Logger: a connection without a valid handshake on the
// member port is closed and logged there.
func TestConfigLoggerGetsTheMembersLines(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	n, _ := runOne(t, cfg)
	waitRole(t, n, 10*time.Second)
	attack(t, n.cfg.Members[0].MemberAddr, []byte("GET / HTTP/1.1\r\n\r\n"), false, logs, "garbage", "no valid handshake")
}

// waitRole waits until the member has a leader (in a one-member cluster: itself).
func waitRole(t *testing.T, n *Node, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); n.Status().Leader < 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no leader within %s: %+v", timeout, n.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A Node runs once: a second Run, while the first runs or after it returned, returns
// ErrRunTwice (it used to bind the ports again, run, and panic closing the loop's channel).
func TestRunTwiceReturnsAnError(t *testing.T) {
	t.Parallel()
	n, stop := runOne(t, DefaultConfig())
	waitRole(t, n, 10*time.Second)
	if err := n.Run(context.Background()); !errors.Is(err, ErrRunTwice) {
		t.Fatalf("Run while running: %v, want ErrRunTwice", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("the first Run: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Run(ctx); !errors.Is(err, ErrRunTwice) {
		t.Fatalf("Run after Run returned: %v, want ErrRunTwice", err)
	}
}

// Events is closed when Run returns: after a clean stop, and after a Run that failed to start.
// EventStarted came once in the first, never in the second (tandem node's start banner waits
// for it).
func TestEventsClosedWhenRunReturns(t *testing.T) {
	t.Parallel()
	n, stop := runOne(t, DefaultConfig())
	waitRole(t, n, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	kinds := drained(t, n.Events(), "after a clean stop")
	started := slices.Index(kinds, EventStarted)
	if started < 0 || slices.Contains(kinds[started+1:], EventStarted) || !slices.Contains(kinds[started:], EventRoleChange) ||
		slices.Contains(kinds[:started], EventRoleChange) {
		t.Fatalf("a member that started emitted %v: want started once, before its role changes", kinds)
	}

	// A member port someone else holds: Run fails at once, and closes Events too.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := DefaultConfig()
	cfg.Members = []Member{{ID: 0, ClientAddr: "127.0.0.1:1", MemberAddr: taken.Addr().String()}}
	cfg.DataDir = t.TempDir()
	n2, err := New(cfg, counter.New())
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Run(context.Background()); err == nil {
		t.Fatal("Run on a taken port returned nil")
	}
	if kinds := drained(t, n2.Events(), "after a failed start"); slices.Contains(kinds, EventStarted) {
		t.Fatalf("a member that could not bind its port emitted %v", kinds)
	}
}

// drained reads events until the channel is closed, failing the test if it is not within a few
// seconds, and returns the kinds of those it read.
func drained(t *testing.T, events <-chan Event, when string) (kinds []EventKind) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return kinds
			}
			kinds = append(kinds, ev.Kind)
		case <-timeout:
			t.Fatalf("Events not closed %s", when)
		}
	}
}

// listenLocal binds an ephemeral loopback port, closed when the test ends if nothing else did.
func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// With WithListeners a member serves on listeners bound before it was configured (their ports
// in Members), so no other process can take a port between choosing and binding it; Run closes
// them when it returns.
func TestWithListenersServesOnTheGivenListeners(t *testing.T) {
	t.Parallel()
	cl, ml := listenLocal(t), listenLocal(t)
	cfg := DefaultConfig()
	cfg.Members = []Member{{ID: 0, ClientAddr: cl.Addr().String(), MemberAddr: ml.Addr().String()}}
	n, stop := runOne(t, cfg, WithListeners(cl, ml))
	waitRole(t, n, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Endpoints: []string{cl.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	if v := inc(ctx, t, c); v != 1 {
		t.Fatalf("first increment returned %d", v)
	}
	c.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, l := range []net.Listener{cl, ml} {
		if conn, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
			conn.Close()
			t.Fatalf("%s still accepts connections after Run returned", l.Addr())
		}
	}

	// A bind address and a listener for the same port are one too many.
	cfg.ClientBind, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	if _, err := New(cfg, counter.New(), WithListeners(listenLocal(t), nil)); err == nil ||
		!strings.Contains(err.Error(), "ClientBind") {
		t.Fatalf("New with ClientBind and a client listener: %v", err)
	}
}

// A follower restarted on a wiped data directory starts unverified (Status.Unverified: no vote,
// no campaign); the leader, which would never believe it holds less than it acknowledged, hands
// leadership over, and the new leader repairs it; verified (with a vote floor at the terms it
// heard), it counts again: with the old leader stopped, it and the third serve on, nothing lost.
// (A wiped member no leader can repair stops with ErrLostData: consensus.TestLostDataStopsTheMember,
// cmd/tandem.TestWipedMemberWaitsWhenNoOtherLeaderCanRepairIt.)
func TestWipedMemberRejoinsVerified(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	l, _ := c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	for range 40 {
		inc(ctx, t, cl)
	}
	victim := (l + 1) % 3
	m := c.members[victim]
	// Applied implies durable in its log: the leader saw it acknowledge the 40 commands.
	for deadline := time.Now().Add(10 * time.Second); m.n.Status().Applied < c.members[l].n.Status().Commit; {
		if time.Now().After(deadline) {
			t.Fatalf("the victim did not apply the commands: %+v", m.n.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := m.n.Status(); st.Unverified {
		t.Fatalf("a founder that took part is unverified: %+v", st)
	}
	c.stop(victim)
	if err := os.RemoveAll(m.cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	c.start(victim)
	m = c.members[victim]
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := m.n.Status()
		if !st.Unverified && st.VoteFloor > 0 && st.Applied >= 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the wiped member was not repaired and verified within 30 s: %+v", st)
		}
		select {
		case err := <-m.done:
			t.Fatalf("the wiped member stopped: %v", err)
		default:
		}
	}
	c.stop(l)
	if v := inc(ctx, t, cl); v != 41 {
		t.Fatalf("counter %d after 41 increments", v)
	}
}
