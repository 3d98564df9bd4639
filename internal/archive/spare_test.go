package archive

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// A prepared spare becomes the next segment, already allocated: the roll writes no zeros, and
// the new segment survives a crash like any other; a new file is prepared only once the current
// segment is half full. A leftover spare is zero-filled again by the next run. A spare
// that cannot be prepared (a full disk) leaves nothing behind and does not fail the archive.
func TestSpareSegment(t *testing.T) {
	m := vfs.NewMem()
	o := opts()
	a := mustOpen(t, m, o)
	spare := filepath.Join(dir, "log", spareName)
	next := uint64(1)
	// No new spare while the first segment is less than half full.
	for a.current() == nil || a.current().end < o.SegmentBytes/2 {
		if a.TakeSpareJob() != nil {
			t.Fatalf("a spare job offered with the segment %d of %d bytes full", a.current().end, o.SegmentBytes)
		}
		appendRange(t, a, next, next+4, 1)
		next += 5
	}
	job := a.TakeSpareJob()
	if job == nil || a.TakeSpareJob() != nil {
		t.Fatal("a half-full segment should offer one spare job")
	}
	if err := job(); err != nil {
		t.Fatal(err)
	}
	want := o.SegmentBytes + o.GrowBytes
	if got := m.Files()[spare]; got != want {
		t.Fatalf("spare of %d bytes, want %d", got, want)
	}
	segs := len(segFiles(m))
	for len(segFiles(m)) == segs {
		appendRange(t, a, next, next+4, 1)
		next += 5
	}
	if _, ok := m.Files()[spare]; ok {
		t.Fatal("the roll did not use the spare")
	}
	if got := m.Files()[lastSeg(m)]; got != want {
		t.Fatalf("the new segment holds %d bytes, want the spare's %d (no growth)", got, want)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	halfFill := func() {
		t.Helper()
		next, _ = a.LastIndex()
		next++
		for a.current().end < o.SegmentBytes/2 {
			appendRange(t, a, next, next+4, 1)
			next += 5
		}
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	halfFill()
	durable := a.DurableIndex()
	if a.TakeSpareJob() == nil {
		t.Fatal("no spare job offered after the spare was used")
	} // taken and never run: the next roll grows a segment as before
	m.Crash(rand.New(rand.NewPCG(1, 1)), vfs.CrashDrop)
	a = mustOpen(t, m, o)
	if last, _ := a.LastIndex(); last != durable {
		t.Fatalf("after a crash: last index %d, want %d", last, durable)
	}
	checkPrefix(t, a, durable)

	// A leftover spare (a crash while its job ran, over a recycled segment's records) is
	// zero-filled again by the next run's job before it is used.
	halfFill()
	if err := a.TakeSpareJob()(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	m.Corrupt(spare, func(b []byte) []byte {
		return append(appendRecord(nil, recHeader, encodeHeader(segmentV2, 1, 0, false)), b[20:]...)
	})
	a = mustOpen(t, m, o)
	if job := a.TakeSpareJob(); job == nil {
		t.Fatal("no job for the spare left by the previous run")
	} else if err := job(); err != nil {
		t.Fatal(err)
	}
	if f, err := m.OpenFile(spare, os.O_RDONLY, 0); err != nil {
		t.Fatal(err)
	} else {
		b := make([]byte, want)
		n, _ := f.ReadAt(b, 0)
		_ = f.Close()
		if int64(n) != want || !allZero(b) {
			t.Fatalf("the leftover spare holds %d bytes after its job (zeros: %v), want %d zeros", n, allZero(b), want)
		}
	}

	// A full disk: the spare fails and is removed; the archive goes on until its own write
	// meets the full disk. (First a roll uses the ready spare, so that a new one is wanted.)
	next, _ = a.LastIndex()
	next++
	for m.Files()[spare] > 0 {
		appendRange(t, a, next, next+4, 1)
		next += 5
	}
	halfFill()
	used := int64(0)
	for _, n := range m.Files() {
		used += n
	}
	m.SetSpaceLimit(used + o.SegmentBytes/2)
	if err := a.TakeSpareJob()(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("preparing a spare on a full disk: %v, want ENOSPC", err)
	}
	if _, ok := m.Files()[spare]; ok || a.Err() != nil {
		t.Fatalf("a failed spare left its file (%v) or failed the archive (%v)", ok, a.Err())
	}
	last, _ := a.LastIndex()
	appendRange(t, a, last+1, last+2, 1)
	if err := a.Sync(); err != nil {
		t.Fatalf("the archive stopped after a failed spare: %v", err)
	}
}

// A segment that compaction released becomes the spare instead of being deleted (a delete stalls
// the disk): renamed, zero-filled over its old records by the spare's job, then the next segment.
// A crash before the rename is durable finds the segment where it was.
func TestReleasedSegmentIsRecycled(t *testing.T) {
	m := vfs.NewMem()
	o := opts()
	o.LogMarginEntries = 5
	a := mustOpen(t, m, o)
	spare := filepath.Join(dir, "log", spareName)
	cs := &pb.ConfState{Voters: []uint64{1}}
	next := uint64(1)
	step := func() {
		t.Helper()
		appendRange(t, a, next, next+9, 1)
		next += 10
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := a.CreateSnapshot(next-1, cs, []byte("state")); err != nil {
			t.Fatal(err)
		}
		if err := a.Reclaim(); err != nil {
			t.Fatal(err)
		}
	}
	recycle := func() int64 {
		t.Helper()
		for i := 0; i < 200 && m.Files()[spare] == 0; i++ {
			step()
		}
		size := m.Files()[spare]
		if size == 0 {
			t.Fatal("compaction released no segment to recycle")
		}
		return size
	}
	recycle()
	// A crash before the directory sync: the rename never happened, the segment is back.
	m.Crash(rand.New(rand.NewPCG(5, 5)), vfs.CrashDrop)
	a = mustOpen(t, m, o)
	if _, ok := m.Files()[spare]; ok {
		t.Fatal("a spare survived the crash and Open")
	}
	checkPrefix(t, a, a.DurableIndex())
	next = a.DurableIndex() + 1

	size := recycle()
	if err := a.Sync(); err != nil { // the rename is durable now
		t.Fatal(err)
	}
	job := a.TakeSpareJob()
	if job == nil {
		t.Fatal("no job to zero the recycled segment")
	}
	if err := job(); err != nil {
		t.Fatal(err)
	}
	f, err := m.OpenFile(spare, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size+1)
	n, _ := f.ReadAt(b, 0)
	_ = f.Close()
	if int64(n) != size || !allZero(b[:n]) {
		t.Fatalf("the recycled spare holds %d bytes (zeros: %v), want %d bytes of zeros", n, allZero(b[:n]), size)
	}
	segs := segFiles(m)
	for m.Files()[spare] > 0 {
		appendRange(t, a, next, next+4, 1)
		next += 5
	}
	if got := m.Files()[lastSeg(m)]; got != size || slices.Contains(segs, lastSeg(m)) {
		t.Fatalf("the new segment %s holds %d bytes, want the recycled %d", lastSeg(m), got, size)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	durable := a.DurableIndex()
	m.Crash(rand.New(rand.NewPCG(6, 6)), vfs.CrashTear)
	a = mustOpen(t, m, o)
	if last, _ := a.LastIndex(); last < durable {
		t.Fatalf("after a crash: last index %d, %d was durable", last, durable)
	}
	checkPrefix(t, a, durable)
}

// stopFS stops the archive's spare job (StopSpareJob) once the spare's file has been synced
// after steps steps of zeros: a crash then finds the job cut short where power would have cut it.
type stopFS struct {
	*vfs.Mem
	steps  int
	stop   func()
	synced int
}

func (f *stopFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	file, err := f.Mem.OpenFile(name, flag, perm)
	if err != nil || filepath.Base(name) != spareName {
		return file, err
	}
	return &stopFile{File: file, fs: f}, nil
}

type stopFile struct {
	vfs.File
	fs *stopFS
}

func (f *stopFile) Sync() error {
	err := f.File.Sync()
	if f.fs.synced++; f.fs.synced == f.fs.steps {
		f.fs.stop()
	}
	return err
}

// A crash at any point of the job that zero-fills a recycled segment loses nothing and lets the
// member start. The segment's rename to the spare is durable before the first zero is written:
// otherwise a crash could bring the old name back over a file that starts with zeros and still
// holds records further on, which recovery must refuse as a log corrupt in the middle.
func TestCrashWhileZeroingARecycledSegment(t *testing.T) {
	defer func(s int64) { spareStep = s }(spareStep)
	spareStep = 1 << 10 // several steps per test segment
	partial := 0
	for seed := uint64(1); seed <= 60; seed++ {
		fsys := &stopFS{Mem: vfs.NewMem(), steps: 1 + int(seed%5)}
		m := fsys.Mem
		o := opts()
		o.LogMarginEntries = 5
		a := mustOpen(t, fsys, o)
		fsys.stop = a.StopSpareJob
		spare := filepath.Join(dir, "log", spareName)
		before := compactUntilRecycled(t, a, m)
		size := m.Files()[spare]
		recycled := slices.Min(before)
		job := a.TakeSpareJob()
		if job == nil {
			t.Fatal("no job to zero the recycled segment")
		}
		if err := job(); err != nil { // stops after fsys.steps steps, or when the file is zeros
			t.Fatal(err)
		}
		if int64(fsys.steps)*spareStep < size {
			partial++
		}
		durable := a.DurableIndex()
		m.Crash(rand.New(rand.NewPCG(seed, 1)), vfs.CrashMode(seed%4))
		if slices.Contains(segFiles(m), recycled) {
			t.Fatalf("seed %d: the recycled segment %s is back under its old name after the crash", seed, recycled)
		}
		a, err := Open(m, dir, o)
		if err != nil {
			t.Fatalf("seed %d: reopen: %v", seed, err)
		}
		if last, _ := a.LastIndex(); last < durable {
			t.Fatalf("seed %d: last %d < durable %d", seed, last, durable)
		}
		checkPrefix(t, a, durable)
	}
	if partial == 0 {
		t.Fatal("no job was cut short: the case was not tested")
	}
}
