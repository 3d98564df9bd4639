package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// What tandem bench prints. Other tools and docs/bench-vs-etcd.sh read it: the JSON fields and
// the text lines keep their names and their order.

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
	// TLS: --tls (both ports secured, client certificates).
	TLS      bool    `json:"tls,omitempty"`
	Clients  int     `json:"clients"`
	Inflight int     `json:"inflight"`
	Workload string  `json:"workload"`
	Duration float64 `json:"duration_s"`
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

// printBenchResult prints a load run's result for a reader (without --json).
func printBenchResult(res BenchResult) {
	layout := res.Layout
	if res.TLS {
		layout += ", TLS on both ports"
	}
	fmt.Printf("%s, %d members (%s, fsync on), %d clients x %d in flight, %s measured\n",
		res.Workload, res.Nodes, layout, res.Clients, res.Inflight, time.Duration(res.Duration*float64(time.Second)).Round(time.Millisecond))
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
}
