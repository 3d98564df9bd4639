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

// A follower whose data directory is deleted while it is down, then restarted: it used to panic
// inside raft on every start (tocommit(…) is out of range [lastIndex(3)]: it bootstraps a fresh
// log, and the leader, which saw it acknowledge far more, sends heartbeats committing that far).
// Now it exits non-zero within seconds with a message naming the cause and the remedy, and no Go
// panic; the two others keep serving.
func TestWipedMemberStopsWithAClearError(t *testing.T) {
	pc := newProcCluster(t, 3)
	l := pc.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := pc.dial(ctx)
	for range 40 {
		if _, err := increment(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	victim := 2
	if victim == l {
		victim = 1
	}
	// Let the victim hold the 40 commands, so the leader's progress says it holds them: its log
	// (read, not changed, beside the running member) ends past them.
	dir := filepath.Join(pc.dir, fmt.Sprintf("node-%d", victim))
	for deadline := time.Now().Add(10 * time.Second); ; {
		rep, err := archive.Verify(vfs.OS(), dir, io.Discard)
		if err == nil && rep.LastIndex >= 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the victim's log does not hold the 40 commands after 10 s: %+v, %v", rep, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pc.kill(victim)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	pc.start(victim)
	p := pc.procs[victim]
	var exitErr error
	select {
	case exitErr = <-p.exitc:
	case <-time.After(20 * time.Second):
		t.Fatalf("the wiped member still runs after 20 s; output:\n%s", p.output())
	}
	pc.procs[victim] = nil
	out := p.output()
	t.Logf("the wiped member exited after %s (%v)", time.Since(started).Round(time.Millisecond), exitErr)
	if exitErr == nil {
		t.Fatalf("the wiped member exited 0; output:\n%s", out)
	}
	for _, bad := range []string{"panic:", "goroutine "} {
		if strings.Contains(out, bad) {
			t.Fatalf("the wiped member's output contains %q:\n%s", bad, out)
		}
	}
	for _, want := range []string{
		fmt.Sprintf("member %d started with an empty data directory", victim),
		fmt.Sprintf("but the leader (member %d, term", l),
		"lost entries it had acknowledged",
		"Restore the directory",
		"the others keep serving while they are a majority",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("the wiped member's output lacks %q:\n%s", want, out)
		}
	}
	// The two others keep serving.
	v, err := increment(ctx, c)
	if err != nil {
		t.Fatalf("after the wiped member stopped: %v", err)
	}
	if v != 41 {
		t.Fatalf("counter %d after 41 increments", v)
	}
}
