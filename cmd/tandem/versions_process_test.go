package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/container"
)

// A member downgraded after the cluster version was raised (here: restarted with
// --max-cluster-version 1, as a build that applies only version 1) stops at what it cannot apply
// with exit code 5 and a message naming the index and the remedy, never a panic; the others keep
// serving; started again as it was, it catches up.
func TestDowngradedMemberStopsWithExitCode5(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	l := pc.startAll()
	waitOutput := func(p *proc, want string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !strings.Contains(p.output(), want); {
			if time.Now().After(deadline) {
				t.Fatalf("member %d did not print %q in 15 s:\n%s", p.id, want, p.output())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	victim := (l + 1) % 3
	waitOutput(pc.procs[victim], fmt.Sprintf("cluster version %d in force", container.ClusterVersionMax))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := pc.dial(ctx)
	for range 20 {
		if _, err := increment(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	pc.kill(victim)
	pc.extraArgs = []string{"--max-cluster-version", "1"}
	pc.start(victim)
	pc.extraArgs = nil
	out, code := pc.waitExit(victim, 20*time.Second, "the downgraded member")
	if code != exitCannotApply {
		t.Fatalf("the downgraded member exited with code %d, want %d; output:\n%s", code, exitCannotApply, out)
	}
	for _, want := range []string{"cluster version", "applies cluster versions up to 1", fmt.Sprintf("run a build that applies version %d", container.ClusterVersionMax)} {
		if !strings.Contains(out, want) {
			t.Fatalf("the downgraded member's output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "panic:") {
		t.Fatalf("the downgraded member panicked:\n%s", out)
	}
	// The others serve meanwhile; the member, upgraded again, catches up.
	if _, err := increment(ctx, c); err != nil {
		t.Fatalf("the cluster stopped serving: %v", err)
	}
	pc.start(victim)
	waitOutput(pc.procs[victim], "ROLE CHANGE: FOLLOWER")
	if n, err := increment(ctx, c); err != nil || n != 22 {
		t.Fatalf("an increment after the member came back: %d, %v", n, err)
	}
}

// A member started with a member list that differs from the cluster's recorded membership exits
// with the usage code, naming both lists (the data's membership wins).
func TestMemberListAgainstTheDataIsAUsageError(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	l := pc.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := pc.dial(ctx)
	if _, err := increment(ctx, c); err != nil {
		t.Fatal(err)
	}
	victim := (l + 1) % 3
	pc.kill(victim)
	full := pc.members
	parts := strings.Split(full, "|")
	// Itself and one other: the list --size 2 would give member 0 or 1.
	mine := []string{parts[victim], parts[(victim+1)%3]}
	slices.Sort(mine)
	pc.members = strings.Join(mine, "|")
	pc.start(victim)
	pc.members = full
	out, code := pc.waitExit(victim, 20*time.Second, "the member with a wrong list")
	if code != exitUsage || !strings.Contains(out, "differ from the cluster's membership") {
		t.Fatalf("exited with code %d, want %d naming the difference; output:\n%s", code, exitUsage, out)
	}
	pc.start(victim)
	if _, err := increment(ctx, c); err != nil {
		t.Fatal(err)
	}
}
