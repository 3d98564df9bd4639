package archive

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// A new directory is unverified before anything is written; the member's verification and vote
// floor survive a reopen; a log that holds nothing again (wiped, the rest kept) is unverified
// again, floor kept; a damaged file is lost synced data; a directory without the file (an older
// build's) is verified.
func TestVerificationFile(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	if u, f := a.Verification(); !u || f != 0 {
		t.Fatalf("a new directory: unverified %v, floor %d; want unverified", u, f)
	}
	path := filepath.Join(dir, verificationName)
	if _, ok := m.Files()[path]; !ok {
		t.Fatalf("a new directory has no %s", verificationName)
	}
	appendRange(t, a, 1, 5, 1)
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := a.SetVerification(false, 7); err != nil {
		t.Fatal(err)
	}
	a.Close()
	m.Crash(nil, vfs.CrashDrop)
	a = mustOpen(t, m, opts())
	if u, f := a.Verification(); u || f != 7 {
		t.Fatalf("after a crash: unverified %v, floor %d; want verified, floor 7", u, f)
	}
	a.Close()

	// The log wiped, IDENTITY and VERIFICATION kept.
	for name := range m.Files() {
		if filepath.Dir(name) == filepath.Join(dir, "log") {
			if err := m.Remove(name); err != nil {
				t.Fatal(err)
			}
		}
	}
	a = mustOpen(t, m, opts())
	if u, f := a.Verification(); !u || f != 7 {
		t.Fatalf("a wiped log: unverified %v, floor %d; want unverified, floor 7", u, f)
	}
	a.Close()

	m.Corrupt(path, func(b []byte) []byte { b[2] ^= 1; return b })
	if _, err := Open(m, dir, opts()); !errors.Is(err, ErrLostSyncedData) {
		t.Fatalf("a damaged %s: %v, want lost synced data", verificationName, err)
	}

	// An older build's directory: no file, verified.
	m2 := vfs.NewMem()
	a = mustOpen(t, m2, opts())
	appendRange(t, a, 1, 3, 1)
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if err := m2.Remove(filepath.Join(dir, verificationName)); err != nil {
		t.Fatal(err)
	}
	a = mustOpen(t, m2, opts())
	if u, f := a.Verification(); u || f != 0 {
		t.Fatalf("a directory without %s: unverified %v, floor %d; want verified", verificationName, u, f)
	}
	a.Close()
}
