package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/container"
)

const benchHelp = `Usage: tandem bench [flags]

Measures a three-member cluster with real TCP and real fsync, driven through the real client:
--clients sessions, each with --inflight commands pipelined, for --duration after --warmup. Only
acknowledged commands count (one increment is one operation). With --rate the load is open: commands
are due at a fixed total rate, and each latency is measured from the moment its command was due,
so a stall counts for every command it delayed (no coordinated omission). Before the run, the
machine's own reference is measured: the p50 of an fsync after a 64 B append in the temporary
directory, so figures from different days can be read against the disk they ran on. By default the members run in this
process; --processes starts them as separate tandem node processes; --endpoints measures a
running cluster.

Flags:
`

const benchExamples = `
Examples:
  tandem bench                                   # in-process, 4 clients x 256 in flight, 10 s
  tandem bench --rate 50000                      # latency at a fixed 50 000 commands/s
  tandem bench --processes --clients 8 --inflight 32 --json
  tandem bench --clients 1 --inflight 1          # one command at a time: latency
  tandem bench --workload query
  tandem bench --endpoints 127.0.0.1:9000,127.0.0.1:9001,127.0.0.1:9002
`

// generatorGCPercent is the GOGC of the load generator when the members run elsewhere (unless
// GOGC is set).
const generatorGCPercent = 800

// errorCount counts the commands that failed, and keeps the first failure's text.
type errorCount struct {
	n     atomic.Int64
	first atomic.Pointer[string]
}

func (e *errorCount) add(err error) {
	e.n.Add(1)
	if e.first.Load() == nil {
		text := err.Error()
		e.first.CompareAndSwap(nil, &text)
	}
}

func (e *errorCount) firstText() string {
	if p := e.first.Load(); p != nil {
		return *p
	}
	return ""
}

// BenchResult is what --json prints.
type BenchResult struct {
	OpsPerSec float64 `json:"ops_per_sec"`
	Ops       int64   `json:"ops"`
	Errors    int64   `json:"errors"`
	// FirstError is the text of the first error, so a run with errors says what they were.
	FirstError string  `json:"first_error,omitempty"`
	P50us      float64 `json:"p50_us"`
	P90us      float64 `json:"p90_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
	Maxus      float64 `json:"max_us"`
	Nodes      int     `json:"nodes"`
	Fsync      bool    `json:"fsync"`
	Layout     string  `json:"layout"`
	Clients    int     `json:"clients"`
	Inflight   int     `json:"inflight"`
	Workload   string  `json:"workload"`
	Duration   float64 `json:"duration_s"`
	// Per member, where known: CPU seconds used during the measurement and resident memory.
	NodeCPUSeconds []float64 `json:"node_cpu_seconds,omitempty"`
	NodeRSSMiB     []float64 `json:"node_rss_mib,omitempty"`
	Payload        int       `json:"payload_bytes"`
	// RatePerSec is the target of an open-loop run (0: closed loop, as fast as answers come).
	RatePerSec float64 `json:"rate_per_sec,omitempty"`
	// LateP50us / LateP99us: open loop only, how late the load generator itself started
	// commands after they fell due (its sleeps overshoot on a busy or virtual machine); part of
	// the latencies above, not the cluster's doing.
	LateP50us float64 `json:"late_p50_us,omitempty"`
	LateP99us float64 `json:"late_p99_us,omitempty"`
	// FsyncP50us is the machine's reference: an fsync after a 64 B append, p50.
	FsyncP50us float64 `json:"fsync_p50_us"`
	// With --failover: time from a leader's SIGKILL to the next acknowledged command.
	Failovers     int     `json:"failovers,omitempty"`
	FailoverP50ms float64 `json:"failover_p50_ms,omitempty"`
	FailoverP99ms float64 `json:"failover_p99_ms,omitempty"`
	FailoverMaxms float64 `json:"failover_max_ms,omitempty"`
}

type loadSpec struct {
	eps                []string
	clients, inflight  int
	warmup, duration   time.Duration
	workload           string
	payload, failovers int
	procs              *benchProcs
	etcd               bool    // eps are etcd client endpoints
	rate               float64 // open-loop target, commands per second (0: closed loop)
}

func runBench(args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	clients := fs.Int("clients", 4, "client sessions")
	inflight := fs.Int("inflight", 256, "commands in flight per session")
	rate := fs.Float64("rate", 0, "open loop: commands due per second in total (latency counted from when each was due); 0 runs closed-loop")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time before it")
	workload := fs.String("workload", "inc", "inc (increments), query (linearizable GETs) or mix (half each)")
	endpoints := fs.String("endpoints", "", "measure a running cluster at these client endpoints")
	processes := fs.Bool("processes", false, "run the members as separate tandem node processes")
	etcdEps := fs.String("etcd", "", "measure an etcd cluster at these client endpoints instead (blind Put / linearizable Get through etcd's JSON gateway), for docs/bench-vs-etcd.sh")
	asJSON := fs.Bool("json", false, "print one JSON object")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process to the file (in-process members: members and clients)")
	memProfile := fs.String("memprofile", "", "write an allocation profile of this process to the file at the end (go tool pprof -sample_index=alloc_space)")
	payload := fs.Int("payload", 0, "command size in bytes, 16 to 4096 (padding the increment; 0: the bare 3-byte request)")
	restart := fs.Int64("restart", 0, "instead of measuring load: acknowledge this many increments on in-process members, then restart a follower and time it until it follows and has applied everything committed")
	failovers := fs.Int("failover", 0, "SIGKILL the leader this many times under load and report the time to the next acknowledged command (implies --processes)")
	fs.Usage = func() { fmt.Fprint(os.Stderr, benchHelp); fs.PrintDefaults(); fmt.Fprint(os.Stderr, benchExamples) }
	if _, err := parseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *workload != "inc" && *workload != "query" && *workload != "mix" {
		fmt.Fprintf(os.Stderr, "tandem bench: --workload %q: want inc, query or mix\n", *workload)
		return exitUsage
	}
	if *payload != 0 && (*payload < 16 || *payload > 4096) {
		fmt.Fprintf(os.Stderr, "tandem bench: --payload %d: want 16 to 4096\n", *payload)
		return exitUsage
	}
	if *failovers > 0 {
		if *endpoints != "" {
			fmt.Fprintln(os.Stderr, "tandem bench: --failover needs members it can kill: not with --endpoints")
			return exitUsage
		}
		*processes = true
	}
	if *clients < 1 || *inflight < 1 {
		fmt.Fprintln(os.Stderr, "tandem bench: --clients and --inflight must be at least 1")
		return exitUsage
	}
	if window := container.DefaultConfig().ResponseWindowMax; *inflight > window {
		fmt.Fprintf(os.Stderr, "tandem bench: --inflight %d exceeds a session's response window (%d): the cluster would refuse the commands beyond it\n", *inflight, window)
		return exitUsage
	}
	if *rate < 0 {
		fmt.Fprintln(os.Stderr, "tandem bench: --rate must not be negative")
		return exitUsage
	}
	res := BenchResult{Clients: *clients, Inflight: *inflight, Workload: *workload, Nodes: 3, Fsync: true, Payload: *payload, RatePerSec: *rate}
	p50, err := fsyncReference()
	if err == nil {
		res.FsyncP50us = float64(p50.Microseconds())
	} else {
		fmt.Fprintf(os.Stderr, "tandem bench: fsync reference: %v\n", err)
	}
	if *restart > 0 {
		rr, err := runRestart(*restart, p50)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
			return exitFailed
		}
		if *asJSON {
			return printJSON(rr)
		}
		fmt.Printf("restart     %d increments acknowledged in %.1f s (commit index %d); a follower stopped and started again\n",
			rr.Commands, rr.LoadSeconds, rr.Applied)
		fmt.Printf("            following and caught up after %.0f ms (it restarted from its snapshot at index %d)\n", rr.RestartMs, rr.SnapshotIndex)
		fmt.Printf("machine     fsync after a 64 B append: p50 %.0f µs\n", rr.FsyncP50us)
		return exitOK
	}
	var bp *benchProcs
	var eps []string
	var cpu func() []float64
	var rss func() []float64
	switch {
	case *etcdEps != "":
		eps = strings.Split(*etcdEps, ",")
		res.Layout, res.Nodes = "etcd", len(eps)
	case *endpoints != "":
		eps = strings.Split(*endpoints, ",")
		res.Layout, res.Nodes = "external", len(eps)
	case *processes:
		res.Layout = "processes"
		cl, err := startBenchProcesses()
		if err != nil {
			fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
			return exitFailed
		}
		defer cl.stop()
		bp = cl
		eps, cpu, rss = cl.clients, cl.cpu, cl.rss
	default:
		res.Layout = "in-process"
		lc, err := startLocalCluster()
		if err != nil {
			fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
			return exitFailed
		}
		defer lc.close()
		eps = lc.eps
		cpu = func() []float64 {
			var ru syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			return []float64{tvSeconds(ru.Utime) + tvSeconds(ru.Stime)}
		}
		rss = func() []float64 { return []float64{procRSSMiB(os.Getpid())} }
	}
	if res.Layout != "in-process" && os.Getenv("GOGC") == "" {
		// This process is only the load generator: its heap is a few MiB of short-lived
		// answers and callbacks, which the default GOGC collects about 12 times a second at
		// 100 000 commands/s, each collection stopping every client for up to 1.5 ms on this
		// project's machines. The members keep the default (they run in processes of their own,
		// which inherit the environment, not this setting).
		debug.SetGCPercent(generatorGCPercent)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
			return exitFailed
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
			return exitFailed
		}
		defer pprof.StopCPUProfile()
	}
	load := loadSpec{eps: eps, clients: *clients, inflight: *inflight, warmup: *warmup, duration: *duration,
		workload: *workload, payload: *payload, failovers: *failovers, procs: bp, etcd: *etcdEps != "", rate: *rate}
	if err := runLoad(load, &res, cpu, rss); err != nil {
		fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
		return exitFailed
	}
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err == nil {
			err = pprof.Lookup("allocs").WriteTo(f, 0)
			_ = f.Close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
			return exitFailed
		}
	}
	if *asJSON {
		return printJSON(res)
	}
	fmt.Printf("%s, %d members (%s, fsync on), %d clients x %d in flight, %s measured\n",
		res.Workload, res.Nodes, res.Layout, res.Clients, res.Inflight, time.Duration(res.Duration*float64(time.Second)).Round(time.Millisecond))
	if res.RatePerSec > 0 {
		fmt.Printf("open loop   %.0f commands/s due; latency from when each was due (the generator started them late by p50 %.0f µs, p99 %.0f µs)\n",
			res.RatePerSec, res.LateP50us, res.LateP99us)
	}
	fmt.Printf("machine     fsync after a 64 B append: p50 %.0f µs\n", res.FsyncP50us)
	fmt.Printf("throughput  %.0f ops/s (%d ops, %d errors)\n", res.OpsPerSec, res.Ops, res.Errors)
	if res.FirstError != "" {
		fmt.Printf("errors      the first: %s\n", res.FirstError)
	}
	fmt.Printf("latency     p50 %.0f µs  p90 %.0f µs  p99 %.0f µs  p99.9 %.0f µs  max %.0f µs\n", res.P50us, res.P90us, res.P99us, res.P999us, res.Maxus)
	if res.Failovers > 0 {
		fmt.Printf("failover    %d leader kills: next acknowledged command after p50 %.0f ms  p99 %.0f ms  max %.0f ms\n",
			res.Failovers, res.FailoverP50ms, res.FailoverP99ms, res.FailoverMaxms)
	}
	for i := range res.NodeCPUSeconds {
		fmt.Printf("member %d    cpu %.2f s  rss %.0f MiB\n", i, res.NodeCPUSeconds[i], res.NodeRSSMiB[i])
	}
	if res.Layout == "in-process" {
		fmt.Println("(in-process: cpu and rss are the whole process, members and clients together)")
	}
	return exitOK
}

// roleBanner matches the role-change line tandem node prints.
var roleBanner = regexp.MustCompile(`ROLE CHANGE: (\S+)\s+\(leader (\S+), term (\d+)\)`)

func tvSeconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

// procRSSMiB reads VmRSS of a process from /proc (0 when unavailable).
func procRSSMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// procCPUSeconds reads utime+stime of a process from /proc (clock ticks of 1/100 s).
func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

// printJSON prints v as one line of JSON (--json).
func printJSON(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
		return exitFailed
	}
	fmt.Println(string(b))
	return exitOK
}

// pacerQuantum is the open loop's granularity: a command may wait up to this long past its due
// time before it is started, and that wait is part of its latency.
const pacerQuantum = 100 * time.Microsecond

func runLoad(ls loadSpec, res *BenchResult, cpu, rss func() []float64) error {
	eps, clients, inflight, warmup, duration, workload := ls.eps, ls.clients, ls.inflight, ls.warmup, ls.duration, ls.workload
	if ls.failovers > 0 {
		// Each kill gets its own stretch of load: the election, the catch-up and a settle.
		duration = max(duration, time.Duration(ls.failovers)*8*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), warmup+duration+30*time.Second)
	defer cancel()
	// op returns the operation goroutine k of client ci runs in a loop.
	var op func(ci, k int) func() error
	// async, for Tandem: starts operation k of client ci without waiting; done gets its outcome.
	var async func(ci, k int) func(done func(error)) error
	var batch func(ci int, fn func()) // client ci's Batch
	if ls.etcd {
		op = etcdOps(eps, clients, inflight, workload, ls.payload)
	} else {
		var cls []*client.Client
		for range clients {
			c, err := client.Dial(ctx, client.Config{Endpoints: eps, MaxInFlight: max(inflight, 1)})
			if err != nil {
				return fmt.Errorf("dial: %w", err)
			}
			defer c.Close()
			cls = append(cls, c)
		}
		inc := counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})
		get := counter.EncodeRequest(counter.Request{Op: counter.OpGet})
		if ls.payload > 0 {
			inc = counter.EncodeRequest(counter.Request{Op: counter.OpIncrement, Pad: max(1, ls.payload-len(inc)-2)})
			get = counter.EncodeRequest(counter.Request{Op: counter.OpGet, Pad: max(1, ls.payload-len(get)-2)})
		}
		op = func(ci, k int) func() error {
			c := cls[ci]
			if workload == "query" || (workload == "mix" && (ci+k)%2 == 1) {
				return func() error { _, err := c.Query(ctx, get); return err }
			}
			return func() error { _, err := c.Send(ctx, inc); return err }
		}
		batch = func(ci int, fn func()) { cls[ci].Batch(fn) }
		async = func(ci, k int) func(done func(error)) error {
			c := cls[ci]
			cb := func(done func(error)) func([]byte, error) {
				return func(_ []byte, err error) { done(err) }
			}
			if workload == "query" || (workload == "mix" && (ci+k)%2 == 1) {
				return func(done func(error)) error { return c.QueryAsync(get, cb(done)) }
			}
			return func(done func(error)) error { return c.SendAsync(inc, cb(done)) }
		}
	}
	var lastAck atomic.Int64 // Unix nanos of the latest acknowledged command
	var due atomic.Int64     // open loop: the number of the next command to fall due
	var interval time.Duration
	if ls.rate > 0 {
		interval = time.Duration(float64(time.Second) / ls.rate)
	}
	loadStart := time.Now()
	var measuring atomic.Bool
	var ops atomic.Int64
	var errs errorCount
	stopAt := time.Now().Add(warmup + duration)
	var mu sync.Mutex
	total := hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
	late := hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
	var wg sync.WaitGroup
	if async != nil && interval == 0 {
		// Closed loop through the asynchronous API: each of the inflight slots of a client
		// starts its next command from the answer to the previous one, with no goroutine per
		// command (the load generator stays small next to the members it measures).
		for ci := range clients {
			h := hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
			var hmu sync.Mutex
			var slots sync.WaitGroup
			for k := range inflight {
				start := async(ci, k)
				slots.Add(1)
				var next func()
				next = func() {
					t0 := time.Now()
					err := start(func(err error) {
						if measuring.Load() {
							if err != nil {
								errs.add(err)
							} else {
								ops.Add(1)
								now := time.Now()
								lastAck.Store(now.UnixNano())
								hmu.Lock()
								_ = h.RecordValue(max(1, now.Sub(t0).Microseconds()))
								hmu.Unlock()
							}
						}
						if time.Now().Before(stopAt) {
							next()
						} else {
							slots.Done()
						}
					})
					if err != nil { // the client is finished: this slot stops
						errs.add(err)
						slots.Done()
					}
				}
				next()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				slots.Wait()
				mu.Lock()
				total.Merge(h)
				mu.Unlock()
			}()
		}
	}
	if async != nil && interval > 0 {
		// Open loop through the asynchronous API: one pacer per client starts every command once
		// it falls due, bounded by the client's inflight window. A sleep and a write per command
		// would cost more than the command, so the pacer wakes at most every pacerQuantum and
		// starts all that fell due in one client.Batch (one write). Latency runs from the due
		// time to the answer; lateness (the quantum, a full window, a busy CPU) is reported too.
		for ci := range clients {
			starts := []func(done func(error)) error{async(ci, 0), async(ci, 1)}
			every := interval * time.Duration(clients)
			first := loadStart.Add(time.Duration(ci) * interval)
			at := func(n int) time.Time { return first.Add(time.Duration(n) * every) }
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
				hl := hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
				var hmu sync.Mutex
				slots := make(chan struct{}, inflight)
				issue := func(n int) { // holds a slot for command n
					t0 := at(n)
					if measuring.Load() {
						_ = hl.RecordValue(max(1, time.Since(t0).Microseconds()))
					}
					err := starts[n%2](func(err error) {
						<-slots
						if !measuring.Load() {
							return
						}
						if err != nil {
							errs.add(err)
							return
						}
						ops.Add(1)
						now := time.Now()
						lastAck.Store(now.UnixNano())
						hmu.Lock()
						_ = h.RecordValue(max(1, now.Sub(t0).Microseconds()))
						hmu.Unlock()
					})
					if err != nil {
						<-slots
						if measuring.Load() {
							errs.add(err)
						}
					}
				}
				for n := 0; at(n).Before(stopAt); {
					if d := time.Until(at(n)); d > 0 {
						time.Sleep(max(d, pacerQuantum))
					}
					slots <- struct{}{} // may wait for an answer: never inside the batch
					now := time.Now()
					batch(ci, func() {
						for {
							issue(n)
							n++
							if t := at(n); t.After(now) || !t.Before(stopAt) {
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
				mu.Lock()
				hmu.Lock()
				total.Merge(h)
				hmu.Unlock()
				late.Merge(hl)
				mu.Unlock()
			}()
		}
	}
	for ci := range clients {
		for k := range inflight {
			if async != nil {
				break
			}
			wg.Add(1)
			do := op(ci, k)
			go func() {
				defer wg.Done()
				h := hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
				hl := hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
				for time.Now().Before(stopAt) {
					t0 := time.Now()
					var lateBy time.Duration
					if interval > 0 {
						// The command is due at its slot whether or not the cluster kept up;
						// a late answer delays nothing but is charged from the slot.
						t0 = loadStart.Add(time.Duration(due.Add(1)-1) * interval)
						if d := time.Until(t0); d > 0 {
							time.Sleep(d)
						}
						lateBy = time.Since(t0)
					}
					err := do()
					if !measuring.Load() {
						continue
					}
					if interval > 0 {
						_ = hl.RecordValue(max(1, lateBy.Microseconds()))
					}
					if err != nil {
						errs.add(err)
						continue
					}
					ops.Add(1)
					lastAck.Store(time.Now().UnixNano())
					_ = h.RecordValue(max(1, time.Since(t0).Microseconds()))
				}
				mu.Lock()
				total.Merge(h)
				late.Merge(hl)
				mu.Unlock()
			}()
		}
	}
	time.Sleep(warmup) // the warm-up is a fixed stretch of load by definition
	var cpu0 []float64
	if cpu != nil {
		cpu0 = cpu()
	}
	measuring.Store(true)
	start := time.Now()
	if ls.failovers > 0 {
		times, err := ls.procs.failovers(ls.failovers, &lastAck)
		if err != nil {
			return err
		}
		slices.Sort(times)
		res.Failovers = len(times)
		pick := func(q float64) float64 { return float64(times[min(len(times)-1, int(q*float64(len(times))))]) / 1e6 }
		res.FailoverP50ms, res.FailoverP99ms, res.FailoverMaxms = pick(0.5), pick(0.99), pick(1)
	}
	tick := time.NewTicker(time.Second)
	for time.Now().Before(stopAt) {
		<-tick.C
		el := time.Since(start).Seconds()
		fmt.Fprintf(os.Stderr, "\r%5.1fs  %8.0f ops/s  %d errors", el, float64(ops.Load())/el, errs.n.Load())
	}
	tick.Stop()
	wg.Wait()
	el := time.Since(start)
	fmt.Fprintln(os.Stderr)
	res.Duration = el.Seconds()
	res.Ops, res.Errors, res.FirstError = ops.Load(), errs.n.Load(), errs.firstText()
	res.OpsPerSec = float64(res.Ops) / el.Seconds()
	res.P50us = float64(total.ValueAtQuantile(50))
	res.P90us = float64(total.ValueAtQuantile(90))
	res.P99us = float64(total.ValueAtQuantile(99))
	res.P999us = float64(total.ValueAtQuantile(99.9))
	res.Maxus = float64(total.Max())
	if interval > 0 {
		res.LateP50us, res.LateP99us = float64(late.ValueAtQuantile(50)), float64(late.ValueAtQuantile(99))
	}
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

// fsyncReference measures the machine: the median time of an fsync after a 64 B append, over
// 200 appends to a file in the temporary directory.
func fsyncReference() (time.Duration, error) {
	f, err := os.CreateTemp("", "tandem-fsync-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	rec := make([]byte, 64)
	ds := make([]time.Duration, 0, 200)
	for range 200 {
		if _, err := f.Write(rec); err != nil {
			return 0, err
		}
		t0 := time.Now()
		if err := f.Sync(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

type benchProcs struct {
	dir     string
	cmds    []*exec.Cmd
	clients []string
	members string
	exe     string
	mu      sync.Mutex
	roles   []string
	terms   []uint64
}

func startBenchProcesses() (*benchProcs, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		return nil, err
	}
	ms, eps, err := benchMembers()
	if err != nil {
		return nil, err
	}
	var parts []string
	for _, m := range ms {
		parts = append(parts, fmt.Sprintf("%d,%s,%s", m.ID, m.ClientAddr, m.MemberAddr))
	}
	bp := &benchProcs{dir: dir, clients: eps, members: strings.Join(parts, "|"), exe: exe,
		cmds: make([]*exec.Cmd, 3), roles: make([]string, 3), terms: make([]uint64, 3)}
	for i := range 3 {
		if err := bp.start(i); err != nil {
			bp.stop()
			return nil, err
		}
	}
	return bp, nil
}

// start runs member i, following the role banners it prints.
func (b *benchProcs) start(i int) error {
	cmd := exec.Command(b.exe, "node", strconv.Itoa(i), "--members", b.members,
		"--data", filepath.Join(b.dir, fmt.Sprintf("node-%d", i)))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.mu.Lock()
	b.cmds[i], b.roles[i], b.terms[i] = cmd, "", 0
	b.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := roleBanner.FindStringSubmatch(sc.Text()); m != nil {
				term, _ := strconv.ParseUint(m[3], 10, 64)
				b.mu.Lock()
				if b.cmds[i] == cmd {
					b.roles[i], b.terms[i] = m[1], term
				}
				b.mu.Unlock()
			}
		}
	}()
	return nil
}

// leader returns the member whose last banner says LEADER in the highest term, or -1.
func (b *benchProcs) leader() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	best, term := -1, uint64(0)
	for i, r := range b.roles {
		if r == "LEADER" && b.terms[i] >= term && b.cmds[i] != nil {
			best, term = i, b.terms[i]
		}
	}
	return best
}

func (b *benchProcs) kill(i int) {
	b.mu.Lock()
	cmd := b.cmds[i]
	b.cmds[i], b.roles[i] = nil, ""
	b.mu.Unlock()
	if cmd != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

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

func (b *benchProcs) cpu() []float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []float64
	for _, c := range b.cmds {
		if c != nil {
			out = append(out, procCPUSeconds(c.Process.Pid))
		}
	}
	return out
}

func (b *benchProcs) rss() []float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []float64
	for _, c := range b.cmds {
		if c != nil {
			out = append(out, procRSSMiB(c.Process.Pid))
		}
	}
	return out
}

func (b *benchProcs) stop() {
	for i := range b.cmds {
		b.kill(i)
	}
	_ = os.RemoveAll(b.dir)
}
