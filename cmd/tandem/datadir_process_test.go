package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runWithin runs tandem with args and returns its output and exit code; a process still running
// after d is killed and fails the test.
func runWithin(t *testing.T, d time.Duration, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(d):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("tandem %q still ran after %s; output:\n%s%s", args, d, o.String(), e.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

// One process per data directory, with real processes: a second `tandem node` on a live
// member's directory exits 1 at once naming the member's pid (not the busy port it would meet
// next), and the member keeps serving; `tandem clean` (and --all) keeps the directories of
// running members, naming their pids, removes the rest and exits 1; once the members are
// stopped (killed: their LOCK files stay behind) it removes everything and exits 0.
func TestDataDirectoryInUseIsRefused(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := pc.dial(ctx)
	if _, err := increment(ctx, c); err != nil {
		t.Fatal(err)
	}
	nodeDir := func(i int) string { return filepath.Join(pc.dir, fmt.Sprintf("node-%d", i)) }
	inUse := func(i int) string {
		return fmt.Sprintf("data directory %s is in use by process %d: one process per directory; stop it first",
			nodeDir(i), pc.procs[i].cmd.Process.Pid)
	}

	_, stderr, code := runWithin(t, 20*time.Second, pc.bin, "node", "1", "--members", pc.members, "--data", nodeDir(1))
	if code != exitFailed || !strings.Contains(stderr, inUse(1)) || strings.Contains(stderr, "address already in use") {
		t.Fatalf("a second tandem node on member 1's directory exited %d, want %d naming the holder; stderr:\n%s", code, exitFailed, stderr)
	}
	select {
	case err := <-pc.procs[1].exitc:
		t.Fatalf("member 1 exited (%v) beside the refused process; output:\n%s", err, pc.procs[1].output())
	default:
	}
	if v, err := increment(ctx, c); err != nil || v != 2 {
		t.Fatalf("increment after the refusal: %d, %v", v, err)
	}

	// Member 0 stopped, 1 and 2 running: clean removes node-0 only.
	pc.kill(0)
	stray := filepath.Join(pc.dir, "members.log")
	if err := os.WriteFile(stray, []byte("a log beside the members' directories\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runWithin(t, 20*time.Second, pc.bin, "clean", "--data", pc.dir)
	if code != exitFailed || !strings.Contains(stdout, "removed "+nodeDir(0)) ||
		!strings.Contains(stderr, "kept "+nodeDir(1)+": "+inUse(1)) || !strings.Contains(stderr, "kept "+nodeDir(2)+": "+inUse(2)) {
		t.Fatalf("tandem clean beside two running members exited %d, want %d; stdout:\n%s\nstderr:\n%s", code, exitFailed, stdout, stderr)
	}
	if _, err := os.Stat(nodeDir(0)); !os.IsNotExist(err) {
		t.Fatalf("the stopped member's directory was not removed: %v", err)
	}
	for _, i := range []int{1, 2} {
		if _, err := os.Stat(filepath.Join(nodeDir(i), "IDENTITY")); err != nil {
			t.Fatalf("tandem clean touched running member %d's directory: %v", i, err)
		}
	}
	if v, err := increment(ctx, c); err != nil || v != 3 {
		t.Fatalf("increment after tandem clean: %d, %v", v, err)
	}

	stdout, stderr, code = runWithin(t, 20*time.Second, pc.bin, "clean", "--all", "--data", pc.dir)
	if code != exitFailed || !strings.Contains(stdout, "removed "+stray) ||
		!strings.Contains(stderr, "kept "+nodeDir(1)+": "+inUse(1)) || !strings.Contains(stderr, "kept "+nodeDir(2)+": "+inUse(2)) {
		t.Fatalf("tandem clean --all beside two running members exited %d, want %d; stdout:\n%s\nstderr:\n%s", code, exitFailed, stdout, stderr)
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Fatalf("tandem clean --all kept the stray log: %v", err)
	}
	if v, err := increment(ctx, c); err != nil || v != 4 {
		t.Fatalf("increment after tandem clean --all: %d, %v", v, err)
	}

	pc.killAll()
	if _, err := os.Stat(filepath.Join(nodeDir(1), "LOCK")); err != nil {
		t.Fatalf("the killed member's LOCK file: %v", err)
	}
	// With a member id, only that member's directory (rebuilding one member).
	stdout, stderr, code = runWithin(t, 20*time.Second, pc.bin, "clean", "--data", pc.dir, "1")
	if _, err := os.Stat(filepath.Join(nodeDir(2), "IDENTITY")); code != exitOK || !strings.Contains(stdout, "removed "+nodeDir(1)) ||
		strings.Contains(stdout, nodeDir(2)) || err != nil {
		t.Fatalf("tandem clean 1 exited %d (member 2's directory: %v); stdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
	}
	if _, _, code := runWithin(t, 20*time.Second, pc.bin, "clean", "--data", pc.dir, "x"); code != exitUsage {
		t.Fatalf("tandem clean x exited %d, want %d", code, exitUsage)
	}
	stdout, stderr, code = runWithin(t, 20*time.Second, pc.bin, "clean", "--data", pc.dir)
	if code != exitOK || strings.Contains(stdout, "removed "+nodeDir(1)) || !strings.Contains(stdout, "removed "+nodeDir(2)) {
		t.Fatalf("tandem clean after the members stopped exited %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	stdout, stderr, code = runWithin(t, 20*time.Second, pc.bin, "clean", "--all", "--data", pc.dir)
	if _, err := os.Stat(pc.dir); code != exitOK || !os.IsNotExist(err) {
		t.Fatalf("tandem clean --all after the members stopped exited %d (%v); stdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
	}
}

// A member killed (SIGKILL) leaves its LOCK file behind; restarted on its directory it runs:
// the kernel released the lock with the process.
func TestKilledMemberRestartsDespiteItsLockFile(t *testing.T) {
	t.Parallel()
	pc := newProcCluster(t, 3)
	pc.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := pc.dial(ctx)
	if _, err := increment(ctx, c); err != nil {
		t.Fatal(err)
	}
	pc.killAll()
	if _, err := os.Stat(filepath.Join(pc.dir, "node-0", "LOCK")); err != nil {
		t.Fatalf("the killed member's LOCK file: %v", err)
	}
	pc.startAll()
	if v, err := increment(ctx, c); err != nil || v != 2 {
		t.Fatalf("increment after the restart: %d, %v", v, err)
	}
}

// A member list that repeats an id or an address is a usage error (64) that names what is
// repeated, before anything is created; so is a list of the member alone without --size 1.
func TestDuplicateMembersAreAUsageError(t *testing.T) {
	bin := tandemBinary(t)
	data := filepath.Join(t.TempDir(), "node-0")
	for _, tc := range []struct{ members, want string }{
		{"0,127.0.0.1:7001,127.0.0.1:7101|0,127.0.0.1:7002,127.0.0.1:7102", "member id 0 appears twice"},
		{"0,127.0.0.1:7001,127.0.0.1:7101|1,127.0.0.1:7001,127.0.0.1:7102",
			`address "127.0.0.1:7001" is both member 0's client address and member 1's client address`},
		{"0,127.0.0.1:7001,127.0.0.1:7101|1,127.0.0.1:7002,127.0.0.1:7101",
			`address "127.0.0.1:7101" is both member 0's member address and member 1's member address`},
		{"0,127.0.0.1:7001,127.0.0.1:7101|1,127.0.0.1:7101,127.0.0.1:7102",
			`address "127.0.0.1:7101" is both member 0's member address and member 1's client address`},
		// The list of this member alone (the others forgotten): a one-member cluster, only on purpose.
		{"0,127.0.0.1:7001,127.0.0.1:7101", "--members names one member only"},
	} {
		_, stderr, code := runWithin(t, 20*time.Second, bin, "node", "0", "--members", tc.members, "--data", data)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Fatalf("tandem node --members %q exited %d, want %d saying %q; stderr:\n%s", tc.members, code, exitUsage, tc.want, stderr)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("a refused member list created its data directory: %v", err)
	}
}
