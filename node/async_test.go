package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
)

// A client keeps a window of asynchronous increments in flight while the leader is stopped and
// another takes over: every increment is answered once, the answers are 1…n without gaps or
// repeats, and the counter ends at n (exactly once, across the failover).
func TestAsyncPipelineExactlyOnceAcrossLeaderChange(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.startAll(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dialWith(ctx, client.Config{MaxInFlight: 64})
	l := startIncLoop(t, cl, 64, 0)
	l.waitAnswered(500)
	old, oldTerm := c.leader(time.Second)
	c.stop(old)
	l.waitAnswered(1500)
	answered := l.finish(ctx)
	c.checkLeaderLost(old, oldTerm)
	got := make(chan int64, 1)
	if err := cl.QueryAsync(counter.EncodeRequest(counter.Request{Op: counter.OpGet}), func(reply []byte, err error) {
		r, derr := counter.DecodeResponse(reply)
		if err != nil || derr != nil {
			got <- -1
			return
		}
		got <- r.Value
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-got:
		if v != int64(answered) {
			t.Fatalf("counter %d after %d answered increments", v, answered)
		}
	case <-ctx.Done():
		t.Fatal("query never answered")
	}
}

// checkLeaderLost checks the survivors' lines about the stopped leader old, of term oldTerm: each
// says it found the new leader, and the new leader, which campaigned knowing none, says it lost
// old. (The other follower may hear of the election and of its winner in one round: then it
// knew no moment without a leader, and only says it found the new one.)
func (c *cluster) checkLeaderLost(old int, oldTerm uint64) {
	c.t.Helper()
	lead, term := c.leader(time.Second)
	for i, m := range c.members {
		if i == old {
			continue
		}
		logs := m.logs.String()
		if found := fmt.Sprintf(`msg="new leader elected" self=%d leader=%d term=%d`+"\n", i, lead, term); !strings.Contains(logs, found) {
			c.t.Errorf("member %d did not log %s:\n%s", i, found, logs)
		}
		if lost := fmt.Sprintf(`msg="leader lost" self=%d member=%d term=%d`+"\n", i, old, oldTerm); i == lead && !strings.Contains(logs, lost) {
			c.t.Errorf("the new leader, member %d, did not log %s:\n%s", i, lost, logs)
		}
	}
}

// With no leader, asynchronous commands stay outstanding: the window fills and SendAsync refuses
// at once; Close completes what is outstanding.
func TestSendAsyncWindowFullAndClose(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.startAll(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.dialWith(ctx, client.Config{MaxInFlight: 1})
	for i := range 3 {
		c.stopNow(i) // (no leader is the point: the last one would wait 3 s for a hand-over)
	}
	req := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	res := make(chan error, 1)
	if err := cl.SendAsync(req, func(_ []byte, err error) { res <- err }); err != nil {
		t.Fatal(err)
	}
	if err := cl.SendAsync(req, func([]byte, error) { t.Error("a refused command's callback ran") }); !errors.Is(err, client.ErrInFlightFull) || !errors.Is(err, client.ErrNotApplied) {
		t.Fatalf("second command with MaxInFlight 1: %v, want ErrNotApplied and ErrInFlightFull", err)
	}
	cl.Close()
	select {
	case err := <-res:
		if !errors.Is(err, client.ErrClosed) {
			t.Fatalf("outstanding command after Close: %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("Close did not complete the outstanding command")
	}
	if err := cl.SendAsync(req, func([]byte, error) {}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("SendAsync after Close: %v", err)
	}
}

// Commands started inside Batch are held until it returns (nothing is answered meanwhile, so
// nothing was written), then all go out and are each answered once.
func TestBatchHoldsWritesUntilItReturns(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.startAll(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.dialWith(ctx, client.Config{MaxInFlight: 128})
	if _, err := cl.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})); err != nil {
		t.Fatal(err) // attached, with the leader known
	}
	incReq := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	const n = 100
	answers := make(chan int64, n)
	failed := make(chan error, n)
	cl.Batch(func() {
		for range n {
			err := cl.SendAsync(incReq, func(reply []byte, err error) {
				if err != nil {
					failed <- err
					return
				}
				r, derr := counter.DecodeResponse(reply)
				if derr != nil || !r.OK {
					failed <- errors.New("bad reply " + string(reply))
					return
				}
				answers <- r.Value
			})
			if err != nil {
				t.Error(err)
			}
		}
		// Held: no answer can come, however long we wait here. Without the hold the first
		// answers arrive within milliseconds.
		select {
		case v := <-answers:
			t.Errorf("answer %d arrived inside Batch: the commands were written before it returned", v)
		case err := <-failed:
			t.Errorf("failure inside Batch: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
	})
	seen := map[int64]bool{}
	for len(seen) < n && !t.Failed() {
		select {
		case v := <-answers:
			if seen[v] {
				t.Fatalf("value %d answered twice", v)
			}
			seen[v] = true
		case err := <-failed:
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatalf("%d of %d answered", len(seen), n)
		}
	}
	for v := int64(2); v <= n+1; v++ {
		if !seen[v] {
			t.Fatalf("value %d missing: %v", v, seen)
		}
	}
}

// A client that keeps as many commands in flight as the cluster's response window holds (the
// client's documented maximum) is served without refusals. Before the leader's early check
// took the command's own acknowledgements into account, every command after the first window
// was refused "response window full" for ever: the window still held answers the client had
// already acknowledged.
func TestFullResponseWindowInFlightKeepsFlowing(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.startAll(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const window = 1024 // container.DefaultConfig().ResponseWindowMax
	cl := c.dialWith(ctx, client.Config{MaxInFlight: window})
	l := startIncLoop(t, cl, window, 5*window)
	if n := l.finish(ctx); n < 5*window {
		t.Fatalf("%d increments answered, want %d", n, 5*window)
	}
}

// incLoop keeps increments in flight on a client through SendAsync: each answer starts the next,
// until limit were issued (0: until finish). It checks every answer: no error, a well-formed
// reply, no value answered twice.
type incLoop struct {
	t     *testing.T
	cl    *client.Client
	limit int
	req   []byte

	mu               sync.Mutex
	issued, answered int
	stopped          bool
	failures         []error
	seen             map[int64]bool
	allDone          chan struct{} // closed once stopped (or the limit issued) and all answered
}

func startIncLoop(t *testing.T, cl *client.Client, window, limit int) *incLoop {
	l := &incLoop{t: t, cl: cl, limit: limit, seen: map[int64]bool{}, allDone: make(chan struct{}),
		req: counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})}
	for range window {
		l.issue()
	}
	return l
}

func (l *incLoop) done(reply []byte, err error) {
	l.mu.Lock()
	l.answered++
	if err != nil {
		l.failures = append(l.failures, err)
	} else if r, derr := counter.DecodeResponse(reply); derr != nil || !r.OK {
		l.failures = append(l.failures, errors.New("bad reply "+string(reply)))
	} else if l.seen[r.Value] {
		l.failures = append(l.failures, errors.New("value answered twice: "+string(reply)))
	} else {
		l.seen[r.Value] = true
	}
	more := !l.stopped && (l.limit == 0 || l.issued < l.limit)
	if !more {
		l.stopped = true
	}
	finished := l.stopped && l.answered == l.issued
	l.mu.Unlock()
	if more {
		l.issue()
	}
	if finished {
		close(l.allDone)
	}
}

func (l *incLoop) issue() {
	l.mu.Lock()
	l.issued++
	l.mu.Unlock()
	if err := l.cl.SendAsync(l.req, l.done); err != nil {
		l.mu.Lock()
		l.issued--
		l.failures = append(l.failures, err)
		l.mu.Unlock()
	}
}

// waitAnswered polls until n answers arrived (30 s at most).
func (l *incLoop) waitAnswered(n int) {
	l.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l.mu.Lock()
		a := l.answered
		l.mu.Unlock()
		if a >= n {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("only %d of %d answered", a, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// finish stops issuing (with a limit: waits until it was reached), waits for every outstanding
// answer, fails the test on any failure and checks the answers were 1…n; it returns n.
func (l *incLoop) finish(ctx context.Context) int {
	l.t.Helper()
	l.mu.Lock()
	already := l.stopped && l.answered == l.issued
	if l.limit == 0 {
		l.stopped = true
	}
	if !already && l.stopped && l.answered == l.issued {
		close(l.allDone) // nothing outstanding: no answer will close it
		already = true
	}
	l.mu.Unlock()
	if !already {
		select {
		case <-l.allDone:
		case <-ctx.Done():
			l.mu.Lock()
			defer l.mu.Unlock()
			l.t.Fatalf("outstanding asynchronous increments were never answered (%d of %d)", l.answered, l.issued)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) > 0 {
		l.t.Fatalf("%d failures, first: %v", len(l.failures), l.failures[0])
	}
	for v := int64(1); v <= int64(l.answered); v++ {
		if !l.seen[v] {
			l.t.Fatalf("%d increments answered but value %d never was", l.answered, v)
		}
	}
	return l.answered
}
