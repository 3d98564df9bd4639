package node

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/replica"
)

// Raft counts a leader's entry against MaxUncommittedBytes until a Ready has handed it out to
// apply, while the leader applies and answers what commits during its sync earlier. With raft's
// default of 1 MiB of committed entries a Ready, clients pipelining 4 KiB commands outran the
// count: it reached the limit although a quarter of it was ever in flight, raft dropped
// proposals, and commands were refused "unavailable" and resent after a backoff (in `tandem bench
// --processes --payload 4096`, hundreds of commands stuck long enough to fill a session's window).
func TestUncommittedCountKeepsUpWithLargeCommands(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.tune = func(rc *replica.Config) { rc.MaxUncommittedBytes = 16 << 20 }
	})
	c.startAll(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement, Pad: 4096})
	const sessions, inflight = 4, 256 // 4 MiB in flight: a quarter of the limit
	stop := time.Now().Add(3 * time.Second)
	var done, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range sessions {
		cl := c.dialWith(ctx, client.Config{})
		for range inflight {
			wg.Add(1)
			var next func()
			next = func() {
				err := cl.SendAsync(req, func(_ []byte, err error) {
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
					} else {
						done.Add(1)
					}
					if time.Now().Before(stop) {
						next()
					} else {
						wg.Done()
					}
				})
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					wg.Done()
				}
			}
			next()
		}
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d commands failed, the first with: %v", n, n+done.Load(), firstErr.Load())
	}
	t.Logf("%d commands of 4 KiB in 3 s", done.Load())
}
