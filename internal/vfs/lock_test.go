package vfs

import (
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// Both file systems: a second Lock of a held file fails at once with ErrLocked, in the same
// process too (the lock belongs to the open file); Close releases it; a renamed file keeps its
// lock (it locks the file, not the name).
func TestLockExcludesAnotherOpenUntilClose(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   FS
		dir  string
	}{{"mem", NewMem(), "/d"}, {"os", OS(), t.TempDir()}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.fs.MkdirAll(tc.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			name := filepath.Join(tc.dir, "LOCK")
			a, err := tc.fs.Lock(name)
			if err != nil {
				t.Fatal(err)
			}
			mustWriteAt(t, a, []byte("held"), 0)
			if b, err := tc.fs.Lock(name); !errors.Is(err, ErrLocked) {
				t.Fatalf("second Lock of a held file: %v, %v; want ErrLocked", b, err)
			}
			if got := string(contents(t, tc.fs, name)); got != "held" {
				t.Fatalf("the refused Lock changed the file: %q", got)
			}
			other := filepath.Join(tc.dir, "OTHER")
			if err := tc.fs.Rename(name, other); err != nil {
				t.Fatal(err)
			}
			if _, err := tc.fs.Lock(other); !errors.Is(err, ErrLocked) {
				t.Fatalf("Lock of the renamed held file: %v; want ErrLocked", err)
			}
			if err := tc.fs.Rename(other, name); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := tc.fs.Lock(name)
			if err != nil {
				t.Fatalf("Lock after the holder closed: %v", err)
			}
			if got := string(contents(t, tc.fs, name)); got != "held" {
				t.Fatalf("Lock changed the file's contents: %q", got)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A crash ends every process: the model releases every lock, and the file stays.
func TestMemCrashReleasesLocks(t *testing.T) {
	m := NewMem()
	if err := m.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lock("/d/LOCK"); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lock("/d/LOCK"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock before the crash: %v; want ErrLocked", err)
	}
	m.Crash(rand.New(rand.NewPCG(1, 2)), CrashDrop)
	if _, err := m.Stat("/d/LOCK"); err != nil {
		t.Fatalf("the lock file is gone after the crash: %v", err)
	}
	if _, err := m.Lock("/d/LOCK"); err != nil {
		t.Fatalf("Lock after a crash: %v", err)
	}
}
