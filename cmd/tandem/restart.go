package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/service"
)

// RestartResult is what `tandem bench --restart N --json` prints.
type RestartResult struct {
	Commands      int64   `json:"commands"`       // acknowledged increments before the restart
	Applied       uint64  `json:"applied_index"`  // the cluster's commit index the member had to reach
	SnapshotIndex uint64  `json:"snapshot_index"` // the member's newest snapshot when stopped
	LoadSeconds   float64 `json:"load_s"`
	RestartMs     float64 `json:"restart_ms"` // from starting the member to following and caught up
	FsyncP50us    float64 `json:"fsync_p50_us"`
}

// runRestart loads an in-process three-member cluster with n acknowledged increments, stops a
// follower, starts it again from its data directory and times it until it follows the leader
// with everything committed applied: the time a member with n applied commands needs to serve
// again.
func runRestart(n int64, fsync time.Duration) (RestartResult, error) {
	res := RestartResult{FsyncP50us: float64(fsync.Microseconds())}
	lc, err := startLocalCluster()
	if err != nil {
		return res, err
	}
	defer lc.close()
	members := lc.members

	// Load: 4 sessions x 256 in flight until n increments are acknowledged.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	inc := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	var acked, failed atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range 4 {
		cl, err := client.Dial(ctx, client.Config{Endpoints: lc.eps, MaxInFlight: 256})
		if err != nil {
			return res, err
		}
		defer cl.Close()
		for range 256 {
			wg.Add(1)
			var next func()
			next = func() {
				if acked.Load() >= n {
					wg.Done()
					return
				}
				if err := cl.SendAsync(inc, func(_ []byte, err error) {
					if err != nil {
						failed.Add(1)
					} else {
						acked.Add(1)
					}
					next()
				}); err != nil {
					failed.Add(1)
					wg.Done()
				}
			}
			next()
		}
	}
	progress := time.NewTicker(time.Second)
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
loading:
	for {
		select {
		case <-waited:
			break loading
		case <-progress.C:
			fmt.Fprintf(os.Stderr, "\rloading: %d of %d increments acknowledged", acked.Load(), n)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	progress.Stop()
	fmt.Fprintln(os.Stderr)
	if failed.Load() > 0 && acked.Load() < n {
		return res, fmt.Errorf("%d increments failed while loading", failed.Load())
	}
	res.Commands, res.LoadSeconds = acked.Load(), time.Since(t0).Seconds()

	l := lc.leader()
	f := (l + 1) % 3
	target := members[l].n.Status().Commit
	if err := lc.stop(f); err != nil {
		return res, err
	}
	res.Applied = target
	t1 := time.Now()
	if err := lc.start(f); err != nil {
		return res, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := members[f].n.Status()
		if st.Role == service.Follower && st.Leader >= 0 && st.Applied >= target {
			res.RestartMs = float64(time.Since(t1).Microseconds()) / 1000
			res.SnapshotIndex = st.SnapshotIndex
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("member %d did not catch up within 60 s: %+v", f, st)
		}
		time.Sleep(time.Millisecond)
	}
	return res, nil
}
