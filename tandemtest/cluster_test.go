package tandemtest_test

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/service"
	"github.com/tandem-cluster/tandem/tandemtest"
)

func newCounter() service.Service { return counter.New() }

func incr(delta int64) []byte {
	return counter.EncodeRequest(counter.Request{Op: counter.OpIncrement, Delta: delta})
}

func get(t *testing.T, cl *tandemtest.Client) int64 {
	t.Helper()
	raw, err := cl.Query(counter.EncodeRequest(counter.Request{Op: counter.OpGet}))
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	r, err := counter.DecodeResponse(raw)
	if err != nil || !r.OK {
		t.Fatalf("GET answered %v, %v", r, err)
	}
	return r.Value
}

// A command sent while no majority runs times out (in simulated time) and stays in flight; once
// the members are back it is applied, once.
func TestSendTimesOutWithoutMajorityAndIsAppliedOnceLater(t *testing.T) {
	c := tandemtest.New(t, tandemtest.Options{Seed: 7, NewService: newCounter, CallTimeout: 5 * time.Second})
	cl := c.NewClient()
	if _, err := cl.Send(incr(1)); err != nil {
		t.Fatal(err)
	}
	l := c.Leader()
	c.Crash((l + 1) % 3)
	c.Crash((l + 2) % 3)
	start := c.Now()
	_, err := cl.Send(incr(10))
	if !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("Send without a majority: %v, want client.ErrTimeout", err)
	}
	if waited := c.Now().Sub(start); waited < 5*time.Second || waited > 6*time.Second {
		t.Fatalf("Send returned after %s of simulated time, want CallTimeout (5s)", waited)
	}
	if cl.Unanswered() != 1 {
		t.Fatalf("%d commands unanswered, want the timed-out one", cl.Unanswered())
	}
	c.Start((l + 1) % 3)
	c.Start((l + 2) % 3)
	if !c.RunUntil(func() bool { return cl.Unanswered() == 0 }, time.Minute) {
		t.Fatalf("the timed-out command was never answered")
	}
	if v := get(t, cl); v != 11 {
		t.Fatalf("counter %d, want 11: the timed-out command applied once", v)
	}
	c.Check()
}

// Commands in flight while the leader crashes are each applied exactly once.
func TestSendAsyncAcrossFailoverExactlyOnce(t *testing.T) {
	c := tandemtest.New(t, tandemtest.Options{Seed: 8, NewService: newCounter})
	cl := c.NewClient()
	values := map[int64]bool{}
	answered := 0
	for i := range 40 {
		err := cl.SendAsync(incr(1), func(reply []byte, err error) {
			r, derr := counter.DecodeResponse(reply)
			if err != nil || derr != nil || !r.OK {
				t.Errorf("increment: %v %v %v", r, err, derr)
				return
			}
			if values[r.Value] {
				t.Errorf("value %d returned twice", r.Value)
			}
			values[r.Value] = true
			answered++
		})
		if err != nil {
			t.Fatal(err)
		}
		if i == 20 {
			c.Crash(c.Leader())
		}
		c.Run(10 * time.Millisecond)
	}
	if !c.RunUntil(func() bool { return answered == 40 }, time.Minute) {
		t.Fatalf("%d of 40 increments answered", answered)
	}
	if v := get(t, cl); v != 40 {
		t.Fatalf("counter %d after 40 increments", v)
	}
	c.Check()
}

// A member cut off from the others cannot lead; healed, it catches up.
func TestPartitionAndHeal(t *testing.T) {
	c := tandemtest.New(t, tandemtest.Options{Seed: 9, NewService: newCounter, Members: 5})
	cl := c.NewClient()
	old := c.Leader()
	c.Partition(old)
	nl := c.WaitLeader()
	if nl == old {
		t.Fatalf("the cut-off member %d still leads", old)
	}
	for range 5 {
		if _, err := cl.Send(incr(2)); err != nil {
			t.Fatal(err)
		}
	}
	before := c.Applied(old)
	c.Heal()
	c.Check()
	if c.Applied(old) <= before || c.Applied(old) != c.Applied(nl) {
		t.Fatalf("the healed member applied %d (was %d), the leader %d", c.Applied(old), before, c.Applied(nl))
	}
	if v := c.Service(old).(*counter.Service).Value(); v != 10 {
		t.Fatalf("the healed member's counter is %d, want 10", v)
	}
}

// terminated records OnTerminate calls.
type terminated struct {
	*counter.Service
	calls *int
}

func (s terminated) OnTerminate() { *s.calls++ }

func TestStopTerminatesCrashDoesNot(t *testing.T) {
	calls := 0
	c := tandemtest.New(t, tandemtest.Options{Seed: 10, NewService: func() service.Service {
		return terminated{counter.New(), &calls}
	}})
	c.Crash(0)
	if calls != 0 {
		t.Fatalf("a crash called OnTerminate")
	}
	c.Stop(1)
	if calls != 1 || c.Up(1) || c.Service(1) != nil {
		t.Fatalf("Stop: %d OnTerminate calls, up %v", calls, c.Up(1))
	}
	c.Start(0)
	c.Start(1)
	if _, err := c.NewClient().Send(incr(1)); err != nil {
		t.Fatal(err)
	}
	c.Check()
}

// Misuse is reported to the test, once, and the calls that follow return at once.
func TestMisuseIsReported(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts tandemtest.Options
		do   func(c *tandemtest.Cluster)
		want string
	}{
		{"no service", tandemtest.Options{}, nil, "NewService is nil"},
		{"nil service", tandemtest.Options{NewService: func() service.Service { return nil }}, nil, "NewService returned nil"},
		{"negative members", tandemtest.Options{Members: -1, NewService: newCounter}, nil, "Members (-1) must be positive"},
		{"start a running member", tandemtest.Options{NewService: newCounter}, func(c *tandemtest.Cluster) { c.Start(0) }, "member 0 is running"},
		{"no such member", tandemtest.Options{NewService: newCounter}, func(c *tandemtest.Cluster) { c.Crash(3) }, "there are members 0 to 2"},
		{"Send from a callback", tandemtest.Options{NewService: newCounter}, func(c *tandemtest.Cluster) {
			cl := c.NewClient()
			_ = cl.SendAsync(incr(1), func([]byte, error) { _, _ = cl.Send(incr(1)) })
			if _, err := cl.Send(incr(1)); err == nil {
				panic("Send after a failure returned no error")
			}
		}, "Send called while the simulation runs"},
		{"OnStart fails", tandemtest.Options{NewService: func() service.Service { return failingStart{counter.New()} }}, nil,
			"starting member 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{t: t}
			c := tandemtest.New(rec, tc.opts)
			if tc.do != nil && c != nil && len(rec.failures) == 0 {
				tc.do(c)
			}
			if len(rec.failures) != 1 || !strings.Contains(rec.failures[0], tc.want) {
				t.Fatalf("reported %q, want once %q", rec.failures, tc.want)
			}
		})
	}
}

type failingStart struct{ *counter.Service }

func (failingStart) OnStart(service.Cluster, io.Reader) error { return errors.New("no") }

// trace runs a scenario and returns what a test can observe of it.
func trace(t *testing.T, seed uint64) string {
	c := tandemtest.New(t, tandemtest.Options{Seed: seed, NewService: newCounter})
	cl := c.NewClient()
	var b strings.Builder
	for i := range 30 {
		r, err := cl.Send(incr(1))
		fmt.Fprintf(&b, "%x %v %s|", r, err, c.Now().Format(time.RFC3339Nano))
		if i == 10 {
			c.Crash(c.Leader())
		}
		if i == 20 {
			c.Restart(0)
		}
	}
	c.Check()
	for m := range c.Members() {
		b.WriteString(strconv.FormatUint(c.Applied(m), 10) + " ")
	}
	fmt.Fprintf(&b, "leader %d at %s", c.Leader(), c.Now().Format(time.RFC3339Nano))
	return b.String()
}

func TestSameSeedSameRun(t *testing.T) {
	a, b := trace(t, 42), trace(t, 42)
	if a != b {
		t.Fatalf("two runs of seed 42 differ:\n%s\n%s", a, b)
	}
	if trace(t, 43) == a {
		t.Fatalf("seeds 42 and 43 ran the same: the trace sees nothing")
	}
}
