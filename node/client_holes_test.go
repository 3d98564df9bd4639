package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Issue 15, client liveness: a command the leader answers "unavailable" on a healthy connection
// is resent, under its number. With the followers stopped, a leader without quorum (its election
// timeout, and so its CheckQuorum, is long here) appends one command and refuses the next: its
// uncommitted log may hold one entry only. Once the followers are back, the first commits and
// the resent second is applied. Before the fix the second was never resent: Send waited out its
// context and reported "outcome unknown".
func TestUnavailableCommandIsResent(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.ElectionTicks = 30 // 3–6 s: the leader keeps leading while the followers restart
		cfg.tune = func(rc *replica.Config) { rc.MaxUncommittedBytes = 1 }
	})
	l, term := c.startAll(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// No failover for silence: only a resend on this connection can answer the refused command.
	cl := c.dialWith(ctx, client.Config{AttemptTimeout: time.Hour})
	if v := inc(ctx, t, cl); v != 1 {
		t.Fatalf("first increment %d", v)
	}
	var followers []int
	for i := range c.members {
		if i != l {
			followers = append(followers, i)
			c.stop(i)
		}
	}
	req := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	first := make(chan []byte, 1)
	if err := cl.SendAsync(req, func(reply []byte, err error) {
		if err != nil {
			t.Errorf("the appended command: %v", err)
		}
		first <- reply
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // (appended, in a batch of its own)
	second := make(chan error, 1)
	var reply []byte
	go func() {
		sctx, scancel := context.WithTimeout(ctx, 8*time.Second)
		defer scancel()
		var err error
		reply, err = cl.Send(sctx, req) // refused: the uncommitted log is full
		second <- err
	}()
	time.Sleep(500 * time.Millisecond)
	for _, i := range followers {
		c.start(i)
	}
	if err := <-second; err != nil {
		t.Fatalf("the refused command: %v", err)
	}
	r1, _ := counter.DecodeResponse(<-first)
	r2, _ := counter.DecodeResponse(reply)
	if r1.Value != 2 || r2.Value != 3 {
		t.Fatalf("the two commands answered %d and %d, want 2 and 3", r1.Value, r2.Value)
	}
	if nl, nt := c.leader(time.Second); nl != l || nt != term {
		t.Fatalf("the leader changed (%d/%d to %d/%d): the test did not see a leader refusing", l, term, nl, nt)
	}
}

// Issue 15, client liveness: every asynchronous command completes within the bound the caller
// set, saying whether it may have been applied. With the followers stopped, a leader without
// quorum appends one command (sent, never committed: outcome unknown) and refuses the next as
// unavailable (resent, refused until the bound: not applied, with the cluster's reason). Before
// the fix neither callback ever ran, and both pinned the window.
func TestAsyncCommandsCompleteWithinTheirBound(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.tune = func(rc *replica.Config) { rc.MaxUncommittedBytes = 1 }
	})
	l, _ := c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const bound = 600 * time.Millisecond
	cl := c.dialWith(ctx, client.Config{AsyncTimeout: bound, AttemptTimeout: 5 * time.Second, MaxInFlight: 2})
	inc(ctx, t, cl)
	for i := range c.members {
		if i != l {
			c.stop(i)
		}
	}
	req := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	type outcome struct {
		err error
		at  time.Duration
	}
	start := time.Now()
	results := make(chan outcome, 2)
	send := func() {
		if err := cl.SendAsync(req, func(_ []byte, err error) { results <- outcome{err, time.Since(start)} }); err != nil {
			t.Fatal(err)
		}
	}
	send()                            // appended by the leader, never committed
	time.Sleep(50 * time.Millisecond) // (its own batch)
	send()                            // refused: the uncommitted log is full
	var got []outcome
	for len(got) < 2 {
		select {
		case o := <-results:
			got = append(got, o)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 2 asynchronous commands completed within 10 s (bound %s)", len(got), bound)
		}
	}
	unknown, notApplied := 0, 0
	for _, o := range got {
		if !errors.Is(o.err, client.ErrTimeout) || o.at > bound+time.Second {
			t.Fatalf("completed after %s with %v, want a timeout near %s", o.at, o.err, bound)
		}
		switch {
		case errors.Is(o.err, client.ErrOutcomeUnknown):
			unknown++
		case errors.Is(o.err, client.ErrNotApplied) && strings.Contains(o.err.Error(), "uncommitted"):
			notApplied++
		default:
			t.Fatalf("unexpected outcome %v", o.err)
		}
	}
	if unknown != 1 || notApplied != 1 {
		t.Fatalf("outcomes %v: want one unknown (the appended command) and one not applied (the refused one)", got)
	}
	// Neither holds the window any more (MaxInFlight 2).
	if err := cl.SendAsync(req, func([]byte, error) {}); err != nil {
		t.Fatalf("after both completed the window is still full: %v", err)
	}
}

// Issue 15, session limit: when the cluster refuses a session, Dial returns a typed refusal at
// once, with the cluster's reason, and does not reopen (each attempt used to be a log entry).
// Before the fix it said "no leader reachable (reachable 1 of 1, need 1)" when its context ended.
func TestSessionRefusedAtOnce(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.tune = func(rc *replica.Config) { rc.Container.SessionsMax = 1 }
	})
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := c.dial(ctx)
	inc(ctx, t, first)
	before := settledCommit(t, c.members[0].n)
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	start := time.Now()
	_, err := client.Dial(dctx, client.Config{Endpoints: c.clients})
	took := time.Since(start)
	if !errors.Is(err, client.ErrSessionRefused) || !strings.Contains(err.Error(), "SessionsMax 1") {
		t.Fatalf("Dial over the session limit: %v, want ErrSessionRefused with the cluster's reason", err)
	}
	if took > 2*time.Second {
		t.Fatalf("the refusal took %s", took)
	}
	// A client that reopened would do so within an attempt timeout (2 s).
	time.Sleep(2500 * time.Millisecond)
	if grew := settledCommit(t, c.members[0].n) - before; grew != 1 {
		t.Fatalf("the log grew by %d entries for one refused session, want 1 (the refused open)", grew)
	}
	inc(ctx, t, first) // the open session is unaffected
}

// settledCommit waits until n's commit index stays put for 200 ms (Status lags the loop) and
// returns it.
func settledCommit(t *testing.T, n *Node) uint64 {
	t.Helper()
	last := n.Status().Commit
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		c := n.Status().Commit
		if c == last {
			return c
		}
		last = c
	}
	t.Fatal("the commit index never settled")
	return 0
}

// Issue 15, oversized commands: the client refuses a command larger than the cluster accepts
// before sending it, naming the limit (the default: wire.MaxPayloadBytes). Before the fix the
// member closed the connection and the client resent it until its context ended, then said
// "outcome unknown".
func TestOversizedCommandRefusedByTheClient(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	start := time.Now()
	_, err := cl.Send(sctx, make([]byte, wire.MaxPayloadBytes+1))
	if !errors.Is(err, client.ErrNotApplied) || !errors.Is(err, client.ErrTooLarge) || !strings.Contains(err.Error(), "1048576") {
		t.Fatalf("an oversized command: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("the refusal took %s", took)
	}
	if _, err := cl.Query(sctx, make([]byte, wire.MaxPayloadBytes+1)); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("an oversized query: %v", err)
	}
	inc(ctx, t, cl) // the session carries on
}

// The limits a member announces when the session attaches are what the client keeps to: a
// smaller command limit, and a response window below MaxInFlight.
func TestAnnouncedLimitsHold(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.tune = func(rc *replica.Config) {
			rc.MaxCommandBytes = 1000
			rc.Container.ResponseWindowMax = 4
		}
	})
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dial(ctx) // MaxInFlight 512
	if _, err := cl.Send(ctx, make([]byte, 1001)); !errors.Is(err, client.ErrTooLarge) || !strings.Contains(err.Error(), "at most 1000") {
		t.Fatalf("a command over the announced limit: %v", err)
	}
	req := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	var fifth error
	answered := make(chan error, 4)
	cl.Batch(func() { // nothing is written (so nothing answered) before Batch returns
		for range 4 {
			if err := cl.SendAsync(req, func(_ []byte, err error) { answered <- err }); err != nil {
				t.Error(err)
			}
		}
		fifth = cl.SendAsync(req, func([]byte, error) { t.Error("the refused command's callback ran") })
	})
	if !errors.Is(fifth, client.ErrInFlightFull) {
		t.Fatalf("a fifth command with an announced window of 4: %v", fifth)
	}
	for range 4 {
		if err := <-answered; err != nil {
			t.Fatal(err)
		}
	}
}

// Issue 15, oversized commands: a member answers a request frame over its limit with a refusal
// that names the limit, for the command's number, skips the frame and keeps the connection.
// Before, it only closed the connection.
func TestOversizedFrameAnsweredWithItsLimit(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.tune = func(rc *replica.Config) { rc.MaxCommandBytes = 4096 }
	})
	c.startAll(15 * time.Second)
	conn, err := net.Dial("tcp", c.clients[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sid := wire.SessionID{0xee}
	incReq := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	var out []byte
	out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.COpen, Session: sid}, wire.ClientProtocolMax)
	out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CCommand, Session: sid, Seq: 1, LowestUnacked: 1, Payload: bytes.Repeat([]byte("x"), 64<<10)}, wire.ClientProtocolMax)
	out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CCommand, Session: sid, Seq: 2, LowestUnacked: 1, Payload: incReq}, wire.ClientProtocolMax)
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	answers := map[wire.Seq]wire.ClientMsg{}
	for len(answers) < 2 {
		_, body, _, err := wire.ReadFrame(r, 1<<20, nil)
		if err != nil {
			t.Fatalf("reading answers (got %v): %v", answers, err)
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind == wire.CResponse {
			answers[m.Seq] = m
		}
	}
	if a := answers[1]; a.Status != wire.StatusRejected || !strings.Contains(string(a.Payload), "4096") {
		t.Fatalf("the oversized command was answered %+v (%q)", a, a.Payload)
	}
	if a := answers[2]; a.Status != wire.StatusOK {
		t.Fatalf("the command after it on the same connection: %+v (%q)", a, a.Payload)
	}
}
