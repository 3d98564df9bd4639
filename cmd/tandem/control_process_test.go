package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// waitClusterVersion polls tandem cluster status until every endpoint applies cluster version v.
func (pc *procCluster) waitClusterVersion(v uint16, d time.Duration) {
	pc.t.Helper()
	var last string
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		stdout, _, _ := pc.tandemCluster(pc.clients, "--json", "--timeout", "5s", "status")
		var entries []struct {
			Status *wire.MemberStatus `json:"status"`
		}
		if json.Unmarshal([]byte(stdout), &entries) != nil {
			continue
		}
		all := len(entries) == len(pc.clients)
		last = ""
		for _, e := range entries {
			all = all && e.Status != nil && e.Status.ClusterVersion == v
			if e.Status != nil {
				last += fmt.Sprintf(" %d:%d", e.Status.ID, e.Status.ClusterVersion)
			}
		}
		if all {
			return
		}
	}
	pc.t.Fatalf("cluster versions%s after %s, want %d everywhere", last, d, v)
}

// waitLeads polls tandem cluster leader until it prints id, and returns how long that took.
func (pc *procCluster) waitLeads(id int, d time.Duration, what string) time.Duration {
	pc.t.Helper()
	start := time.Now()
	var out string
	for deadline := start.Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, _, _ = pc.tandemCluster(pc.clients, "--timeout", "5s", "leader")
		if strings.TrimSpace(out) == fmt.Sprint(id) {
			took := time.Since(start)
			pc.t.Logf("%s: member %d leads (after %s)", what, id, took.Round(time.Millisecond))
			return took
		}
	}
	pc.t.Fatalf("%s: tandem cluster leader says %q after %s, want %d", what, strings.TrimSpace(out), d, id)
	return 0
}

var stoppedAt = regexp.MustCompile(`stopped at log index (\d+)`)

// The operator's controls on real processes under load: the founding preferred leader takes
// over; suspend refuses commands with the reason while queries are served, resume lets the load
// go on; snapshot is taken by every member; the refusals exit 4 or 64 with a reason;
// set-preferred-leader moves leadership; shutdown stops every member at one index (exit 0), and
// started again the cluster serves on with every acknowledged increment.
func TestProcessOperatorControls(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.extraArgs = []string{"--preferred-leader", "1"}
	pc.dumpOnFailure()
	pc.startAll()
	pc.waitClusterVersion(container.ClusterVersionMax, 20*time.Second)
	pc.waitLeads(1, 30*time.Second, "the founding preference")
	load := startLoad(t, pc.clients, 3)
	load.allowSuspended.Store(true)
	load.waitAcked(300, 20*time.Second, "before the suspension")
	load.mark("before the suspension")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := pc.dial(ctx)

	out := pc.mustCluster(pc.clients, "suspend")
	if !strings.Contains(out, "cluster suspended at index") {
		t.Fatalf("suspend printed %q", out)
	}
	for deadline := time.Now().Add(10 * time.Second); load.suspended.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no increment was refused while suspended")
		}
	}
	if out, stderr, code := runWithin(t, 20*time.Second, pc.bin, "client", "--endpoints", strings.Join(pc.clients, ","), "get"); code != exitOK {
		t.Fatalf("tandem client get while suspended exited %d: %s%s", code, out, stderr)
	}
	if out, stderr, code := runWithin(t, 20*time.Second, pc.bin, "client", "--endpoints", strings.Join(pc.clients, ","), "increment", "1"); code != exitNotApplied || !strings.Contains(stderr, "suspended") {
		t.Fatalf("tandem client increment while suspended exited %d: %s%s; want %d saying suspended", code, out, stderr, exitNotApplied)
	}
	if _, err := increment(ctx, c); !errors.Is(err, client.ErrNotApplied) || !strings.Contains(err.Error(), "suspended") {
		t.Fatalf("an increment while suspended: %v, want not applied, saying suspended", err)
	}
	before, err := get(ctx, c)
	if err != nil {
		t.Fatalf("a query while suspended: %v", err)
	}
	if out := pc.mustCluster(pc.clients, "status"); !strings.Contains(out, "SUSPENDED") {
		t.Fatalf("status does not say suspended:\n%s", out)
	}
	if after, err := get(ctx, c); err != nil || after != before {
		t.Fatalf("the counter moved from %d to %d (%v) while suspended", before, after, err)
	}
	load.mark("suspended")
	pc.mustCluster(pc.clients, "resume")
	load.waitAcked(300, 20*time.Second, "after the resume")
	load.mark("resumed")

	out = pc.mustCluster(pc.clients, "snapshot")
	if strings.Count(out, ": snapshot at index") != 3 {
		t.Fatalf("snapshot printed %q, want each of the 3 members' snapshot", out)
	}

	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"set-preferred-leader", "7"}, exitNotApplied, "not a member"},
		{[]string{"set-preferred-leader", "1,1"}, exitUsage, "named twice"},
		{[]string{"set-preferred-leader"}, exitUsage, "--clear"},
		{[]string{"shutdown", "--clear"}, exitUsage, "--clear is for set-preferred-leader"},
		{[]string{"suspend", "now"}, exitUsage, "no arguments"},
	} {
		_, stderr, code := pc.tandemCluster(pc.clients, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.says) {
			t.Fatalf("tandem cluster %s exited %d saying %q; want %d saying %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.says)
		}
	}

	// A member's warnings, read back through the admin channel: garbage on its client port.
	conn, err := net.Dial("tcp", pc.clients[0])
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	_ = conn.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out := pc.mustCluster(pc.clients, "errors", "--member", "0")
		if strings.Contains(out, "member 0") && strings.Contains(out, "WARN") && strings.Contains(out, "closing client connection") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tandem cluster errors --member 0 does not show the warning for the garbage:\n%s", out)
		}
	}

	pc.mustCluster(pc.clients, "set-preferred-leader", "2")
	pc.waitLeads(2, 30*time.Second, "after set-preferred-leader 2")
	load.waitAcked(300, 20*time.Second, "after the preference moved")
	load.mark("preference moved")

	// The preferred member killed and restarted gets leadership back within seconds of catching
	// up, with two leader changes: the election after the kill, the hand-back.
	terms := func() uint64 {
		var top uint64
		for _, p := range pc.procs {
			if p != nil {
				_, term := p.state()
				top = max(top, term)
			}
		}
		return top
	}
	termsBefore := terms()
	pc.kill(2)
	other := pc.leader(10 * time.Second)
	load.mark("preferred killed")
	pc.start(2)
	back := pc.waitLeads(2, 30*time.Second, fmt.Sprintf("the preferred member restarted (member %d led meanwhile)", other))
	if back > 20*time.Second {
		t.Fatalf("the preferred member took %s to lead again", back)
	}
	if changes := terms() - termsBefore; changes > 3 {
		t.Fatalf("%d terms from the kill to the hand-back, want at most 3", changes)
	}
	load.waitAcked(300, 20*time.Second, "after the hand-back")
	load.mark("handed back")

	out = pc.mustCluster(pc.clients, "shutdown")
	m := regexp.MustCompile(`every member stops at index (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("shutdown printed %q", out)
	}
	for i := range pc.procs {
		o, code := pc.waitExit(i, 20*time.Second, fmt.Sprintf("member %d, shut down,", i))
		s := stoppedAt.FindStringSubmatch(o)
		if code != exitOK || s == nil || s[1] != m[1] {
			t.Fatalf("member %d exited %d (stopped at %v), want 0 at index %s; output:\n%s", i, code, s, m[1], o)
		}
	}
	load.mark("shut down")
	for i := range pc.procs {
		pc.start(i)
	}
	load.waitAcked(300, 30*time.Second, "after the restart")
	load.mark("started again")
	load.finish(pc.clients)
	t.Logf("%d increments refused while suspended", load.suspended.Load())
}
