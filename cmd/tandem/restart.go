package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/node"
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
	dir, err := os.MkdirTemp("", "tandem-restart-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	ms, eps, err := benchMembers()
	if err != nil {
		return res, err
	}
	type member struct {
		cfg    node.Config
		n      *node.Node
		cancel context.CancelFunc
		done   chan error
	}
	members := make([]*member, 3)
	start := func(i int) error {
		m := members[i]
		nn, err := node.New(m.cfg, counter.New())
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		m.n, m.cancel, m.done = nn, cancel, make(chan error, 1)
		go func() { m.done <- nn.Run(ctx) }()
		return nil
	}
	stop := func(i int) error {
		m := members[i]
		if m.cancel == nil {
			return nil
		}
		m.cancel()
		m.cancel = nil
		return <-m.done
	}
	for i := range members {
		cfg := node.DefaultConfig()
		cfg.ID, cfg.Members, cfg.DataDir = i, ms, filepath.Join(dir, fmt.Sprintf("node-%d", i))
		members[i] = &member{cfg: cfg}
		if err := start(i); err != nil {
			return res, err
		}
	}
	defer func() {
		for i := range members {
			_ = stop(i)
		}
	}()
	leader := func() int {
		for i, m := range members {
			if m.cancel != nil && m.n.Status().Role == service.Leader {
				return i
			}
		}
		return -1
	}
	deadline := time.Now().Add(15 * time.Second)
	for leader() < 0 {
		if time.Now().After(deadline) {
			return res, errors.New("no leader within 15 s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Load: 4 sessions x 256 in flight until n increments are acknowledged.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	inc := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	var acked, failed atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range 4 {
		cl, err := client.Dial(ctx, client.Config{Endpoints: eps, MaxInFlight: 256})
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

	l := leader()
	f := (l + 1) % 3
	target := members[l].n.Status().Commit
	if err := stop(f); err != nil {
		return res, err
	}
	res.Applied = target
	t1 := time.Now()
	if err := start(f); err != nil {
		return res, err
	}
	deadline = time.Now().Add(60 * time.Second)
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
