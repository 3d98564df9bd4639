package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
)

// An idle client keeps its session alive with keep-alives; a client that stays silent past the
// session timeout gets a typed error and its session is not silently reopened.
func TestKeepAliveAndTypedExpiry(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, func(cfg *Config) { cfg.SessionTimeout = 3 * time.Second })
	c.start(0)
	c.leader(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alive, err := client.Dial(ctx, client.Config{Endpoints: c.clients, KeepAliveInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()
	silent, err := client.Dial(ctx, client.Config{Endpoints: c.clients, KeepAliveInterval: time.Hour, AttemptTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	inc(ctx, t, alive)
	inc(ctx, t, silent)

	// Idle for twice the session timeout (polling the member's state meanwhile).
	idleUntil := time.Now().Add(6 * time.Second)
	for time.Now().Before(idleUntil) {
		if c.members[0].n.Status().Role.String() != "LEADER" {
			t.Fatalf("the member lost leadership while idle")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := inc(ctx, t, alive); v != 3 {
		t.Fatalf("the kept-alive client's increment returned %d, want 3", v)
	}
	_, err = silent.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement}))
	if !errors.Is(err, client.ErrSessionExpired) {
		t.Fatalf("the silent client's command returned %v, want ErrSessionExpired", err)
	}
	if _, err := silent.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})); !errors.Is(err, client.ErrSessionExpired) {
		t.Fatalf("an expired client must stay expired, got %v", err)
	}
	raw, err := alive.Query(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpGet}))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := counter.DecodeResponse(raw); r.Value != 3 {
		t.Fatalf("counter %d: a command on the expired session was applied", r.Value)
	}
}

// A command whose context ends while no member answers fails with ErrTimeout, and says whether it
// may have been applied.
func TestSendTimeoutIsTyped(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	c.start(0)
	c.leader(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	inc(ctx, t, cl)
	c.stop(0)
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	_, err := cl.Send(short, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement}))
	if !errors.Is(err, client.ErrTimeout) || !(errors.Is(err, client.ErrNotApplied) || errors.Is(err, client.ErrOutcomeUnknown)) {
		t.Fatalf("Send with the only member down: %v", err)
	}
}

// Queries do not name the session, so they do not keep it alive on the leader: a client that only
// queries must still send keep-alives (it used to skip them because its connection was busy,
// and lost its session after the timeout — found by tandem bench --workload query).
func TestQueryingClientKeepsItsSession(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.SessionTimeout = 2 * time.Second })
	c.start(0)
	c.leader(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dialWith(ctx, client.Config{KeepAliveInterval: 300 * time.Millisecond})
	inc(ctx, t, cl)
	get := counter.EncodeRequest(counter.Request{Op: counter.OpGet})
	n := 0
	for until := time.Now().Add(5 * time.Second); time.Now().Before(until); n++ {
		if _, err := cl.Query(ctx, get); err != nil {
			t.Fatalf("query %d: %v", n, err)
		}
	}
	if v := inc(ctx, t, cl); v != 2 {
		t.Fatalf("increment after %d queries returned %d, want 2", n, v)
	}
}
