package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

// holdCommands starts a cluster of three, applies n increments, and waits until member victim's
// log (read, not changed, beside the running member) holds them, so that the leader's progress
// says it holds them. It returns the cluster, the leader and a client.
func holdCommands(t *testing.T, ctx context.Context, n int, victim func(leader int) int) (*procCluster, int, int) {
	pc := newProcCluster(t, 3)
	l := pc.startAll()
	c := pc.dial(ctx)
	for range n {
		if _, err := increment(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	v := victim(l)
	dir := filepath.Join(pc.dir, fmt.Sprintf("node-%d", v))
	for deadline := time.Now().Add(10 * time.Second); ; {
		rep, err := archive.Verify(vfs.OS(), dir, io.Discard)
		if err == nil && rep.LastIndex >= uint64(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %d's log does not hold the %d commands after 10 s: %+v, %v", v, n, rep, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return pc, l, v
}

// wipe kills member i, deletes its data directory and starts it again on an empty one.
func (pc *procCluster) wipe(i int) {
	pc.t.Helper()
	pc.kill(i)
	if err := os.RemoveAll(filepath.Join(pc.dir, fmt.Sprintf("node-%d", i))); err != nil {
		pc.t.Fatal(err)
	}
	pc.start(i)
}

// waitOutput waits (up to d) until member i's output contains want.
func (pc *procCluster) waitOutput(i int, want string, d time.Duration) {
	pc.t.Helper()
	for deadline := time.Now().Add(d); !strings.Contains(pc.procs[i].output(), want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			pc.t.Fatalf("member %d did not say %q within %s; output:\n%s", i, want, d, pc.procs[i].output())
		}
	}
}

// A follower whose data directory is deleted while it is down, then restarted on the empty one,
// under the same leader: it used to panic inside raft on every start (tocommit(…) is out of range
// [lastIndex(3)]: it bootstraps a fresh log, and the leader, which saw it acknowledge far more,
// sends heartbeats committing that far), then to stop for lost data. Now it starts unverified
// (no vote, no campaign), the leader — whose progress would never believe it holds less — hands
// leadership over, and the new leader repairs it: once verified it counts, and the cluster
// serves with it and one other, every increment kept.
func TestWipedMemberRejoinsUnderTheSameLeader(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pc, l, victim := holdCommands(t, ctx, 40, func(l int) int { return (l + 1) % 3 })
	pc.wipe(victim)
	pc.waitOutput(l, "handing leadership over", 20*time.Second)
	// The victim and the third member serve on: the victim votes and holds the log.
	pc.rebuiltServesWithout(ctx, victim, l, 41)
}

// The same, with the third member down: the leader has nobody to hand over to, and no leader can
// be elected (the wiped member may not vote, the third is down), so nothing is served rather than
// something lost; the wiped member either waits or stops for lost data (when the leader's
// heartbeats, which say that entries it forgot are committed, persisted long enough: a message
// naming the cause and the remedy, no Go panic). Once the third member is back, a leader serves
// with every increment kept, and repairs the wiped member if it waited.
func TestWipedMemberWaitsWhenNoOtherLeaderCanRepairIt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pc, l, victim := holdCommands(t, ctx, 40, func(l int) int { return (l + 1) % 3 })
	third := 3 - l - victim
	_, term0 := pc.procs[l].state()
	pc.kill(third)
	pc.wipe(victim)
	p := pc.procs[victim]
	// Several election timeouts: the old leader steps down (no quorum answers it), nobody leads.
	var led bool
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if role, term := pc.procs[l].state(); role == "LEADER" && term > term0 {
			led = true
		}
		if pc.procs[victim] != nil {
			if role, _ := pc.procs[victim].state(); role == "LEADER" {
				t.Fatalf("the wiped member leads; output:\n%s", pc.procs[victim].output())
			}
		}
	}
	if led {
		t.Fatalf("member %d was elected again without a complete second copy; output:\n%s", l, pc.procs[l].output())
	}
	stopped := false
	select {
	case err := <-p.exitc:
		stopped = true
		pc.procs[victim] = nil
		out := p.output()
		t.Logf("the wiped member stopped: %v", err)
		for _, want := range []string{fmt.Sprintf("member %d started with an empty data directory", victim),
			"lost entries it had acknowledged"} {
			if !strings.Contains(out, want) || strings.Contains(out, "panic:") {
				t.Fatalf("the wiped member stopped (%v) without saying %q, or panicked; output:\n%s", err, want, out)
			}
		}
	default:
		t.Log("the wiped member waits, unverified")
	}
	pc.start(third)
	pc.leader(20 * time.Second)
	c := pc.dial(ctx)
	v, err := increment(ctx, c)
	if err != nil {
		t.Fatalf("after the third member came back: %v", err)
	}
	if v != 41 {
		t.Fatalf("counter %d after 41 increments", v)
	}
	if !stopped {
		pc.waitOutput(victim, "this member is verified", 30*time.Second)
	}
}
