package node

import (
	"context"
	"errors"
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
	c := newCluster(t, 3, nil)
	c.startAll(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dialWith(ctx, client.Config{MaxInFlight: 64})

	incReq := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	var mu sync.Mutex
	seen := map[int64]bool{}
	var issued, answered int
	var failures []error
	stop := false
	allDone := make(chan struct{})
	var issue func()
	done := func(reply []byte, err error) {
		mu.Lock()
		answered++
		if err != nil {
			failures = append(failures, err)
		} else if r, derr := counter.DecodeResponse(reply); derr != nil || !r.OK {
			failures = append(failures, errors.New("bad reply "+string(reply)))
		} else if seen[r.Value] {
			failures = append(failures, errors.New("value answered twice: "+string(reply)))
		} else {
			seen[r.Value] = true
		}
		more := !stop
		finished := stop && answered == issued
		mu.Unlock()
		if more {
			issue()
		}
		if finished {
			close(allDone)
		}
	}
	issue = func() {
		mu.Lock()
		issued++
		mu.Unlock()
		if err := cl.SendAsync(incReq, done); err != nil {
			mu.Lock()
			issued--
			failures = append(failures, err)
			mu.Unlock()
		}
	}
	for range 64 {
		issue()
	}
	waitAnswered := func(n int) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			a := answered
			mu.Unlock()
			if a >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d answered", a, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitAnswered(500)
	old, _ := c.leader(time.Second)
	c.stop(old)
	waitAnswered(1500)
	mu.Lock()
	stop = true
	finished := answered == issued
	mu.Unlock()
	if !finished {
		select {
		case <-allDone:
		case <-ctx.Done():
			t.Fatal("outstanding asynchronous increments were never answered")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d failures, first: %v", len(failures), failures[0])
	}
	for v := int64(1); v <= int64(answered); v++ {
		if !seen[v] {
			t.Fatalf("%d increments answered but value %d never was", answered, v)
		}
	}
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

// With no leader, asynchronous commands stay outstanding: the window fills and SendAsync refuses
// at once; Close completes what is outstanding.
func TestSendAsyncWindowFullAndClose(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.startAll(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.dialWith(ctx, client.Config{MaxInFlight: 1})
	for i := range 3 {
		c.stop(i)
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
