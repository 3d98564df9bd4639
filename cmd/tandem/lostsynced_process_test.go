package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The scenario on real processes: member 0 is down while members 1 and 2 acknowledge
// increments; then 1 and 2 are killed and member 2's newest log segment is cut short (a damaged
// disk: segments are allocated to their size before use, so no crash shortens one). Member 2
// refuses to start, naming what it lost and the remedy; member 0 alone cannot elect anyone, so
// the cluster waits for a complete copy; once member 1 is back, 0 and 1 serve every acknowledged
// increment.
func TestDamagedDiskLosesNothingAcknowledged(t *testing.T) {
	pc := newProcCluster(t, 3)
	pc.startAll()
	pc.kill(0)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := pc.dial(ctx)
	const n = 300
	for range n {
		if _, err := increment(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	pc.kill(1)
	pc.kill(2)
	segs, err := filepath.Glob(filepath.Join(pc.dir, "node-2", "log", "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("member 2's segments: %v %v", segs, err)
	}
	slices.Sort(segs)
	seg := segs[len(segs)-1]
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(seg, fi.Size()/3); err != nil {
		t.Fatal(err)
	}

	pc.start(0)
	pc.start(2)
	out, code := pc.waitExit(2, 20*time.Second, "member 2, on a damaged disk,")
	if code == 0 || !strings.Contains(out, "lost synced data") || !strings.Contains(out, "do not start it as it is") {
		t.Fatalf("member 2 exited with code %d; want a refusal naming the lost data and the remedy; output:\n%s", code, out)
	}
	if strings.Contains(out, "panic:") {
		t.Fatalf("member 2 panicked:\n%s", out)
	}
	// Member 0 alone, for more than an election timeout: it must not lead (it has no quorum).
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if role, _ := pc.procs[0].state(); role == "LEADER" {
			t.Fatalf("member 0 leads alone")
		}
	}
	pc.start(1)
	pc.leader(20 * time.Second)
	c = pc.dial(ctx)
	got, err := get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("the counter is %d after %d acknowledged increments", got, n)
	}
}
