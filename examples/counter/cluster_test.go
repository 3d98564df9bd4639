package counter_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/service"
	"github.com/tandem-cluster/tandem/tandemtest"
)

// The counter on simulated clusters (package tandemtest): three members in memory, each seed a
// different run, and the determinism check on throughout.

func newCluster(t *testing.T, seed uint64) *tandemtest.Cluster {
	return tandemtest.New(t, tandemtest.Options{Seed: seed, NewService: func() service.Service { return counter.New() }})
}

func send(t *testing.T, cl *tandemtest.Client, r counter.Request) counter.Response {
	t.Helper()
	raw, err := cl.Send(counter.EncodeRequest(r))
	if err != nil {
		t.Fatalf("%+v: %v", r, err)
	}
	resp, err := counter.DecodeResponse(raw)
	if err != nil {
		t.Fatalf("%+v: %v", r, err)
	}
	return resp
}

func get(t *testing.T, cl *tandemtest.Client) counter.Response {
	t.Helper()
	raw, err := cl.Query(counter.EncodeRequest(counter.Request{Op: counter.OpGet}))
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	resp, err := counter.DecodeResponse(raw)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	return resp
}

// Increments in flight while the leader crashes are each applied exactly once: every reply is a
// different value, and the final value is what the replies acknowledged.
func TestExactlyOnceAcrossLeaderCrash(t *testing.T) {
	for seed := range uint64(10) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			c := newCluster(t, seed)
			cl := c.NewClient()
			values := map[int64]bool{}
			answered := 0
			inc := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement, Delta: 2})
			for i := range 30 {
				err := cl.SendAsync(inc, func(raw []byte, err error) {
					resp, derr := counter.DecodeResponse(raw)
					switch {
					case err != nil || derr != nil || !resp.OK:
						t.Errorf("increment: %v, %v, %v", resp, err, derr)
					case values[resp.Value]:
						t.Errorf("value %d returned twice", resp.Value)
					}
					values[resp.Value] = true
					answered++
				})
				if err != nil {
					t.Fatal(err)
				}
				if i == 15 {
					c.Crash(c.Leader())
				}
				c.Run(20 * time.Millisecond)
			}
			if !c.RunUntil(func() bool { return answered == 30 }, time.Minute) {
				t.Fatalf("%d of 30 increments answered", answered)
			}
			if r := get(t, cl); r.String() != "VALUE: 60" {
				t.Fatalf("GET answered %q after 30 acknowledged increments of 2", r)
			}
			c.Check()
		})
	}
}

// A power loss of every member at once loses nothing acknowledged: each member recovers from its
// snapshot and the log after it.
func TestPowerLossOfAllMembers(t *testing.T) {
	c := newCluster(t, 1)
	cl := c.NewClient()
	for i := 1; i <= 40; i++ {
		if r := send(t, cl, counter.Request{Op: counter.OpIncrement}); r.Value != int64(i) {
			t.Fatalf("increment %d answered %q", i, r)
		}
	}
	for m := range c.Members() {
		c.Crash(m)
	}
	for m := range c.Members() {
		c.Start(m)
	}
	if r := get(t, cl); r.Value != 40 {
		t.Fatalf("GET answered %q after a power loss, want 40", r)
	}
	if r := send(t, cl, counter.Request{Op: counter.OpDecrement, Delta: 50}); r.String() != "OK: counter=-10" {
		t.Fatalf("DECREMENT 50 answered %q", r)
	}
	c.Check()
}

// A member that was down while the others went on catches up (by a snapshot of the leader's, once
// it fell behind the log the others keep), and so does one cut off by a partition.
func TestLaggingMembersCatchUp(t *testing.T) {
	c := newCluster(t, 2)
	cl := c.NewClient()
	down := (c.Leader() + 1) % 3
	c.Crash(down)
	for range 100 {
		send(t, cl, counter.Request{Op: counter.OpIncrement, Delta: 3})
	}
	c.Start(down)
	c.Check()
	if v := c.Service(down).(*counter.Service).Value(); v != 300 {
		t.Fatalf("member %d caught up to %d, want 300", down, v)
	}

	cut := (c.Leader() + 2) % 3
	c.Partition(cut)
	for range 50 {
		send(t, cl, counter.Request{Op: counter.OpDecrement})
	}
	c.Heal()
	c.Check()
	for m := range c.Members() {
		if v := c.Service(m).(*counter.Service).Value(); v != 250 {
			t.Fatalf("member %d holds %d after the partition healed, want 250", m, v)
		}
	}
}

// Errors are replies like any other: recorded, the same on every member, and the counter is
// unchanged.
func TestErrorsAreReplicatedReplies(t *testing.T) {
	c := newCluster(t, 3)
	cl := c.NewClient()
	send(t, cl, counter.Request{Op: counter.OpIncrement, Delta: counter.MaxDelta})
	if r := send(t, cl, counter.Request{Op: counter.OpIncrement}); r.OK {
		t.Fatalf("increment past MaxInt64 answered %q", r)
	}
	if r := send(t, cl, counter.Request{Op: counter.OpGet}); r.OK {
		t.Fatalf("GET as a command answered %q", r)
	}
	raw, err := cl.Send([]byte{9, 9, 9})
	if r, _ := counter.DecodeResponse(raw); err != nil || r.OK {
		t.Fatalf("a malformed command answered %q, %v", r, err)
	}
	if r := get(t, cl); r.Value != counter.MaxDelta {
		t.Fatalf("GET answered %q", r)
	}
	c.Check()
}
