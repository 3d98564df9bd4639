package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// Two locks of one directory, in the model and on the OS: the second fails at once naming the
// holder's pid (this process: a second member in one process is refused too); after Close the
// next one succeeds.
func TestLockDirRefusesASecondHolderNamingItsPID(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   vfs.FS
		dir  string
	}{{"mem", vfs.NewMem(), dir}, {"os", vfs.OS(), filepath.Join(t.TempDir(), "node-0")}} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := LockDir(tc.fs, tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			_, err = LockDir(tc.fs, tc.dir)
			var inUse *InUseError
			if !errors.As(err, &inUse) || !errors.Is(err, ErrInUse) || inUse.PID != os.Getpid() {
				t.Fatalf("second LockDir: %v; want an InUseError naming pid %d", err, os.Getpid())
			}
			want := fmt.Sprintf("data directory %s is in use by process %d: one process per directory; stop it first", tc.dir, os.Getpid())
			if err.Error() != want {
				t.Fatalf("second LockDir says %q, want %q", err, want)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l, err = LockDir(tc.fs, tc.dir)
			if err != nil {
				t.Fatalf("LockDir after Close: %v", err)
			}
			// The archive opens beside its lock file, which it does not read.
			a, err := Open(tc.fs, tc.dir, opts())
			if err != nil {
				t.Fatal(err)
			}
			appendRange(t, a, 1, 3, 1)
			_ = a.Close()
			if _, err := Verify(tc.fs, tc.dir, io.Discard); err != nil {
				t.Fatalf("Verify beside the lock file: %v", err)
			}
			_ = l.Close()
		})
	}
}

// lockChildEnv makes the test binary a child that takes the lock of the directory it names,
// says so and waits to be killed (TestLockDirHeldByAnotherProcess).
const lockChildEnv = "TANDEM_TEST_LOCK_CHILD_DIR"

func TestMain(m *testing.M) {
	if d := os.Getenv(lockChildEnv); d != "" {
		if _, err := LockDir(vfs.OS(), d); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("locked")
		_, _ = io.Copy(io.Discard, os.Stdin) // until killed
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Another process holds the lock: LockDir fails naming that process's pid. Killed (SIGKILL:
// no chance to clean up), it leaves its lock file behind, and the next LockDir takes it.
func TestLockDirHeldByAnotherProcess(t *testing.T) {
	d := filepath.Join(t.TempDir(), "node-0")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+d)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	said := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		said <- strings.TrimSpace(line)
	}()
	select {
	case line := <-said:
		if line != "locked" {
			t.Fatalf("the child did not take the lock: %q", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the child did not take the lock within 20 s")
	}

	_, err = LockDir(vfs.OS(), d)
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != cmd.Process.Pid {
		t.Fatalf("LockDir beside the child: %v; want an InUseError naming the child's pid %d", err, cmd.Process.Pid)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("in use by process %d", cmd.Process.Pid)) {
		t.Fatalf("the refusal does not name the child's pid: %v", err)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if _, err := os.Stat(filepath.Join(d, LockName)); err != nil {
		t.Fatalf("the killed child's lock file: %v", err)
	}
	l, err := LockDir(vfs.OS(), d)
	if err != nil {
		t.Fatalf("LockDir after the holder was killed: %v", err)
	}
	defer l.Close()
	b, err := os.ReadFile(filepath.Join(d, LockName))
	if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Fatalf("the lock file holds %q (%v), want this process's pid %d", b, err, os.Getpid())
	}
}
