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
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const n = 300
	pc := acknowledgedWithMember0Down(t, ctx, n)
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
	pc.noLeaderAmong(3*time.Second, 0)
	pc.start(1)
	pc.leader(20 * time.Second)
	c := pc.dial(ctx)
	got, err := get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("the counter is %d after %d acknowledged increments", got, n)
	}
	// The refusal's remedy: member 2 rebuilt on an empty directory rejoins, and once verified it
	// counts: with member 0 killed, 1 and 2 serve on.
	if err := os.RemoveAll(filepath.Join(pc.dir, "node-2")); err != nil {
		t.Fatal(err)
	}
	pc.start(2)
	pc.rebuiltServesWithout(ctx, 2, 0, n+1)
}

// The scenario with a wiped directory instead of a damaged one: member 0 is down while
// 1 and 2 acknowledge n increments; 1 and 2 are killed and member 2's directory is deleted; 0
// and 2 start. Member 2, on an empty log, must not vote until it is verified, so 0 (which lacks
// the increments) cannot lead: before, 2 bootstrapped a fresh log, voted for 0, and the cluster
// lost what it had acknowledged. Once 1 is back, 0 or 1 leads, repairs 2, and 2 (verified, having
// heard the others' terms) counts: with 0 killed, 1 and 2 serve on, every increment kept.
func TestWipedMemberWaitsForACompleteCopyThenRejoins(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const n = 300
	pc := acknowledgedWithMember0Down(t, ctx, n)
	if err := os.RemoveAll(filepath.Join(pc.dir, "node-2")); err != nil {
		t.Fatal(err)
	}
	pc.start(0)
	pc.start(2)
	// Longer than several election timeouts: no leader, as 2 may not vote.
	pc.noLeaderAmong(4*time.Second, 0, 2)
	pc.start(1)
	pc.leader(20 * time.Second)
	pc.rebuiltServesWithout(ctx, 2, 0, n+1)
}

// acknowledgedWithMember0Down starts three members, kills member 0, has 1 and 2 acknowledge n
// increments, and kills them: every member is down, and only 1 and 2 hold the increments.
func acknowledgedWithMember0Down(t *testing.T, ctx context.Context, n int) *procCluster {
	pc := newProcCluster(t, 3)
	pc.startAll()
	pc.kill(0)
	c := pc.dial(ctx)
	for range n {
		if _, err := increment(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	pc.kill(1)
	pc.kill(2)
	return pc
}

// noLeaderAmong fails the test if one of the members ids leads within d.
func (pc *procCluster) noLeaderAmong(d time.Duration, ids ...int) {
	pc.t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, i := range ids {
			if role, _ := pc.procs[i].state(); role == "LEADER" {
				pc.t.Fatalf("member %d leads among %v, which lack a complete copy; output:\n%s", i, ids, pc.procs[i].output())
			}
		}
	}
}

// rebuiltServesWithout waits for member rebuilt, started on an empty directory, to be verified,
// kills member killed, and checks that the others serve on: the next increment makes want.
// The rebuilt member must not have panicked.
func (pc *procCluster) rebuiltServesWithout(ctx context.Context, rebuilt, killed int, want int64) {
	pc.t.Helper()
	pc.waitOutput(rebuilt, "this member is verified", 30*time.Second)
	pc.kill(killed)
	pc.leader(20 * time.Second)
	if v, err := increment(ctx, pc.dial(ctx)); err != nil || v != want {
		pc.t.Fatalf("with member %d rebuilt and member %d killed: %d, %v; want %d", rebuilt, killed, v, err, want)
	}
	if out := pc.procs[rebuilt].output(); strings.Contains(out, "panic:") {
		pc.t.Fatalf("member %d panicked:\n%s", rebuilt, out)
	}
}
