package main

import (
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// tandem bench --failover N: under the load of a closed or open loop, the leader process is
// SIGKILLed N times; each kill is timed to the next acknowledged command.

// failoverStretch is the load each kill gets: the election, the killed member's restart and
// catch-up, and a settle before the next kill. A run lasts at least N of them.
const failoverStretch = 8 * time.Second

// failovers kills the leader n times under load and returns, for each kill, the time to the
// next acknowledged command; the killed member is restarted and left to catch up in between.
func (b *benchProcs) failovers(n int, lastAck *atomic.Int64) ([]time.Duration, error) {
	var out []time.Duration
	for k := range n {
		deadline := time.Now().Add(20 * time.Second)
		l := b.leader()
		for l < 0 || time.Since(time.Unix(0, lastAck.Load())) > 50*time.Millisecond {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("failover %d: no leader with commands flowing", k+1)
			}
			time.Sleep(5 * time.Millisecond)
			l = b.leader()
		}
		t0 := time.Now()
		b.kill(l)
		// The next acknowledgement: a few milliseconds of grace for answers the killed leader
		// had already written to its sockets.
		edge := t0.Add(5 * time.Millisecond).UnixNano()
		for lastAck.Load() < edge {
			if time.Since(t0) > 30*time.Second {
				return nil, fmt.Errorf("failover %d: no command acknowledged within 30 s of the kill", k+1)
			}
			time.Sleep(time.Millisecond)
		}
		out = append(out, time.Duration(lastAck.Load()-t0.UnixNano()))
		fmt.Fprintf(os.Stderr, "\rfailover %d: leader %d killed, next acknowledgement after %s\n", k+1, l, out[k].Round(time.Millisecond))
		if err := b.start(l); err != nil {
			return nil, err
		}
		time.Sleep(3 * time.Second) // the restarted member catches up before the next kill
	}
	return out, nil
}

// recordFailovers puts the failover times' count and quantiles into res.
func recordFailovers(res *BenchResult, times []time.Duration) {
	slices.Sort(times)
	res.Failovers = len(times)
	pick := func(q float64) float64 { return float64(times[min(len(times)-1, int(q*float64(len(times))))]) / 1e6 }
	res.FailoverP50ms, res.FailoverP99ms, res.FailoverMaxms = pick(0.5), pick(0.99), pick(1)
}
