package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/internal/container"
)

// tandem bench: the verb — its flags, where the members it measures run (startBenchTarget), the
// machine's fsync reference, profiles, and the run. The pieces, a file each:
//
//   - benchload.go: the load (closed loop, open loop with its pacer, the workloads) and what it
//     measures;
//   - benchfailover.go: --failover, leaders killed under load;
//   - benchrestart.go: --restart, the time a member with N applied commands needs to serve again;
//   - benchetcd.go: --etcd, the same load against etcd (docs/bench-vs-etcd.sh);
//   - benchprocs.go: members as `tandem node` processes: starting, killing, role banners, CPU and
//     RSS;
//   - benchresult.go: what is printed, as text and as JSON (docs/PERFORMANCE.md and
//     docs/bench-vs-etcd.sh read it).

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

func runBench(args []string) int {
	fs := newFlagSet("bench")
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
	useTLS := fs.Bool("tls", false, "secure the members it starts: mutual TLS between them, TLS and client certificates on the client port (certificates made for the run)")
	failovers := fs.Int("failover", 0, "SIGKILL the leader this many times under load and report the time to the next acknowledged command (implies --processes)")
	if _, code, done := parseVerb(fs, args, verbHelp{benchHelp, benchExamples}); done {
		return code
	}
	if *workload != "inc" && *workload != "query" && *workload != "mix" {
		return usageError(os.Stderr, "bench", "--workload %q: want inc, query or mix", *workload)
	}
	if *payload != 0 && (*payload < 16 || *payload > 4096) {
		return usageError(os.Stderr, "bench", "--payload %d: want 16 to 4096", *payload)
	}
	if *failovers > 0 {
		if *endpoints != "" {
			return usageError(os.Stderr, "bench", "--failover needs members it can kill: not with --endpoints")
		}
		*processes = true
	}
	if *clients < 1 || *inflight < 1 {
		return usageError(os.Stderr, "bench", "--clients and --inflight must be at least 1")
	}
	if window := container.DefaultConfig().ResponseWindowMax; *inflight > window {
		return usageError(os.Stderr, "bench", "--inflight %d exceeds a session's response window (%d): the cluster would refuse the commands beyond it", *inflight, window)
	}
	if *rate < 0 {
		return usageError(os.Stderr, "bench", "--rate must not be negative")
	}
	var sec *benchSecurity
	if *useTLS {
		if *endpoints != "" || *etcdEps != "" || *restart > 0 {
			return usageError(os.Stderr, "bench", "--tls secures the members bench starts: not with --endpoints, --etcd or --restart")
		}
		dir, remove, err := benchSecurityDir()
		if err == nil {
			defer remove()
			sec, err = newBenchSecurity(dir)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
			return exitFailed
		}
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
		printRestartResult(rr)
		return exitOK
	}
	target, err := startBenchTarget(&res, *etcdEps, *endpoints, *processes, sec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
		return exitFailed
	}
	defer target.close()
	if res.Layout != "in-process" && os.Getenv("GOGC") == "" {
		// This process is only the load generator: its heap is a few MiB of short-lived
		// answers and callbacks, which the default GOGC collects many times a second at
		// 100 000 commands/s, each collection stopping every client for a while
		// (docs/PERFORMANCE.md, "Why the defaults are what they are"). The members keep the
		// default (they run in processes of their own, which inherit the environment, not this
		// setting).
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
	load := loadSpec{eps: target.eps, clients: *clients, inflight: *inflight, warmup: *warmup, duration: *duration,
		workload: *workload, payload: *payload, failovers: *failovers, procs: target.procs, etcd: *etcdEps != "", rate: *rate}
	if sec != nil {
		load.tls = sec.client
		res.TLS = true
	}
	if err := runLoad(load, &res, target.cpu, target.rss); err != nil {
		fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
		return exitFailed
	}
	if *memProfile != "" {
		if err := writeAllocProfile(*memProfile); err != nil {
			fmt.Fprintf(os.Stderr, "tandem bench: %v\n", err)
			return exitFailed
		}
	}
	if *asJSON {
		return printJSON(res)
	}
	printBenchResult(res)
	return exitOK
}

// benchTarget is the cluster a load run measures.
type benchTarget struct {
	eps   []string    // its client endpoints (etcd's with --etcd)
	procs *benchProcs // members as processes (--processes, --failover); nil otherwise
	// cpu and rss sample the members, where known (nil: not known): per member, or the whole
	// process when the members run in it.
	cpu, rss func() []float64
	close    func() // stops what startBenchTarget started
}

// startBenchTarget starts the members a run measures, or names those of a running cluster
// (--etcd, --endpoints), and records the layout in res.
func startBenchTarget(res *BenchResult, etcdEps, endpoints string, processes bool, sec *benchSecurity) (benchTarget, error) {
	t := benchTarget{close: func() {}}
	switch {
	case etcdEps != "":
		t.eps = strings.Split(etcdEps, ",")
		res.Layout, res.Nodes = "etcd", len(t.eps)
	case endpoints != "":
		t.eps = strings.Split(endpoints, ",")
		res.Layout, res.Nodes = "external", len(t.eps)
	case processes:
		res.Layout = "processes"
		cl, err := startBenchProcesses(sec)
		if err != nil {
			return t, err
		}
		t.procs, t.eps, t.cpu, t.rss, t.close = cl, cl.clients, cl.cpu, cl.rss, cl.stop
	default:
		res.Layout = "in-process"
		lc, err := startLocalCluster(sec)
		if err != nil {
			return t, err
		}
		t.eps, t.cpu, t.rss, t.close = lc.eps, selfCPUSeconds, selfRSSMiB, lc.close
	}
	return t, nil
}

// writeAllocProfile writes this process's allocation profile to path (--memprofile).
func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		_ = f.Close()
	}
	return err
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
