package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
)

// The load of tandem bench: --clients sessions with --inflight commands each, for --warmup and
// then --duration, in one of three loops:
//
//   - closedLoop (Tandem, no --rate): each slot sends its next command from the answer to the
//     previous one;
//   - openLoop (Tandem, --rate): a pacer per session starts every command once it falls due;
//   - blockingLoop (--etcd): a goroutine per slot, each request waiting for its answer, closed
//     loop or paced by --rate.
//
// The workload (--workload inc, query or mix) decides which command a slot sends: sendsQuery.
// Only answers that arrive after the warm-up count; --failover kills leaders meanwhile
// (benchfailover.go).

type loadSpec struct {
	eps                []string
	clients, inflight  int
	warmup, duration   time.Duration
	workload           string
	payload, failovers int
	procs              *benchProcs
	etcd               bool        // eps are etcd client endpoints
	rate               float64     // open-loop target, commands per second (0: closed loop)
	tls                *tls.Config // --tls: the load's clients connect with it
}

// pacerQuantum is the open loop's granularity: a command may wait up to this long past its due
// time before it is started, and that wait is part of its latency.
const pacerQuantum = 100 * time.Microsecond

// startFunc starts one command without waiting; done gets its outcome. An error means the
// command was not started (the client is finished).
type startFunc func(done func(error)) error

// sendsQuery is the workload: whether slot k of client ci sends linearizable queries (GET) rather
// than increments. With mix, half the slots of each client query; in the open loop, where a
// client's commands take turns between slots 0 and 1, every other command is a query.
func sendsQuery(workload string, ci, k int) bool {
	return workload == "query" || (workload == "mix" && (ci+k)%2 == 1)
}

// loadRun is what the load loops share: whether answers count yet, the counts and the latency
// histograms.
type loadRun struct {
	loadStart time.Time     // open loop: command n (over all clients) falls due at loadStart + n×interval
	stopAt    time.Time     // no command is started after it
	interval  time.Duration // open loop: between two commands due; 0: closed loop
	measuring atomic.Bool   // the warm-up is over: answers and errors count
	ops       atomic.Int64  // commands acknowledged while measuring
	errs      errorCount    // commands failed while measuring
	lastAck   atomic.Int64  // Unix nanos of the latest acknowledged command
	wg        sync.WaitGroup
	mu        sync.Mutex
	// total and late are behind mu: each loop merges its own histograms into them when it ends.
	total *hdrhistogram.Histogram // latency, µs
	late  *hdrhistogram.Histogram // open loop: how late the generator started commands, µs
}

// newLatencyHistogram records microseconds from 1 µs to a minute, to 3 significant digits.
func newLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
}

func newLoadRun(rate float64, length time.Duration) *loadRun {
	r := &loadRun{total: newLatencyHistogram(), late: newLatencyHistogram()}
	if rate > 0 {
		r.interval = time.Duration(float64(time.Second) / rate)
	}
	r.loadStart = time.Now()
	r.stopAt = time.Now().Add(length)
	return r
}

func runLoad(ls loadSpec, res *BenchResult, cpu, rss func() []float64) error {
	clients, inflight, warmup, duration := ls.clients, ls.inflight, ls.warmup, ls.duration
	if ls.failovers > 0 {
		// Each kill gets its own stretch of load: the election, the catch-up and a settle.
		duration = max(duration, time.Duration(ls.failovers)*failoverStretch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), warmup+duration+30*time.Second)
	defer cancel()
	var async func(ci, k int) startFunc
	var batch func(ci int, fn func()) // client ci's Batch
	if !ls.etcd {
		cls, err := dialBenchClients(ctx, ls.eps, clients, inflight, ls.tls)
		if err != nil {
			return err
		}
		defer func() {
			for _, c := range cls {
				c.Close()
			}
		}()
		async = tandemOps(cls, ls.workload, ls.payload)
		batch = func(ci int, fn func()) { cls[ci].Batch(fn) }
	}
	r := newLoadRun(ls.rate, warmup+duration)
	switch {
	case ls.etcd:
		r.blockingLoop(clients, inflight, etcdOps(ls.eps, clients, inflight, ls.workload, ls.payload))
	case r.interval == 0:
		r.closedLoop(clients, inflight, async)
	default:
		r.openLoop(clients, inflight, async, batch)
	}
	time.Sleep(warmup) // the warm-up is a fixed stretch of load by definition
	var cpu0 []float64
	if cpu != nil {
		cpu0 = cpu()
	}
	r.measuring.Store(true)
	start := time.Now()
	if ls.failovers > 0 {
		times, err := ls.procs.failovers(ls.failovers, &r.lastAck)
		if err != nil {
			return err
		}
		recordFailovers(res, times)
	}
	tick := time.NewTicker(time.Second)
	for time.Now().Before(r.stopAt) {
		<-tick.C
		el := time.Since(start).Seconds()
		fmt.Fprintf(os.Stderr, "\r%5.1fs  %8.0f ops/s  %d errors", el, float64(r.ops.Load())/el, r.errs.n.Load())
	}
	tick.Stop()
	r.wg.Wait()
	el := time.Since(start)
	fmt.Fprintln(os.Stderr)
	r.record(res, el)
	if cpu != nil && ls.failovers == 0 { // restarted members' counters start again: not comparable
		for i, v := range cpu() {
			if i < len(cpu0) {
				res.NodeCPUSeconds = append(res.NodeCPUSeconds, v-cpu0[i])
			}
		}
		res.NodeRSSMiB = rss()[:len(res.NodeCPUSeconds)]
	}
	return nil
}

// record puts the counts and latencies of a measurement that lasted el into res.
func (r *loadRun) record(res *BenchResult, el time.Duration) {
	res.Duration = el.Seconds()
	res.Ops, res.Errors, res.FirstError = r.ops.Load(), r.errs.n.Load(), r.errs.firstText()
	res.OpsPerSec = float64(res.Ops) / el.Seconds()
	res.P50us = float64(r.total.ValueAtQuantile(50))
	res.P90us = float64(r.total.ValueAtQuantile(90))
	res.P99us = float64(r.total.ValueAtQuantile(99))
	res.P999us = float64(r.total.ValueAtQuantile(99.9))
	res.Maxus = float64(r.total.Max())
	if r.interval > 0 {
		res.LateP50us, res.LateP99us = float64(r.late.ValueAtQuantile(50)), float64(r.late.ValueAtQuantile(99))
	}
}

// dialBenchClients opens the load's sessions, one client each, with room for inflight commands.
func dialBenchClients(ctx context.Context, eps []string, clients, inflight int, tlsCfg *tls.Config) ([]*client.Client, error) {
	var cls []*client.Client
	for range clients {
		c, err := client.Dial(ctx, client.Config{Endpoints: eps, MaxInFlight: max(inflight, 1), TLS: tlsCfg})
		if err != nil {
			for _, c := range cls {
				c.Close()
			}
			return nil, fmt.Errorf("dial: %w", err)
		}
		cls = append(cls, c)
	}
	return cls, nil
}

// tandemOps returns, for slot k of client ci, how to start its commands through the client's
// asynchronous API: counter increments or GETs (sendsQuery), padded to payload bytes if set.
func tandemOps(cls []*client.Client, workload string, payload int) func(ci, k int) startFunc {
	inc := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
	get := counter.EncodeRequest(counter.Request{Op: counter.OpGet})
	if payload > 0 {
		inc = counter.EncodeRequest(counter.Request{Op: counter.OpIncrement, Pad: max(1, payload-len(inc)-2)})
		get = counter.EncodeRequest(counter.Request{Op: counter.OpGet, Pad: max(1, payload-len(get)-2)})
	}
	return func(ci, k int) startFunc {
		c := cls[ci]
		cb := func(done func(error)) func([]byte, error) {
			return func(_ []byte, err error) { done(err) }
		}
		if sendsQuery(workload, ci, k) {
			return func(done func(error)) error { return c.QueryAsync(get, cb(done)) }
		}
		return func(done func(error)) error { return c.SendAsync(inc, cb(done)) }
	}
}

// closedLoop is the closed loop through the asynchronous API: each of the inflight slots of a
// client starts its next command from the answer to the previous one, with no goroutine per
// command (the load generator stays small next to the members it measures).
func (r *loadRun) closedLoop(clients, inflight int, async func(ci, k int) startFunc) {
	for ci := range clients {
		h := newLatencyHistogram()
		var hmu sync.Mutex
		var slots sync.WaitGroup
		for k := range inflight {
			start := async(ci, k)
			slots.Add(1)
			var next func()
			next = func() {
				t0 := time.Now()
				err := start(func(err error) {
					if r.measuring.Load() {
						if err != nil {
							r.errs.add(err)
						} else {
							r.ops.Add(1)
							now := time.Now()
							r.lastAck.Store(now.UnixNano())
							hmu.Lock()
							_ = h.RecordValue(max(1, now.Sub(t0).Microseconds()))
							hmu.Unlock()
						}
					}
					if time.Now().Before(r.stopAt) {
						next()
					} else {
						slots.Done()
					}
				})
				if err != nil { // the client is finished: this slot stops
					r.errs.add(err)
					slots.Done()
				}
			}
			next()
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			slots.Wait()
			r.mu.Lock()
			r.total.Merge(h)
			r.mu.Unlock()
		}()
	}
}

// openLoop is the open loop through the asynchronous API: one pacer per client starts every
// command once it falls due, bounded by the client's inflight window. A sleep and a write per
// command would cost more than the command, so the pacer wakes at most every pacerQuantum and
// starts all that fell due in one client.Batch (one write). Latency runs from the due time to
// the answer; lateness (the quantum, a full window, a busy CPU) is reported too.
func (r *loadRun) openLoop(clients, inflight int, async func(ci, k int) startFunc, batch func(ci int, fn func())) {
	for ci := range clients {
		starts := []startFunc{async(ci, 0), async(ci, 1)}
		every := r.interval * time.Duration(clients)
		first := r.loadStart.Add(time.Duration(ci) * r.interval)
		at := func(n int) time.Time { return first.Add(time.Duration(n) * every) }
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			h := newLatencyHistogram()
			hl := newLatencyHistogram()
			var hmu sync.Mutex
			slots := make(chan struct{}, inflight)
			issue := func(n int) { // holds a slot for command n
				t0 := at(n)
				if r.measuring.Load() {
					_ = hl.RecordValue(max(1, time.Since(t0).Microseconds()))
				}
				err := starts[n%2](func(err error) {
					<-slots
					if !r.measuring.Load() {
						return
					}
					if err != nil {
						r.errs.add(err)
						return
					}
					r.ops.Add(1)
					now := time.Now()
					r.lastAck.Store(now.UnixNano())
					hmu.Lock()
					_ = h.RecordValue(max(1, now.Sub(t0).Microseconds()))
					hmu.Unlock()
				})
				if err != nil {
					<-slots
					if r.measuring.Load() {
						r.errs.add(err)
					}
				}
			}
			for n := 0; at(n).Before(r.stopAt); {
				if d := time.Until(at(n)); d > 0 {
					time.Sleep(max(d, pacerQuantum))
				}
				slots <- struct{}{} // may wait for an answer: never inside the batch
				now := time.Now()
				batch(ci, func() {
					for {
						issue(n)
						n++
						if t := at(n); t.After(now) || !t.Before(r.stopAt) {
							return
						}
						select {
						case slots <- struct{}{}:
						default:
							return // the window is full: wait for a slot outside
						}
					}
				})
			}
			for range inflight { // every outstanding command has answered
				slots <- struct{}{}
			}
			r.mu.Lock()
			hmu.Lock()
			r.total.Merge(h)
			hmu.Unlock()
			r.late.Merge(hl)
			r.mu.Unlock()
		}()
	}
}

// blockingLoop runs one goroutine per slot, each calling its operation (op returns slot k of
// client ci's) and waiting for the answer before the next: the etcd comparison's loop, since
// etcd's JSON gateway takes one request per connection at a time. With --rate the commands are
// due at fixed times over all slots, and each latency runs from its due time.
func (r *loadRun) blockingLoop(clients, inflight int, op func(ci, k int) func() error) {
	var due atomic.Int64 // open loop: the number of the next command to fall due
	for ci := range clients {
		for k := range inflight {
			r.wg.Add(1)
			do := op(ci, k)
			go func() {
				defer r.wg.Done()
				h := newLatencyHistogram()
				hl := newLatencyHistogram()
				for time.Now().Before(r.stopAt) {
					t0 := time.Now()
					var lateBy time.Duration
					if r.interval > 0 {
						// The command is due at its slot whether or not the cluster kept up;
						// a late answer delays nothing but is charged from the slot.
						t0 = r.loadStart.Add(time.Duration(due.Add(1)-1) * r.interval)
						if d := time.Until(t0); d > 0 {
							time.Sleep(d)
						}
						lateBy = time.Since(t0)
					}
					err := do()
					if !r.measuring.Load() {
						continue
					}
					if r.interval > 0 {
						_ = hl.RecordValue(max(1, lateBy.Microseconds()))
					}
					if err != nil {
						r.errs.add(err)
						continue
					}
					r.ops.Add(1)
					r.lastAck.Store(time.Now().UnixNano())
					_ = h.RecordValue(max(1, time.Since(t0).Microseconds()))
				}
				r.mu.Lock()
				r.total.Merge(h)
				r.late.Merge(hl)
				r.mu.Unlock()
			}()
		}
	}
}
