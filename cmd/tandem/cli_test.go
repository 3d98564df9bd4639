package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/version"
	"github.com/tandem-cluster/tandem/internal/wire"
)

func TestDemoRunsToCompletion(t *testing.T) {
	out, stderr, code := runCLI(t, tandemBinary(t), "demo")
	if code != 0 {
		t.Fatalf("demo exited %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"leader elected", "OK: counter=1", "new leader node", "counter recovered from the archives", "Demo finished"} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// Help that was asked for goes to standard output and exits 0, the same however it is asked for.
func TestHelpOnEveryVerb(t *testing.T) {
	bin := tandemBinary(t)
	for _, v := range verbs {
		if v.name == "help" {
			continue
		}
		out, stderr, code := runCLI(t, bin, v.name, "--help")
		if code != 0 || stderr != "" || !strings.Contains(out, "Usage: tandem "+v.name) || !strings.Contains(out, "xample") {
			t.Fatalf("tandem %s --help exited %d without usage and examples on stdout:\n%s\nstderr: %s", v.name, code, out, stderr)
		}
		for _, args := range [][]string{{"help", v.name}, {v.name, "-h"}, {v.name, "-help"}} {
			if out2, stderr2, code2 := runCLI(t, bin, args...); code2 != 0 || stderr2 != "" || out2 != out {
				t.Fatalf("tandem %q (exit %d, stderr %q) differs from tandem %s --help", args, code2, stderr2, v.name)
			}
		}
	}
	// Not asked for: the overview on stderr, as a reminder, with the usage code.
	if out, stderr, code := runCLI(t, bin); code != exitUsage || out != "" || !strings.Contains(stderr, "Quick start") {
		t.Fatalf("bare tandem exited %d: %s", code, stderr)
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"help", "help"}, {"help", "--help"}} {
		if out, stderr, code := runCLI(t, bin, args...); code != 0 || stderr != "" || !strings.Contains(out, "Quick start") || !strings.Contains(out, "64  usage") {
			t.Fatalf("tandem %q exited %d without the overview on stdout:\n%s\nstderr: %s", args, code, out, stderr)
		}
	}
}

// The seed's scenarios on real processes: the client sequence, flags on either side of the verb,
// the throughput probe, Ctrl+C on the leader handing over, and archive verify.
func TestSeedScenarios(t *testing.T) {
	pc := newProcCluster(t, 3)
	l := pc.startAll()
	eps := strings.Join(pc.clients, ",")
	// Each member's banner, once it started (TestNodeBannerOnlyOnceStarted: not before).
	for _, p := range pc.procs {
		if out := p.output(); strings.Count(out, "Tandem node started") != 1 {
			t.Fatalf("member %d printed its start banner %d times:\n%s", p.id, strings.Count(out, "Tandem node started"), out)
		}
	}
	out, stderr, code := runCLI(t, pc.bin, "client", "--endpoints", eps)
	if code != 0 {
		t.Fatalf("tandem client exited %d: %s", code, stderr)
	}
	for _, want := range []string{"→ request: INCREMENT", "← reply:   OK: counter=1", "← reply:   OK: counter=2", "→ request: GET", "← reply:   VALUE: 2"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the seed's sequence lacks %q:\n%s", want, out)
		}
	}
	if out, _, code := runCLI(t, pc.bin, "client", "--timeout", "5s", "increment", "5", "--endpoints", eps); code != 0 || strings.TrimSpace(out) != "OK: counter=7" {
		t.Fatalf("flags around the verb: %q exit %d", out, code)
	}
	out, stderr, code = runCLI(t, pc.bin, "client", "--count", "200", "--concurrency", "8", "--endpoints", eps)
	if code != 0 || !strings.Contains(out, "200 increments from 8 goroutines") || !strings.Contains(out, "0 errors") || !strings.Contains(out, "p99") ||
		strings.Contains(out, "\r") { // no progress line into a pipe
		t.Fatalf("probe exited %d:\n%s%s", code, out, stderr)
	}

	// Ctrl+C on the leader: it hands over and exits cleanly.
	p := pc.procs[l]
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exitc:
		if err != nil {
			t.Fatalf("the leader exited with %v after Ctrl+C:\n%s", err, p.output())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the leader did not exit after Ctrl+C")
	}
	pc.procs[l] = nil
	if !strings.Contains(p.output(), "stopped") {
		t.Fatalf("no clean stop message:\n%s", p.output())
	}
	if nl := pc.leader(5 * time.Second); nl == l {
		t.Fatalf("leadership did not move")
	}
	if out, _, code := runCLI(t, pc.bin, "client", "get", "--endpoints", eps); code != 0 || strings.TrimSpace(out) != "VALUE: 207" {
		t.Fatalf("after the hand-over: %q exit %d", out, code)
	}
	out, stderr, code = runCLI(t, pc.bin, "archive", "verify", filepath.Join(pc.dir, "node-"+string(rune('0'+l))))
	if code != 0 || !strings.Contains(out, "ok") || !strings.Contains(out, "entries") {
		t.Fatalf("archive verify exited %d:\n%s%s", code, out, stderr)
	}
}

func TestBenchJSON(t *testing.T) {
	out, stderr, code := runCLI(t, tandemBinary(t), "bench", "--duration", "1s", "--warmup", "200ms",
		"--clients", "2", "--inflight", "4", "--workload", "mix", "--json")
	if code != 0 {
		t.Fatalf("bench exited %d: %s", code, stderr)
	}
	var r BenchResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench --json printed %q: %v", out, err)
	}
	if r.Ops == 0 || r.OpsPerSec <= 0 || r.P50us <= 0 || r.P99us < r.P50us || r.Nodes != 3 || !r.Fsync ||
		r.Layout != "in-process" || r.Clients != 2 || r.Inflight != 4 {
		t.Fatalf("implausible result: %+v", r)
	}
}

// An in-flight window the cluster cannot hold is refused up front, with the reason, instead of
// a run whose every command fails.
func TestBenchRefusesInflightBeyondTheWindow(t *testing.T) {
	_, stderr, code := runCLI(t, tandemBinary(t), "bench", "--inflight", "2000")
	if code != exitUsage || !strings.Contains(stderr, "response window (1024)") {
		t.Fatalf("bench --inflight 2000: exit %d, %q", code, stderr)
	}
}

// tandem version prints the build and every version it speaks, applies and reads; every verb
// takes --version.
func TestVersion(t *testing.T) {
	bin := tandemBinary(t)
	out, stderr, code := runCLI(t, bin, "version", "--json")
	if code != 0 {
		t.Fatalf("tandem version --json exited %d: %s", code, stderr)
	}
	var v buildVersions
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("tandem version --json: %v\n%s", err, out)
	}
	want := currentVersions()
	// The binary may carry a version-control stamp that the test binary lacks.
	v.Commit, v.Modified, v.Time, want.Commit, want.Modified, want.Time = "", false, "", "", false, ""
	if v != want {
		t.Fatalf("tandem version --json says %+v, this build %+v", v, want)
	}
	if v.MemberProtocol != [2]uint16{wire.MemberProtocolMin, wire.MemberProtocolMax} ||
		v.ClientProtocol != [2]uint16{wire.ClientProtocolMin, wire.ClientProtocolMax} ||
		v.ClusterVersionMax != container.ClusterVersionMax || v.GoVersion == "" ||
		v.SegmentFormat != [2]uint8{archive.SegmentFormatMin, archive.SegmentFormatMax} ||
		v.IdentityFormat != [2]uint8{archive.IdentityFormatMin, archive.IdentityFormat} ||
		v.StateFormat != [2]uint8{container.SnapshotFormatMin, container.SnapshotFormatMax} {
		t.Fatalf("tandem version --json: %+v", v)
	}
	text, _, code := runCLI(t, bin, "version")
	for _, want := range []string{"tandem " + version.Version, "member protocol", fmt.Sprintf("client protocol   %d to %d", wire.ClientProtocolMin, wire.ClientProtocolMax),
		fmt.Sprintf("cluster version   applies up to %d", container.ClusterVersionMax), "reads identity 1 to 3", "log segments 1 to 3",
		fmt.Sprintf("state snapshots %d to %d", container.SnapshotFormatMin, container.SnapshotFormatMax)} {
		if code != 0 || !strings.Contains(text, want) {
			t.Fatalf("tandem version exited %d without %q:\n%s", code, want, text)
		}
	}
	for _, verb := range []string{"node", "client", "bench", "demo"} {
		if out, _, code := runCLI(t, bin, verb, "--version"); code != 0 || out != text {
			t.Fatalf("tandem %s --version exited %d:\n%s", verb, code, out)
		}
	}
	if _, _, code := runCLI(t, bin, "version", "extra"); code != exitUsage {
		t.Fatalf("tandem version extra exited %d", code)
	}
}

// Every flag of tandem node is read from the environment (TANDEM_ and its name), and a value that
// does not parse there is a usage error naming the variable: TANDEM_TICK=abc was ignored in
// silence before.
func TestNodeFlagsFromTheEnvironment(t *testing.T) {
	bin := tandemBinary(t)
	t.Setenv("TANDEM_TICK", "abc")
	_, stderr, code := runCLI(t, bin, "node", "0", "--data", t.TempDir())
	if code != exitUsage || !strings.Contains(stderr, `TANDEM_TICK (from the environment): "abc" is not a duration (like 100ms)`) {
		t.Fatalf("TANDEM_TICK=abc: exit %d, stderr %q", code, stderr)
	}
	t.Setenv("TANDEM_TICK", "")
	os.Unsetenv("TANDEM_TICK")
	// A flag that had no variable before: applied (the configuration it makes is refused, which
	// shows it was read).
	t.Setenv("TANDEM_ELECTION_TICKS", "1")
	_, stderr, code = runCLI(t, bin, "node", "0", "--data", t.TempDir())
	if code == exitOK || !strings.Contains(stderr, "election-ticks (1) must be larger than heartbeat-ticks (1) (election-ticks from TANDEM_ELECTION_TICKS, heartbeat-ticks default)") {
		t.Fatalf("TANDEM_ELECTION_TICKS=1: exit %d, stderr %q", code, stderr)
	}
}
