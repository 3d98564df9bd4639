package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/archive"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

// hashTree returns the SHA-256 of every file under dir, by path.
func hashTree(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[path] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// describeCLI runs `tandem archive describe` (with --json: decoded) and fails the test if it
// changed any file under dir.
func describeCLI(t *testing.T, bin, dir string, asJSON bool) (stdout, stderr string, code int, d archive.Description) {
	t.Helper()
	before := hashTree(t, dir)
	args := []string{"archive", "describe", dir}
	if asJSON {
		args = []string{"archive", "describe", "--json", dir}
	}
	stdout, stderr, code = runCLI(t, bin, args...)
	if after := hashTree(t, dir); !maps.Equal(before, after) {
		t.Fatalf("tandem archive describe changed %s: %d files before, %d after", dir, len(before), len(after))
	}
	if asJSON && stdout != "" {
		if err := json.Unmarshal([]byte(stdout), &d); err != nil {
			t.Fatalf("describe --json: %v\n%s", err, stdout)
		}
	}
	return stdout, stderr, code, d
}

// snapshotDir writes a member directory on disk: entries 1..300 in term 1, synced in batches
// of ten, a snapshot at 200, then, unsynced, entries 301..305, in segments of segmentBytes. It
// returns the directory.
func snapshotDir(t *testing.T, segmentBytes int64) string {
	t.Helper()
	dir := t.TempDir()
	a, err := archive.Open(vfs.OS(), dir, archive.Options{ClusterID: "c", MemberID: 2, SegmentBytes: segmentBytes, GrowBytes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	write := func(lo, hi uint64) {
		var ents []*pb.Entry
		for j := lo; j <= hi; j++ {
			ents = append(ents, &pb.Entry{Index: new(j), Term: new(uint64(1)), Data: []byte("increment")})
		}
		if err := a.Append(&pb.HardState{Term: new(uint64(1)), Vote: new(uint64(3)), Commit: new(hi)}, ents); err != nil {
			t.Fatal(err)
		}
	}
	for i := uint64(1); i <= 300; i += 10 {
		write(i, i+9)
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.CreateSnapshot(200, &pb.ConfState{Voters: []uint64{1, 2, 3}}, []byte("counter 200")); err != nil {
		t.Fatal(err)
	}
	write(301, 305) // the page cache has it: on disk as far as describe can tell, never synced
	return dir
}

func TestArchiveDescribe(t *testing.T) {
	bin := tandemBinary(t)
	dir := snapshotDir(t, 4<<10)
	segs, _ := filepath.Glob(filepath.Join(dir, "log", "*.seg"))
	snap := filepath.Join(dir, "snap", fmt.Sprintf("%016x-%016x.snap", 200, 1))

	out, stderr, code, _ := describeCLI(t, bin, dir, false)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	fi, err := os.Stat(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`identity: cluster "c" member 2, founding member (raft id 3), cluster uuid not known yet, format 1, checksum ok`,
		fmt.Sprintf("  %s  index 200 term 1, %d bytes, decodes, checksum ok (recovery starts from it)", filepath.Base(snap), fi.Size()),
		fmt.Sprintf("segments: %d\n", len(segs)),
		"hard state: term 1 vote 3 commit 305",
		"plan: START: start from snapshot " + filepath.Base(snap) + " (index 200 term 1); replay the committed entries 201..305; the log holds entries 1..305",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("describe does not say %q:\n%s", want, out)
		}
	}
	// Each segment's line names its file, entries and size; together they hold 1..305.
	_, _, code, d := describeCLI(t, bin, dir, true)
	if code != exitOK || len(d.Segments) != len(segs) {
		t.Fatalf("exit %d, %d segments described, %d files", code, len(d.Segments), len(segs))
	}
	next := uint64(1)
	for i, s := range d.Segments {
		fi, err := os.Stat(segs[i])
		if err != nil || s.Name != filepath.Base(segs[i]) || s.Bytes != fi.Size() || s.State != archive.SegmentIntact || s.FirstIndex != next {
			t.Fatalf("segment %d: %+v, file %s (%v), want entries from %d", i, s, segs[i], err, next)
		}
		line := fmt.Sprintf("  %s  entries %d..%d, %d bytes, format 3, intact", s.Name, s.FirstIndex, s.LastIndex, s.Bytes)
		if !strings.Contains(out, line) {
			t.Fatalf("describe does not say %q:\n%s", line, out)
		}
		next = s.LastIndex + 1
	}
	p := d.Plan
	if next != 306 || p.Action != archive.PlanStart || p.SnapshotIndex != 200 || p.SnapshotTerm != 1 || p.FirstIndex != 1 ||
		p.LastIndex != 305 || p.ReplayFrom != 201 || p.ReplayTo != 305 || d.HardState != (archive.HardStateInfo{Term: 1, Vote: 3, Commit: 305}) ||
		len(d.Snapshots) != 1 || !d.Snapshots[0].Decodes || !d.Snapshots[0].Newest || d.Identity.Member != 2 || d.InUse {
		t.Fatalf("description %+v", d)
	}
}

// A torn tail: describe names the offset a start would cut at, and cuts nothing itself.
func TestArchiveDescribeTornTail(t *testing.T) {
	bin := tandemBinary(t)
	// One segment: the unsynced write of 301..305 starts with a synced record vouching for what
	// the sync before it made durable (in a new segment it would not); the records after it
	// were never synced.
	dir := snapshotDir(t, 1<<20)
	rep, err := archive.Verify(vfs.OS(), dir, io.Discard)
	if err != nil || rep.SyncedOffset == 0 || rep.LastIndex != 305 {
		t.Fatalf("%v, %+v", err, rep)
	}
	cut := rep.SyncedOffset + 4 + 1 + 4 + 8 // the synced record's header and payload
	flip(t, rep.LastSegment, cut+5)         // the checksum of the record after it
	out, stderr, code, _ := describeCLI(t, bin, dir, false)
	seg := filepath.Base(rep.LastSegment)
	for _, want := range []string{
		fmt.Sprintf("torn tail at offset %d (cut on start)", cut),
		fmt.Sprintf("plan: START: cut the torn tail of %s at offset %d; start from snapshot", seg, cut),
		"replay the committed entries 201..300; the log holds entries 1..300",
		"hard state: term 1 vote 3 commit 300",
	} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Fatalf("exit %d; describe does not say %q:\n%s\n%s", code, want, out, stderr)
		}
	}
	// verify agrees, and a start would find what describe said.
	if vout, _, code := runCLI(t, bin, "archive", "verify", dir); code != exitOK || !strings.Contains(vout, fmt.Sprintf("torn tail at %s offset %d", rep.LastSegment, cut)) {
		t.Fatalf("verify exit %d:\n%s", code, vout)
	}
	a, err := archive.Open(vfs.OS(), dir, archive.Options{ClusterID: "c", MemberID: 2})
	if err != nil {
		t.Fatal(err)
	}
	last, _ := a.LastIndex()
	a.Close()
	if last != 300 {
		t.Fatalf("Open kept entries up to %d, describe said 300", last)
	}
}

// Refusals: damage in an earlier segment (lost synced data), another cluster's directory, a
// missing or foreign directory. Each exits 1 with one line on stderr.
func TestArchiveDescribeRefusals(t *testing.T) {
	bin := tandemBinary(t)
	dir, segs := archiveDir(t)
	flip(t, segs[0], 200)
	out, stderr, code, _ := describeCLI(t, bin, dir, false)
	if code != exitFailed || !strings.Contains(out, "  "+filepath.Base(segs[0])+"  ") || !strings.Contains(out, "DAMAGED: archive: lost synced data: "+segs[0]) ||
		!strings.Contains(out, "plan: REFUSE, LOST SYNCED DATA: archive: lost synced data: "+segs[0]) ||
		!strings.Contains(out, filepath.Base(segs[1])+"  ") || !strings.Contains(out, "not read (recovery stops at the damage before it)") ||
		!strings.Contains(stderr, "a member would not start on "+dir) || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	_, _, code, d := describeCLI(t, bin, dir, true)
	if code != exitFailed || !d.Plan.LostSyncedData || d.Plan.Action != archive.PlanRefuse || d.Segments[0].State != archive.SegmentDamaged {
		t.Fatalf("exit %d, %+v", code, d)
	}

	dir, _ = archiveDir(t)
	_, stderr, code = runCLI(t, bin, "archive", "describe", "--cluster-id", "other", "--member", "0", dir)
	if code != exitFailed || !strings.Contains(stderr, `belongs to cluster "c" member 0 (format 1), not cluster "other" member 0`) {
		t.Fatalf("another cluster's directory: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := runCLI(t, bin, "archive", "describe", "--cluster-id", "c", "--member", "0", dir); code != exitOK {
		t.Fatalf("its own cluster's directory: exit %d\n%s", code, stderr)
	}

	// An empty directory is where a member starts (founding or joining): not refused.
	empty := t.TempDir()
	if out, stderr, code := runCLI(t, bin, "archive", "describe", empty); code != exitOK || !strings.Contains(out, empty+": empty") ||
		!strings.Contains(out, "--join") {
		t.Fatalf("describe of an empty directory: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, path := range []string{filepath.Join(t.TempDir(), "missing"), filepath.Join(dir, "IDENTITY")} {
		out, stderr, code := runCLI(t, bin, "archive", "describe", path)
		if code != exitFailed || out != "" || !strings.Contains(stderr, path+": not a Tandem data directory") || strings.Count(stderr, "\n") != 1 {
			t.Fatalf("describe %s: exit %d\nstdout:\n%s\nstderr:\n%s", path, code, out, stderr)
		}
	}
	if _, _, code := runCLI(t, bin, "archive", "describe"); code != exitUsage {
		t.Fatalf("no directory: exit %d", code)
	}
}
