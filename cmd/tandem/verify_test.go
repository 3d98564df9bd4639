package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

// archiveDir writes a small member directory on disk (several segments, everything synced) and
// returns it with its segments, oldest first.
func archiveDir(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	a, err := archive.Open(vfs.OS(), dir, archive.Options{ClusterID: "c", SegmentBytes: 4 << 10, GrowBytes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 300; i += 10 {
		var ents []*pb.Entry
		for j := i; j < i+10; j++ {
			ents = append(ents, &pb.Entry{Index: new(j), Term: new(uint64(1)), Data: []byte("increment")})
		}
		if err := a.Append(&pb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(i + 9)}, ents); err != nil {
			t.Fatal(err)
		}
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "log", "*.seg"))
	if len(segs) < 2 {
		t.Fatalf("%d segments", len(segs))
	}
	return dir, segs
}

// `tandem archive verify` exits non-zero on lost synced data and on a damaged IDENTITY file (it
// said "ok" for a cut or deleted last segment, and never read the IDENTITY file's checksum).
func TestArchiveVerifyReportsLostData(t *testing.T) {
	bin := tandemBinary(t)
	dir, _ := archiveDir(t)
	if out, stderr, code := runCLI(t, bin, "archive", "verify", dir); code != exitOK || !strings.Contains(out, "ok") {
		t.Fatalf("a healthy directory: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string, segs []string)
		want   string
	}{
		{"last segment truncated", func(t *testing.T, _ string, segs []string) {
			if err := os.Truncate(segs[len(segs)-1], 600); err != nil {
				t.Fatal(err)
			}
		}, "was durably at least"},
		{"newest segment deleted", func(t *testing.T, _ string, segs []string) {
			if err := os.Remove(segs[len(segs)-1]); err != nil {
				t.Fatal(err)
			}
		}, "the newest segment is missing"},
		{"synced record damaged", func(t *testing.T, _ string, segs []string) {
			flip(t, segs[len(segs)-1], 100)
		}, "a bad record in data the synced record"},
		{"synced vote damaged", func(t *testing.T, dir string, _ []string) {
			a, err := archive.Open(vfs.OS(), dir, archive.Options{ClusterID: "c", SegmentBytes: 4 << 10, GrowBytes: 1 << 10})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Append(&pb.HardState{Term: new(uint64(2)), Vote: new(uint64(3)), Commit: new(uint64(300))}, nil); err != nil {
				t.Fatal(err)
			}
			if err := a.Sync(); err != nil {
				t.Fatal(err)
			}
			a.Close()
			// The synced record written after the new vote vouches for it: it names the offset
			// where the vote's hard state ends.
			rep, err := archive.Verify(vfs.OS(), dir, io.Discard)
			if err != nil || rep.SyncedOffset == 0 {
				t.Fatalf("%v, %+v", err, rep)
			}
			flip(t, rep.LastSegment, rep.SyncedOffset-3)
		}, "a bad record in data the synced record"},
		{"IDENTITY damaged", func(t *testing.T, dir string, _ []string) {
			path := filepath.Join(dir, "IDENTITY")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[2] ^= 1
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "IDENTITY is damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, segs := archiveDir(t)
			tc.damage(t, dir, segs)
			out, stderr, code := runCLI(t, bin, "archive", "verify", dir)
			if code == exitOK || !strings.Contains(stderr, tc.want) || strings.HasSuffix(strings.TrimSpace(out), "ok") {
				t.Fatalf("exit %d, want a failure saying %q\nstdout:\n%s\nstderr:\n%s", code, tc.want, out, stderr)
			}
			if tc.name != "IDENTITY damaged" && (!strings.Contains(out, "LOST SYNCED DATA") || !strings.Contains(stderr, "do not start it as it is")) {
				t.Fatalf("lost synced data is not named as such:\nstdout:\n%s\nstderr:\n%s", out, stderr)
			}
		})
	}
}

// flip flips a bit of the file at path, at off.
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
