package archive

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// describe runs Describe on the test directory and fails the test if it changed any file (its
// promise: it never writes).
func describe(t *testing.T, m *vfs.Mem, o DescribeOptions) *Description {
	t.Helper()
	before := contents(m)
	d, err := Describe(m, dir, o)
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if after := contents(m); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatalf("Describe changed the directory: %d files before, %d after", len(before), len(after))
	}
	return d
}

// agreesWithOpen opens the directory after Describe and checks that Open did what the plan
// said: refused with the same error, or started on the same snapshot, log and hard state.
func agreesWithOpen(t *testing.T, m *vfs.Mem, d *Description) {
	t.Helper()
	a, err := Open(m, dir, opts())
	if d.Plan.Action == PlanRefuse {
		if err == nil || err.Error() != d.Plan.Refusal || errors.Is(err, ErrLostSyncedData) != d.Plan.LostSyncedData {
			t.Fatalf("the plan refuses with %q (lost synced data: %v); Open: %v", d.Plan.Refusal, d.Plan.LostSyncedData, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("the plan starts; Open: %v", err)
	}
	defer a.Close()
	first, _ := a.FirstIndex()
	last, _ := a.LastIndex()
	snap, _ := a.Snapshot()
	h, _, _ := a.InitialState()
	if first != d.Plan.FirstIndex || last != d.Plan.LastIndex || snap.GetMetadata().GetIndex() != d.Plan.SnapshotIndex ||
		snap.GetMetadata().GetTerm() != d.Plan.SnapshotTerm {
		t.Fatalf("Open holds snapshot %d (term %d) and entries %d..%d; the plan said %+v",
			snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm(), first, last, d.Plan)
	}
	if (HardStateInfo{h.GetTerm(), h.GetVote(), h.GetCommit()}) != d.HardState {
		t.Fatalf("Open's hard state %v, described %+v", h, d.HardState)
	}
}

func TestDescribeFreshDirectory(t *testing.T) {
	m := vfs.NewMem()
	mustOpen(t, m, opts()).Close()
	d := describe(t, m, DescribeOptions{})
	want := IdentityInfo{Present: true, Format: 1, Cluster: "test", Member: 0}
	if d.Identity != want || d.Verification != (VerificationInfo{Present: true, Unverified: true}) || d.InUse {
		t.Fatalf("identity %+v, verification %+v, in use %v", d.Identity, d.Verification, d.InUse)
	}
	if len(d.Segments) != 0 || len(d.Snapshots) != 0 || d.HardState != (HardStateInfo{}) {
		t.Fatalf("segments %+v, snapshots %+v, hard state %+v", d.Segments, d.Snapshots, d.HardState)
	}
	if p := d.Plan; p.Action != PlanStart || p.FirstIndex != 1 || p.LastIndex != 0 || p.ReplayFrom != 1 || p.ReplayTo != 0 || p.Snapshot != "" || p.CutFile != "" ||
		p.WritesUnverified || len(p.Removes) != 0 {
		t.Fatalf("plan %+v", p)
	}
	agreesWithOpen(t, m, d)
}

func TestDescribeSnapshotsAndSegments(t *testing.T) {
	m := vfs.NewMem()
	o := opts()
	o.SnapshotsRetained = 2
	a := mustOpen(t, m, o)
	for i := uint64(1); i <= 300; i += 10 {
		appendRange(t, a, i, i+9, 2)
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
		if i+9 == 100 || i+9 == 200 || i+9 == 250 {
			if err := a.CreateSnapshot(i+9, &pb.ConfState{Voters: []uint64{1}}, []byte("state")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.Reclaim(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	d := describe(t, m, DescribeOptions{ClusterID: "test", MemberID: 0})

	// Snapshots: the two retained, the newest the one recovery starts from.
	if len(d.Snapshots) != 2 {
		t.Fatalf("snapshots %+v", d.Snapshots)
	}
	for i, want := range []uint64{200, 250} {
		s := d.Snapshots[i]
		if s.Index != want || s.Term != 2 || !s.Decodes || s.Newest != (want == 250) || s.Bytes == 0 || s.Name != snapshotName(want, 2) {
			t.Fatalf("snapshot %d: %+v", i, s)
		}
	}
	// Segments: contiguous entries ending at 120, every one intact, sizes those of the files.
	if len(d.Segments) < 2 {
		t.Fatalf("segments %+v", d.Segments)
	}
	for i, s := range d.Segments {
		fi, err := m.Stat(filepath.Join(dir, "log", s.Name))
		if err != nil || fi.Size() != s.Bytes || s.State != SegmentIntact || s.Version != segmentVersionWritten ||
			s.Entries != int(s.LastIndex-s.FirstIndex+1) {
			t.Fatalf("segment %d: %+v (%v)", i, s, err)
		}
		if i > 0 && s.FirstIndex != d.Segments[i-1].LastIndex+1 {
			t.Fatalf("segment %d starts at %d, the one before ends at %d", i, s.FirstIndex, d.Segments[i-1].LastIndex)
		}
	}
	if last := d.Segments[len(d.Segments)-1]; last.LastIndex != 300 || last.SyncedOffset == 0 {
		t.Fatalf("last segment %+v", last)
	}
	p := d.Plan
	// Reclaim deleted the segments wholly behind the oldest snapshot, less the margin.
	if d.Segments[0].FirstIndex == 1 || d.Segments[0].FirstIndex > 200-o.LogMarginEntries {
		t.Fatalf("the log starts at %d", d.Segments[0].FirstIndex)
	}
	if p.Action != PlanStart || p.Snapshot != snapshotName(250, 2) || p.SnapshotIndex != 250 || p.SnapshotTerm != 2 ||
		p.FirstIndex != d.Segments[0].FirstIndex || p.LastIndex != 300 || p.ReplayFrom != 251 || p.ReplayTo != 300 || p.CutFile != "" {
		t.Fatalf("plan %+v", p)
	}
	if d.HardState != (HardStateInfo{Term: 2, Vote: 1, Commit: 300}) {
		t.Fatalf("hard state %+v", d.HardState)
	}
	agreesWithOpen(t, m, d)
}

// A torn tail: the plan names where Open cuts it, and the entries it keeps.
func TestDescribeTornTail(t *testing.T) {
	m := vfs.NewMem()
	seg, offs, synced := syncedLog(t, m, true)
	from := synced[9] + syncedRecordBytes // the first record of the last, unsynced, write after it
	if !containsOffset(offs, from) {
		t.Fatalf("no record at %d: %v", from, offs)
	}
	m.Corrupt(seg, func(b []byte) []byte {
		for i := from + 3; i < from+60; i++ {
			b[i] ^= 0xa5
		}
		return b
	})
	d := describe(t, m, DescribeOptions{})
	if p := d.Plan; p.Action != PlanStart || p.CutFile != seg || p.CutOffset != from || p.LastIndex != 30 || p.FirstIndex != 1 ||
		p.ReplayFrom != 1 || p.ReplayTo != 30 {
		t.Fatalf("plan %+v, want a cut of %s at %d keeping entries 1..30", p, seg, from)
	}
	s := d.Segments[len(d.Segments)-1]
	if s.Name != filepath.Base(seg) || s.State != SegmentTorn || s.TornOffset != from || s.RecordsEnd != from || s.LastIndex != 30 {
		t.Fatalf("last segment %+v", s)
	}
	agreesWithOpen(t, m, d)
	// Open cut it: described again, nothing is torn.
	if d := describe(t, m, DescribeOptions{}); d.Plan.CutFile != "" || d.Segments[len(d.Segments)-1].State != SegmentIntact {
		t.Fatalf("after Open: plan %+v, last segment %+v", d.Plan, d.Segments[len(d.Segments)-1])
	}
}

func containsOffset(offs []int64, off int64) bool {
	for _, o := range offs {
		if o == off {
			return true
		}
	}
	return false
}

// Damage in a segment that is not the last: refused as lost synced data, the segment named
// damaged, those after it unread.
func TestDescribeDamagedSegment(t *testing.T) {
	m := vfs.NewMem()
	segs := twoSegments(t, m, 200)
	m.Corrupt(segs[0], func(b []byte) []byte { b[200] ^= 0x40; return b })
	d := describe(t, m, DescribeOptions{})
	if p := d.Plan; p.Action != PlanRefuse || !p.LostSyncedData || !strings.Contains(p.Refusal, segs[0]) {
		t.Fatalf("plan %+v", p)
	}
	if len(d.Segments) != len(segs) {
		t.Fatalf("%d segments described, %d files", len(d.Segments), len(segs))
	}
	if s := d.Segments[0]; s.State != SegmentDamaged || s.Problem != d.Plan.Refusal || s.Name != filepath.Base(segs[0]) {
		t.Fatalf("first segment %+v", s)
	}
	for _, s := range d.Segments[1:] {
		if fi, _ := m.Stat(filepath.Join(dir, "log", s.Name)); s.State != SegmentUnread || s.Bytes != fi.Size() {
			t.Fatalf("segment after the damage %+v", s)
		}
	}
	agreesWithOpen(t, m, d)
}

// A wiped directory: its log gone (newest-segment says it had one), or everything gone.
func TestDescribeWipedDirectory(t *testing.T) {
	m := vfs.NewMem()
	segs := twoSegments(t, m, 200)
	for _, s := range segs {
		if err := m.Remove(s); err != nil {
			t.Fatal(err)
		}
	}
	d := describe(t, m, DescribeOptions{})
	if p := d.Plan; p.Action != PlanRefuse || !p.LostSyncedData || !strings.Contains(p.Refusal, "the newest segment is missing") ||
		len(d.Segments) != 0 || d.Identity.Cluster != "test" {
		t.Fatalf("plan %+v, segments %+v", p, d.Segments)
	}
	agreesWithOpen(t, m, d)

	// The whole log directory wiped, IDENTITY kept: an empty log, which Open records
	// unverified (this member may have voted before).
	m = vfs.NewMem()
	for _, s := range twoSegments(t, m, 200) {
		_ = m.Remove(s)
	}
	for _, f := range []string{filepath.Join(dir, "log", newestName), filepath.Join(dir, verificationName)} {
		_ = m.Remove(f)
	}
	d = describe(t, m, DescribeOptions{})
	if p := d.Plan; p.Action != PlanStart || !p.WritesUnverified || p.LastIndex != 0 || d.Verification.Present {
		t.Fatalf("plan %+v, verification %+v", p, d.Verification)
	}
	agreesWithOpen(t, m, d)
	if d := describe(t, m, DescribeOptions{}); d.Plan.WritesUnverified || !d.Verification.Unverified {
		t.Fatalf("after Open: plan %+v, verification %+v", d.Plan, d.Verification)
	}

	// Everything gone, or never there: not a data directory, and nothing created.
	m = vfs.NewMem()
	if err := m.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir, "/nowhere"} {
		if _, err := Describe(m, path, DescribeOptions{}); !errors.Is(err, ErrNotDataDir) || !strings.Contains(err.Error(), path) {
			t.Fatalf("Describe(%s): %v", path, err)
		}
	}
	if len(m.Files()) != 0 {
		t.Fatalf("Describe created %v", m.Files())
	}
}

// Describe reads a directory a member holds, and says so.
func TestDescribeInUse(t *testing.T) {
	m := vfs.NewMem()
	l, err := LockDir(m, dir)
	if err != nil {
		t.Fatal(err)
	}
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 5, 1)
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	d := describe(t, m, DescribeOptions{})
	if !d.InUse || d.InUsePID != os.Getpid() || d.Plan.Action != PlanStart || d.Plan.LastIndex != 5 {
		t.Fatalf("in use %v by %d, plan %+v", d.InUse, d.InUsePID, d.Plan)
	}
	a.Close()
	l.Close()
	if d := describe(t, m, DescribeOptions{}); d.InUse {
		t.Fatalf("in use after the lock was released: %+v", d)
	}
	if l, err := LockDir(m, dir); err != nil {
		t.Fatalf("the lock after Describe: %v", err) // the probe released it
	} else {
		l.Close()
	}
}

// A directory of another cluster or member is refused as Open refuses it.
func TestDescribeOtherClusterRefused(t *testing.T) {
	m := vfs.NewMem()
	mustOpen(t, m, opts()).Close()
	d := describe(t, m, DescribeOptions{ClusterID: "other", MemberID: 0})
	_, err := Open(m, dir, Options{ClusterID: "other"})
	if d.Plan.Action != PlanRefuse || err == nil || d.Plan.Refusal != err.Error() || !strings.Contains(err.Error(), `cluster "test" member 0`) {
		t.Fatalf("plan %+v; Open: %v", d.Plan, err)
	}
	// A damaged IDENTITY: refused, as Open refuses it.
	m.Corrupt(filepath.Join(dir, "IDENTITY"), func(b []byte) []byte { b[3] ^= 1; return b })
	d = describe(t, m, DescribeOptions{})
	if d.Plan.Action != PlanRefuse || !strings.Contains(d.Plan.Refusal, "IDENTITY fails its checksum") || d.Identity.Problem == "" {
		t.Fatalf("plan %+v, identity %+v", d.Plan, d.Identity)
	}
	agreesWithOpen(t, m, d)
}

// The file system Describe reads through refuses every change, whatever recovery's code asks.
func TestReadOnlyFSRefusesWrites(t *testing.T) {
	m := vfs.NewMem()
	mustOpen(t, m, opts()).Close()
	before := contents(m)
	ro := readOnlyFS{m}
	id := filepath.Join(dir, "IDENTITY")
	f, err := ro.OpenFile(id, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for what, err := range map[string]error{
		"open for writing": func() error { _, err := ro.OpenFile(id, os.O_RDWR, 0); return err }(),
		"create":           func() error { _, err := ro.OpenFile(id+"2", os.O_CREATE|os.O_RDONLY, 0o644); return err }(),
		"write":            func() error { _, err := f.WriteAt([]byte("x"), 0); return err }(),
		"truncate":         f.Truncate(0),
		"sync":             f.Sync(),
		"remove":           ro.Remove(id),
		"rename":           ro.Rename(id, id+".old"),
		"mkdir":            ro.MkdirAll(filepath.Join(dir, "x"), 0o755),
		"sync dir":         ro.SyncDir(dir),
		"lock":             func() error { _, err := ro.Lock(filepath.Join(dir, LockName)); return err }(),
	} {
		if !errors.Is(err, errReadOnly) {
			t.Errorf("%s: %v", what, err)
		}
	}
	if after := contents(m); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatalf("files before %v, after %v", before, after)
	}
}

// Snapshots that fail their checksum: the newest refuses the directory, as Open reads it; an
// older one, which Open never reads, is named but does not.
func TestDescribeDamagedSnapshots(t *testing.T) {
	build := func() *vfs.Mem {
		m := vfs.NewMem()
		a := mustOpen(t, m, opts())
		for i := uint64(1); i <= 60; i += 10 {
			appendRange(t, a, i, i+9, 1)
			if err := a.Sync(); err != nil {
				t.Fatal(err)
			}
			if i+9 == 30 || i+9 == 50 {
				if err := a.CreateSnapshot(i+9, &pb.ConfState{Voters: []uint64{1}}, []byte("state")); err != nil {
					t.Fatal(err)
				}
			}
		}
		a.Close()
		return m
	}
	snap := func(index uint64) string { return filepath.Join(dir, "snap", snapshotName(index, 1)) }

	m := build()
	m.Corrupt(snap(30), func(b []byte) []byte { b[len(b)-6] ^= 1; return b })
	d := describe(t, m, DescribeOptions{})
	if s := d.Snapshots[0]; s.Index != 30 || s.Decodes || !strings.Contains(s.Problem, "checksum") || s.Newest {
		t.Fatalf("the older snapshot: %+v", s)
	}
	if s := d.Snapshots[1]; s.Index != 50 || !s.Decodes || !s.Newest || d.Plan.Action != PlanStart || d.Plan.SnapshotIndex != 50 {
		t.Fatalf("the newest snapshot: %+v, plan %+v", s, d.Plan)
	}
	agreesWithOpen(t, m, d)

	m = build()
	m.Corrupt(snap(50), func(b []byte) []byte { b[len(b)-6] ^= 1; return b })
	d = describe(t, m, DescribeOptions{})
	if s := d.Snapshots[1]; s.Decodes || d.Plan.Action != PlanRefuse || !strings.Contains(d.Plan.Refusal, snap(50)) ||
		d.Segments[len(d.Segments)-1].LastIndex != 60 {
		t.Fatalf("snapshot %+v, plan %+v, segments %+v", s, d.Plan, d.Segments)
	}
	agreesWithOpen(t, m, d)

	// Data without an IDENTITY file: whose it is cannot be told.
	m = build()
	if err := m.Remove(filepath.Join(dir, "IDENTITY")); err != nil {
		t.Fatal(err)
	}
	d = describe(t, m, DescribeOptions{})
	if d.Identity.Present || d.Plan.Action != PlanRefuse || !strings.Contains(d.Plan.Refusal, "holds data but no IDENTITY file") || len(d.Segments) == 0 {
		t.Fatalf("identity %+v, plan %+v", d.Identity, d.Plan)
	}
	agreesWithOpen(t, m, d)
}

// A torn first write (entries without their hard state): the plan cuts them all, as Open does.
func TestDescribeTornFirstWrite(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 3, 1) // never synced
	a.Close()
	seg := lastSeg(m)
	var firstEntry int64
	m.Corrupt(seg, func(b []byte) []byte {
		ends := recordEnds(b)
		firstEntry = ends[len(ends)-5] // header, allocated, entries 1..3, hard state
		clear(b[ends[len(ends)-2]:])   // the hard state did not reach the disk
		return b
	})
	d := describe(t, m, DescribeOptions{})
	s := d.Segments[0]
	if p := d.Plan; p.Action != PlanStart || p.CutFile != seg || p.CutOffset != firstEntry || p.LastIndex != 0 || d.HardState != (HardStateInfo{}) ||
		s.State != SegmentTorn || s.TornOffset != firstEntry || s.Entries != 0 {
		t.Fatalf("plan %+v, segment %+v, hard state %+v", p, s, d.HardState)
	}
	agreesWithOpen(t, m, d)
}
