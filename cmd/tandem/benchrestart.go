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

// tandem bench --restart N: how long a member that has applied N commands needs to serve again
// after a restart (recovering its snapshot and log, finding the leader, catching up). Measured
// on in-process members, so that the time is the member's own, not a process's start-up.

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
	lc, err := startLocalCluster(nil)
	if err != nil {
		return res, err
	}
	defer lc.close()
	members := lc.members

	// Load: 4 sessions x 256 in flight until n increments are acknowledged. The sessions stay
	// open, idle, while the follower restarts.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	t0 := time.Now()
	var cls []*client.Client
	for range 4 {
		cl, err := client.Dial(ctx, client.Config{Endpoints: lc.eps, MaxInFlight: 256})
		if err != nil {
			return res, err
		}
		defer cl.Close()
		cls = append(cls, cl)
	}
	acked, err := loadIncrements(ctx, cls, n)
	if err != nil {
		return res, err
	}
	res.Commands, res.LoadSeconds = acked, time.Since(t0).Seconds()

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

// loadIncrements sends increments through cls, 256 in flight each, until n are acknowledged, and
// returns how many were (in-flight ones may take it past n).
func loadIncrements(ctx context.Context, cls []*client.Client, n int64) (int64, error) {
	inc := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	var acked, failed atomic.Int64
	var wg sync.WaitGroup
	for _, cl := range cls {
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
			return 0, ctx.Err()
		}
	}
	progress.Stop()
	fmt.Fprintln(os.Stderr)
	if failed.Load() > 0 && acked.Load() < n {
		return 0, fmt.Errorf("%d increments failed while loading", failed.Load())
	}
	return acked.Load(), nil
}

// printRestartResult prints a --restart run's result for a reader (without --json).
func printRestartResult(rr RestartResult) {
	fmt.Printf("restart     %d increments acknowledged in %.1f s (commit index %d); a follower stopped and started again\n",
		rr.Commands, rr.LoadSeconds, rr.Applied)
	fmt.Printf("            following and caught up after %.0f ms (it restarted from its snapshot at index %d)\n", rr.RestartMs, rr.SnapshotIndex)
	fmt.Printf("machine     fsync after a 64 B append: p50 %.0f µs\n", rr.FsyncP50us)
}
