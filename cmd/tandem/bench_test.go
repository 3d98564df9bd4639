package main

import (
	"encoding/json"
	"testing"
)

// The open loop starts commands only when they fall due: however fast the cluster answers, a
// run cannot acknowledge more than the rate times its whole length (warm-up included), which a
// closed loop with the same window exceeds many times over.
func TestBenchOpenLoopKeepsToItsRate(t *testing.T) {
	const rate, seconds = 2000, 1.2 // --warmup 200ms + --duration 1s
	out, stderr, code := runCLI(t, tandemBinary(t), "bench", "--duration", "1s", "--warmup", "200ms",
		"--clients", "2", "--inflight", "16", "--workload", "mix", "--rate", "2000", "--json")
	if code != 0 {
		t.Fatalf("bench exited %d: %s", code, stderr)
	}
	var r BenchResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench --json printed %q: %v", out, err)
	}
	if r.RatePerSec != rate || r.Ops == 0 || r.P50us <= 0 || r.LateP99us < r.LateP50us || r.LateP50us <= 0 {
		t.Fatalf("implausible open-loop result: %+v", r)
	}
	if limit := int64(rate*seconds) + 1; r.Ops > limit {
		t.Fatalf("%d commands acknowledged at %d/s over %.1f s: more than were due (%d)", r.Ops, rate, seconds, limit)
	}
}

// --restart loads the cluster, restarts a follower and times it until it serves again. (A raft
// entry carries a batch of commands: the commit index is far below the commands' count.)
func TestBenchRestartJSON(t *testing.T) {
	t.Parallel()
	out, stderr, code := runCLI(t, tandemBinary(t), "bench", "--restart", "5000", "--json")
	if code != 0 {
		t.Fatalf("bench --restart exited %d: %s", code, stderr)
	}
	var r RestartResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench --restart --json printed %q: %v", out, err)
	}
	if r.Commands < 5000 || r.Applied == 0 || r.RestartMs <= 0 || r.LoadSeconds <= 0 {
		t.Fatalf("implausible restart result: %+v", r)
	}
}

// --tls measures members secured on both ports, as processes: the run completes without errors
// and says it was secured (the members would refuse the load generator's connections otherwise).
func TestBenchTLSProcesses(t *testing.T) {
	t.Parallel()
	out, stderr, code := runCLI(t, tandemBinary(t), "bench", "--tls", "--processes", "--duration", "1s", "--warmup", "300ms",
		"--clients", "2", "--inflight", "16", "--json")
	if code != 0 {
		t.Fatalf("bench --tls exited %d: %s", code, stderr)
	}
	var r BenchResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench --json printed %q: %v", out, err)
	}
	if !r.TLS || r.Ops == 0 || r.Errors != 0 || r.Layout != "processes" {
		t.Fatalf("implausible --tls result: %+v", r)
	}
}
