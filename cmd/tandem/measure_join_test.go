package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMeasureJoinUnderLoad measures, for docs/PERFORMANCE.md, what a member joining costs the
// clients: a three-member cluster acknowledges TANDEM_MEASURE_PRELOAD increments (default
// 50 000), then under a steady load (TANDEM_MEASURE_CLIENTS sessions, default 8, each sending
// one increment at a time) a fourth member joins and catches up the whole log; the client
// throughput and latency are reported before, during and after the join, and per 250 ms around
// it. It runs only with TANDEM_MEASURE set:
//
//	TANDEM_MEASURE=1 go test ./cmd/tandem -run TestMeasureJoinUnderLoad -count=1 -v
func TestMeasureJoinUnderLoad(t *testing.T) {
	if os.Getenv("TANDEM_MEASURE") == "" {
		t.Skip("a measurement: TANDEM_MEASURE=1 runs it")
	}
	envInt := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
			return v
		}
		return def
	}
	preload, clients := envInt("TANDEM_MEASURE_PRELOAD", 50000), envInt("TANDEM_MEASURE_CLIENTS", 8)
	// The preload's sessions: 64 pipeline the increments into few log entries; 1 makes one
	// entry of each.
	preloaders := envInt("TANDEM_MEASURE_PRELOADERS", 64)
	pc := newProcCluster(t, 3)
	pc.dumpOnFailure()
	pc.startAll()

	// The preload: preloaders goroutines on one session.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := pc.dial(ctx)
	start := time.Now()
	var wg sync.WaitGroup
	var left atomic.Int64
	left.Store(int64(preload))
	for range preloaders {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if _, err := increment(ctx, c); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	v, err := get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	st, _, _ := pc.tandemCluster(pc.endpoints(0, 1, 2), "status")
	t.Logf("preload: counter %d after %s; tandem cluster status:\n%s", v, time.Since(start).Round(time.Millisecond), st)

	load := startLoad(t, pc.endpoints(0, 1, 2), clients)
	load.base = v
	time.Sleep(5 * time.Second) // the baseline: a measuring window, not a wait for something
	load.mark("baseline")
	joinAt := time.Since(load.begin)
	pc.addJoiner(3, pc.endpoints(0, 1, 2))
	pc.start(3)
	pc.waitMembers(pc.endpoints(0, 1, 2), "0:1 1:2 2:3 3:4", 2*time.Minute, "the joiner is a voter")
	pc.waitCaughtUp(pc.endpoints(0, 1, 2, 3), 3, 10, time.Minute)
	load.mark("joining (until promoted and caught up)")
	doneAt := time.Since(load.begin)
	time.Sleep(5 * time.Second) // the window after
	load.mark("four voters")

	// Per 250 ms from 1 s before the join to 1 s after it was caught up.
	load.mu.Lock()
	const step = 250 * time.Millisecond
	for from := joinAt - time.Second; from < doneAt+time.Second; from += step {
		var lats []time.Duration
		for i, a := range load.acks {
			if a > from && a <= from+step {
				lats = append(lats, load.lats[i])
			}
		}
		t.Logf("t=%+6.2fs %s", (from - joinAt).Seconds(), latencyLine(lats, step))
	}
	from := time.Duration(0)
	for _, m := range load.marks {
		var lats []time.Duration
		for i, a := range load.acks {
			if a > from && a <= m.at {
				lats = append(lats, load.lats[i])
			}
		}
		t.Logf("%s (%s): %s", m.name, (m.at - from).Round(time.Millisecond), latencyLine(lats, m.at-from))
		from = m.at
	}
	load.mu.Unlock()
	t.Logf("the joiner installed a snapshot: %v", strings.Contains(pc.procs[3].output(), "snapshot installed from the leader"))
	load.finish(pc.endpoints(0, 1, 2, 3))
}

// latencyLine is the rate and the latency percentiles of lats, acknowledged in d.
func latencyLine(lats []time.Duration, d time.Duration) string {
	if len(lats) == 0 {
		return "0 acknowledged"
	}
	slices.Sort(lats)
	p := func(q float64) time.Duration { return lats[min(len(lats)-1, int(q*float64(len(lats))))] }
	return fmt.Sprintf("%6.0f/s  p50 %6.2fms  p99 %7.2fms  max %7.2fms", float64(len(lats))/d.Seconds(),
		float64(p(0.5).Microseconds())/1000, float64(p(0.99).Microseconds())/1000, float64(lats[len(lats)-1].Microseconds())/1000)
}
