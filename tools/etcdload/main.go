// Command etcdload drives an etcd cluster through its gRPC client the way tandem bench drives
// Tandem: --clients connections, each with --inflight commands in flight (one goroutine each,
// closed loop), counted for --duration after --warmup. It is a module of its own so that the etcd
// client is not a dependency of Tandem; docs/bench-vs-etcd.sh builds and runs it.
//
//	go run . --endpoints 127.0.0.1:2379 --clients 4 --inflight 256 --workload put
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type result struct {
	OpsPerSec float64 `json:"ops_per_sec"`
	Ops       int64   `json:"ops"`
	Errors    int64   `json:"errors"`
	P50us     float64 `json:"p50_us"`
	P90us     float64 `json:"p90_us"`
	P99us     float64 `json:"p99_us"`
	P999us    float64 `json:"p999_us"`
	Maxus     float64 `json:"max_us"`
	Clients   int     `json:"clients"`
	Inflight  int     `json:"inflight"`
	Workload  string  `json:"workload"`
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "etcd client endpoints, comma-separated")
	clients := flag.Int("clients", 4, "gRPC connections (clients)")
	inflight := flag.Int("inflight", 256, "requests in flight per client")
	duration := flag.Duration("duration", 10*time.Second, "measured time")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured time before it")
	workload := flag.String("workload", "put", "put (blind Put of a 3-byte value) or get (linearizable Get)")
	asJSON := flag.Bool("json", false, "print one JSON object")
	flag.Parse()
	if *workload != "put" && *workload != "get" {
		fmt.Fprintf(os.Stderr, "etcdload: --workload %q: want put or get\n", *workload)
		os.Exit(2)
	}
	eps := strings.Split(*endpoints, ",")
	var cls []*clientv3.Client
	for range *clients {
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcdload: %v\n", err)
			os.Exit(1)
		}
		defer c.Close()
		cls = append(cls, c)
	}
	ctx := context.Background()
	if _, err := cls[0].Put(ctx, "etcdload-get", "0"); err != nil {
		fmt.Fprintf(os.Stderr, "etcdload: %v\n", err)
		os.Exit(1)
	}
	var measuring atomic.Bool
	var ops, errs atomic.Int64
	var mu sync.Mutex
	total := hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
	stopAt := time.Now().Add(*warmup + *duration)
	var wg sync.WaitGroup
	for ci, c := range cls {
		for k := range *inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
				key := fmt.Sprintf("etcdload-%d-%d", ci, k)
				for time.Now().Before(stopAt) {
					t0 := time.Now()
					var err error
					if *workload == "put" {
						_, err = c.Put(ctx, key, "INC")
					} else {
						_, err = c.Get(ctx, "etcdload-get")
					}
					if !measuring.Load() {
						continue
					}
					if err != nil {
						errs.Add(1)
						continue
					}
					ops.Add(1)
					_ = h.RecordValue(max(1, time.Since(t0).Microseconds()))
				}
				mu.Lock()
				total.Merge(h)
				mu.Unlock()
			}()
		}
	}
	time.Sleep(*warmup)
	measuring.Store(true)
	start := time.Now()
	wg.Wait()
	elapsed := time.Since(start)
	r := result{Ops: ops.Load(), Errors: errs.Load(), Clients: *clients, Inflight: *inflight, Workload: *workload,
		OpsPerSec: float64(ops.Load()) / elapsed.Seconds(),
		P50us:     float64(total.ValueAtQuantile(50)), P90us: float64(total.ValueAtQuantile(90)),
		P99us: float64(total.ValueAtQuantile(99)), P999us: float64(total.ValueAtQuantile(99.9)), Maxus: float64(total.Max())}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	fmt.Printf("%s, etcd (gRPC), %d clients x %d in flight, %s measured\n", *workload, *clients, *inflight, elapsed.Round(time.Millisecond))
	fmt.Printf("throughput  %.0f ops/s (%d ops, %d errors)\n", r.OpsPerSec, r.Ops, r.Errors)
	fmt.Printf("latency     p50 %.0f µs  p90 %.0f µs  p99 %.0f µs  p99.9 %.0f µs  max %.0f µs\n", r.P50us, r.P90us, r.P99us, r.P999us, r.Maxus)
}
