package archive

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

func TestIdentityMismatch(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	a.Close()
	o := opts()
	o.ClusterID = "other"
	_, err := Open(m, dir, o)
	if err == nil || !strings.Contains(err.Error(), `"test"`) || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("opening another cluster's directory: %v", err)
	}
	o = opts()
	o.MemberID = 2
	if _, err := Open(m, dir, o); err == nil || !strings.Contains(err.Error(), "member 0") {
		t.Fatalf("opening another member's directory: %v", err)
	}
}

// A new directory's IDENTITY is of format 1, byte for byte what older builds wrote, and holds no
// cluster uuid; SetClusterUUID writes format 2 with it, durably, and Open returns it; setting it
// again is a no-op, another one is refused; a format-1 file of an older build still opens.
func TestIdentityClusterUUID(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	if u := a.ClusterUUID(); u != (ClusterUUID{}) {
		t.Fatalf("a new directory holds uuid %x", u)
	}
	path := filepath.Join(dir, "IDENTITY")
	var before []byte
	m.Corrupt(path, func(b []byte) []byte { before = append([]byte(nil), b...); return b })
	if want := identityBody("tandem-archive 1\ncluster test\nmember 0\n"); !bytes.Equal(before, want) {
		t.Fatalf("a new IDENTITY is %q, want format 1 as before (%q)", before, want)
	}
	u := ClusterUUID{0x3f, 0x2a, 15: 7}
	if err := a.SetClusterUUID(u); err != nil {
		t.Fatal(err)
	}
	if err := a.SetClusterUUID(u); err != nil {
		t.Fatalf("setting the same uuid again: %v", err)
	}
	if err := a.SetClusterUUID(ClusterUUID{0x9c, 15: 1}); !errors.Is(err, ErrClusterUUIDDiffers) {
		t.Fatalf("setting another uuid: %v", err)
	}
	if len(m.UnsyncedFiles(dir)) != 0 {
		t.Fatalf("unsynced after SetClusterUUID: %v", m.UnsyncedFiles(dir))
	}
	a.Close()
	// A crash right after SetClusterUUID returned keeps it (it is durable).
	m.Crash(rand.New(rand.NewPCG(1, 2)), vfs.CrashDrop)
	a = mustOpen(t, m, opts())
	if got := a.ClusterUUID(); got != u {
		t.Fatalf("after a reopen the uuid is %x, want %x", got, u)
	}
	a.Close()
	var text []byte
	m.Corrupt(path, func(b []byte) []byte { text = append([]byte(nil), b[:len(b)-4]...); return b })
	if want := "tandem-archive 2\ncluster test\nmember 0\nuuid 3f2a0000000000000000000000000007\n"; string(text) != want {
		t.Fatalf("IDENTITY with a uuid: %q, want %q", text, want)
	}
	// Format 2 of another cluster name is refused as format 1's is.
	o := opts()
	o.ClusterID = "other"
	if _, err := Open(m, dir, o); err == nil || !strings.Contains(err.Error(), `"other"`) || !strings.Contains(err.Error(), "format 2") {
		t.Fatalf("opening another cluster's directory of format 2: %v", err)
	}
	if _, err := Verify(m, dir, io.Discard); err != nil {
		t.Fatalf("Verify of an IDENTITY of format 2: %v", err)
	}
	// Malformed texts with a good checksum are refused, not guessed.
	for _, bad := range []string{
		"tandem-archive 2\ncluster test\nmember 0\n",
		"tandem-archive 2\ncluster test\nmember 0\nuuid 3f2a\n",
		"tandem-archive 2\ncluster test\nmember 0\nuuid 00000000000000000000000000000000\n",
		"tandem-archive 1\ncluster test\nmember 0\nuuid 3f2a0000000000000000000000000007\n",
		"tandem-archive 1\ncluster test\nmember 0\nextra\n",
		"tandem-archive 3\ncluster test\nmember 0\nuuid none\nraft 0\n",
		"tandem-archive 3\ncluster test\nmember 0\nuuid 00000000000000000000000000000000\nraft 4\n",
		"tandem-archive 3\ncluster test\nmember 0\nuuid none\n",
	} {
		m.Corrupt(path, func([]byte) []byte { return identityBody(bad) })
		if _, err := Open(m, dir, opts()); err == nil {
			t.Fatalf("IDENTITY %q opened", bad)
		}
	}
	m.Corrupt(path, func([]byte) []byte { return identityBody("tandem-archive 4\ncluster test\nmember 0\nmore\nlines\n") })
	if _, err := Open(m, dir, opts()); err == nil || !strings.Contains(err.Error(), "newer build") {
		t.Fatalf("IDENTITY of format 4: %v", err)
	}
}

// A member that joined a running cluster keeps its raft id in IDENTITY (format 3) from its first
// start, with the cluster's identity once known; a founding member's directory keeps format 1 or
// 2. The raft id asked for must be the one the directory holds. A joined member on an empty log
// is not written unverified: its raft id never voted.
func TestIdentityKeepsAJoinedMembersRaftID(t *testing.T) {
	m := vfs.NewMem()
	dir := "/data/node-3"
	o := Options{ClusterID: "test", MemberID: 3, RaftID: 7}
	a, err := Open(m, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if a.RaftID() != 7 {
		t.Fatalf("RaftID %d, want 7", a.RaftID())
	}
	if u, _ := a.Verification(); u {
		t.Fatal("a joined member on an empty log was written unverified")
	}
	u := ClusterUUID{1, 15: 9}
	if err := a.SetClusterUUID(u); err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	b, err := readFile(m, dir+"/IDENTITY")
	if err != nil || !strings.HasPrefix(string(b), "tandem-archive 3\n") || !strings.Contains(string(b), "raft 7\n") {
		t.Fatalf("IDENTITY %q %v", b, err)
	}
	o.RaftID = 0
	a, err = Open(m, dir, o)
	if err != nil || a.RaftID() != 7 || a.ClusterUUID() != u {
		t.Fatalf("reopened: raft id %d uuid %x %v", a.RaftID(), a.ClusterUUID(), err)
	}
	_ = a.Close()
	o.RaftID = 8
	if _, err := Open(m, dir, o); err == nil || !strings.Contains(err.Error(), "raft id 7") {
		t.Fatalf("opened under another raft id: %v", err)
	}
}
