package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/archive"
)

// A running member's directory: describe says who holds it, changes nothing, and once the member
// stopped describes what verify and a restart see.
func TestArchiveDescribeRunningMember(t *testing.T) {
	pc := newProcCluster(t, 1)
	pc.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := pc.dial(ctx)
	for i := 1; i <= 5; i++ {
		if v, err := increment(ctx, c); err != nil || v != int64(i) {
			t.Fatalf("increment %d: %d, %v", i, v, err)
		}
	}
	dir := pc.dataDir(0)
	pid := pc.procs[0].cmd.Process.Pid
	out, stderr, code := runCLI(t, pc.bin, "archive", "describe", dir)
	if code != exitOK || !strings.Contains(out, fmt.Sprintf("in use by process %d: a member runs on it", pid)) ||
		!strings.Contains(out, "plan (once the member stops): START") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	// (The member writes beside describe, as it raises the cluster version: the files are
	// compared before and after describe once it stopped.)
	out, _, code = runCLI(t, pc.bin, "archive", "describe", "--json", dir)
	var d archive.Description
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != exitOK || !d.InUse || d.InUsePID != pid ||
		d.Identity.Cluster == "" || d.Identity.Member != 0 || d.Plan.LastIndex < 5 {
		t.Fatalf("exit %d, %v, %+v", code, err, d)
	}
	c.Close()
	pc.stop(0)

	out, stderr, code, d = describeCLI(t, pc.bin, dir, true)
	vout, _, vcode := runCLI(t, pc.bin, "archive", "verify", dir)
	p := d.Plan
	if code != exitOK || vcode != exitOK || d.InUse || p.Action != archive.PlanStart || p.LastIndex < 5 ||
		!strings.Contains(vout, fmt.Sprintf("entries %d..%d", p.FirstIndex, p.LastIndex)) ||
		d.Segments[len(d.Segments)-1].LastIndex != p.LastIndex || p.ReplayTo != min(p.LastIndex, d.HardState.Commit) || d.HardState.Commit < 5 {
		t.Fatalf("exit %d (verify %d)\n%s\n%s\nverify:\n%s", code, vcode, out, stderr, vout)
	}
}
