package archive

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/consensus"
	"github.com/tandem-cluster/tandem/internal/vfs"
)

var _ consensus.Storage = (*Archive)(nil)

const dir = "/data/node-0"

func opts() Options {
	return Options{ClusterID: "test", MemberID: 0, SegmentBytes: 4 << 10, GrowBytes: 1 << 10, LogMarginEntries: 20}
}

func entry(index, term uint64) *pb.Entry {
	return &pb.Entry{Index: &index, Term: &term, Type: pb.EntryNormal.Enum(), Data: []byte(fmt.Sprintf("entry-%d-term-%d", index, term))}
}

func hs(term, commit uint64) *pb.HardState {
	return &pb.HardState{Term: &term, Vote: new(uint64(1)), Commit: &commit}
}

func mustOpen(t *testing.T, fsys vfs.FS, o Options) *Archive {
	t.Helper()
	a, err := Open(fsys, dir, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return a
}

func appendRange(t *testing.T, a *Archive, lo, hi, term uint64) {
	t.Helper()
	var ents []*pb.Entry
	for i := lo; i <= hi; i++ {
		ents = append(ents, entry(i, term))
	}
	if err := a.Append(hs(term, hi), ents); err != nil {
		t.Fatal(err)
	}
}

// checkPrefix asserts that the archive holds entries 1..last exactly as written (term 1).
func checkPrefix(t *testing.T, a *Archive, last uint64) {
	t.Helper()
	if got, _ := a.LastIndex(); got != last {
		t.Fatalf("last index %d, want %d", got, last)
	}
	first, _ := a.FirstIndex()
	if last < first {
		return
	}
	ents, err := a.Entries(first, last+1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range ents {
		if want := entry(first+uint64(i), e.GetTerm()); !proto.Equal(e, want) {
			t.Fatalf("entry %d is %v, want %v", first+uint64(i), e, want)
		}
	}
}

func segFiles(m *vfs.Mem) []string {
	var out []string
	for name := range m.Files() {
		if strings.HasSuffix(name, ".seg") {
			out = append(out, name)
		}
	}
	return out
}

func lastSeg(m *vfs.Mem) string {
	segs := segFiles(m)
	last := ""
	for _, s := range segs {
		if s > last {
			last = s
		}
	}
	return last
}

func TestAppendReadReopen(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	for i := uint64(1); i <= 200; i += 10 {
		appendRange(t, a, i, i+9, 1)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(segFiles(m)) < 2 {
		t.Fatalf("200 entries in 4 KiB segments used %d segment(s)", len(segFiles(m)))
	}
	checkPrefix(t, a, 200)
	if _, err := a.Entries(1, 202, 1<<30); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("reading past the end: %v", err)
	}
	ents, _ := a.Entries(1, 200, 1)
	if len(ents) != 1 {
		t.Fatalf("maxSize 1 returned %d entries, want exactly 1 (at least one, whatever the limit)", len(ents))
	}
	a.Close()
	a = mustOpen(t, m, opts())
	checkPrefix(t, a, 200)
	h, _, _ := a.InitialState()
	if h.GetCommit() != 200 || h.GetTerm() != 1 {
		t.Fatalf("hard state after reopen: %v", h)
	}
}

func TestTruncationIsDurable(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 10, 1)
	_ = a.Sync()
	appendRange(t, a, 6, 8, 2) // a new leader overwrote 6..10
	_ = a.Sync()
	m.Crash(rand.New(rand.NewPCG(1, 1)), vfs.CrashDrop)
	a = mustOpen(t, m, opts())
	if last, _ := a.LastIndex(); last != 8 {
		t.Fatalf("last index %d after a durable truncation to 8", last)
	}
	for i := uint64(1); i <= 8; i++ {
		want := uint64(1)
		if i >= 6 {
			want = 2
		}
		if term, _ := a.Term(i); term != want {
			t.Fatalf("entry %d has term %d, want %d (a truncated entry came back)", i, term, want)
		}
	}
}

// recordEnds returns the end offset of every record of the last segment.
func recordEnds(b []byte) []int64 {
	var ends []int64
	var off int64
	for {
		_, _, next, ok, _ := parseRecord(b, off)
		if !ok {
			return ends
		}
		ends = append(ends, next)
		off = next
	}
}

// syncedBatches writes entries 1..30 in batches of three, each batch synced, in segments of
// format version, and closes the archive. It returns the disk, the last segment's name and the
// end of every record in it.
func syncedBatches(t *testing.T, version uint8) (*vfs.Mem, string, []int64) {
	t.Helper()
	defer func(v uint8) { segmentVersionWritten = v }(segmentVersionWritten)
	segmentVersionWritten = version
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	for i := uint64(1); i <= 30; i += 3 {
		appendRange(t, a, i, i+2, 1)
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	seg := lastSeg(m)
	var ends []int64
	m.Corrupt(seg, func(b []byte) []byte {
		if b[recordHeaderBytes] != version {
			t.Fatalf("the header says format %d, want %d", b[recordHeaderBytes], version)
		}
		ends = recordEnds(b)
		return b
	})
	return m, seg, ends
}

func TestTornTailAtEveryOffset(t *testing.T) {
	base := vfs.NewMem()
	a := mustOpen(t, base, opts())
	appendRange(t, a, 1, 30, 1)
	_ = a.Sync()
	a.Close()
	seg := lastSeg(base)
	data := base.Files()
	_ = data
	var orig []byte
	base.Corrupt(seg, func(b []byte) []byte { orig = bytes.Clone(b); return b })
	ends := recordEnds(orig)
	if len(ends) < 6 {
		t.Fatalf("only %d records in the last segment", len(ends))
	}
	from := ends[len(ends)-6] // the last five records
	// Count entries per end offset: which records are entries decides the surviving prefix.
	for cut := from; cut <= ends[len(ends)-1]; cut++ {
		m := vfs.NewMem()
		a := mustOpen(t, m, opts())
		appendRange(t, a, 1, 30, 1)
		_ = a.Sync()
		a.Close()
		m.Corrupt(seg, func(b []byte) []byte { return b[:cut] })
		a, err := Open(m, dir, opts())
		if err != nil {
			t.Fatalf("cut at %d: the member must start: %v", cut, err)
		}
		last, _ := a.LastIndex()
		// Every complete record before the cut survives, nothing after.
		complete := 0
		for _, e := range ends {
			if e <= cut {
				complete++
			}
		}
		var entries uint64
		var off int64
		for i := 0; i < complete; i++ {
			typ, _, next, _, _ := parseRecord(orig, off)
			if typ == recEntry {
				entries++
			}
			off = next
		}
		first := a.segs[len(a.segs)-1].first
		if want := first - 1 + entries; last != want {
			t.Fatalf("cut at %d: last index %d, want %d", cut, last, want)
		}
		checkPrefix(t, a, last)
		// It keeps working after the cut.
		appendRange(t, a, last+1, last+3, 1)
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
		a.Close()
		a = mustOpen(t, m, opts())
		checkPrefix(t, a, last+3)
	}
}

// A bad record in synced data is refused, naming the file and offset: in an older segment, or in
// the last one before a synced record that vouches for it. One after the last synced record is
// cut: it cannot be told from a crash's torn tail (see doc.go, Recovery).
func TestBitFlipTailCutMiddleRefused(t *testing.T) {
	// Tail: a bit in the last record.
	m, seg, ends := syncedBatches(t, segmentV2)
	m.Corrupt(seg, func(b []byte) []byte { b[ends[len(ends)-1]-3] ^= 0x10; return b })
	a, err := Open(m, dir, opts())
	if err != nil {
		t.Fatalf("a flipped bit in the last record must be cut, not refused: %v", err)
	}
	a.Close()
	// Middle: a bit in an earlier record of the same segment.
	m, seg, ends = syncedBatches(t, segmentV2)
	at := ends[len(ends)/2] - 2
	m.Corrupt(seg, func(b []byte) []byte { b[at] ^= 0x01; return b })
	_, err = Open(m, dir, opts())
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), seg) || !strings.Contains(err.Error(), "offset") {
		t.Fatalf("a flipped bit in the middle must refuse with file and offset, got %v", err)
	}
	// Middle: in an earlier segment.
	m, _, _ = syncedBatches(t, segmentV2)
	segs := segFiles(m)
	first := segs[0]
	for _, s := range segs {
		if s < first {
			first = s
		}
	}
	m.Corrupt(first, func(b []byte) []byte { b[40] ^= 0x01; return b })
	if _, err := Open(m, dir, opts()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), first) {
		t.Fatalf("corruption in an older segment must refuse naming it, got %v", err)
	}
	var out bytes.Buffer
	if _, err := Verify(m, dir, &out); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Verify missed the corruption: %v\n%s", err, out.String())
	}
}

func TestZeroFilledLastSectorIsTorn(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 30, 1)
	_ = a.Sync()
	a.Close()
	seg := lastSeg(m)
	var end int64
	m.Corrupt(seg, func(b []byte) []byte {
		ends := recordEnds(b)
		end = ends[len(ends)-1]
		for i := max(0, end-512); i < end; i++ {
			b[i] = 0
		}
		return b
	})
	a, err := Open(m, dir, opts())
	if err != nil {
		t.Fatalf("a zero-filled last sector must be treated as torn: %v", err)
	}
	last, _ := a.LastIndex()
	if last >= 30 || last < 1 {
		t.Fatalf("last index %d after zeroing the last sector", last)
	}
	checkPrefix(t, a, last)
}

var (
	allCrashModes = []vfs.CrashMode{vfs.CrashDrop, vfs.CrashTruncate, vfs.CrashTear, vfs.CrashReorder}
	reorderOnly   = []vfs.CrashMode{vfs.CrashReorder}
)

type crashResult struct {
	lost     int   // entries reported durable that a crash lost
	holes    int   // crashes after which the last segment held a valid record behind a bad one
	recycled int   // segments compaction released to become the spare
	refused  error // Open refused to start after a crash (the run stops there)
}

// crashRun appends batches, syncing now and then, sometimes snapshotting and compacting (so that
// released segments are recycled as spares), crashes the model file system with one of modes,
// reopens, and counts the entries reported durable that did not survive.
func crashRun(t *testing.T, seed uint64, noSync bool, modes []vfs.CrashMode) (res crashResult) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	m := vfs.NewMem()
	o := opts()
	o.NoSync = noSync
	a := mustOpen(t, m, o)
	var durable uint64
	next := uint64(1)
	cs := &pb.ConfState{Voters: []uint64{1}}
	for round := 0; round < 6; round++ {
		for range 1 + rng.IntN(6) {
			n := uint64(1 + rng.IntN(20))
			appendRange(t, a, next, next+n-1, 1)
			next += n
			// The next segment's spare: prepared now, or left unprepared (its job taken and
			// never run), so crashes meet both kinds of roll.
			if job := a.TakeSpareJob(); job != nil && rng.IntN(3) > 0 {
				if err := job(); err != nil {
					t.Fatal(err)
				}
			}
			if rng.IntN(2) == 0 {
				if err := a.Sync(); err != nil {
					t.Fatal(err)
				}
				durable = a.DurableIndex()
				if durable > 0 && rng.IntN(4) == 0 {
					if err := a.CreateSnapshot(durable, cs, []byte("state")); err != nil {
						t.Fatal(err)
					}
					recycled := a.spareRecycled
					if err := a.Reclaim(); err != nil {
						t.Fatal(err)
					}
					if a.spareRecycled > recycled {
						res.recycled++
					}
				}
			}
		}
		m.Crash(rng, modes[rng.IntN(len(modes))])
		if off, b := lastSegmentBadRecord(t, m); b != nil {
			if _, found := naiveValidRecordAfter(b, off, recSynced); found {
				res.holes++
			}
		}
		var err error
		if a, err = Open(m, dir, o); err != nil {
			res.refused = fmt.Errorf("seed %d round %d: reopen after a crash: %w", seed, round, err)
			return res
		}
		last, _ := a.LastIndex()
		if last < durable {
			res.lost += int(durable - last)
			durable = last
		}
		checkPrefix(t, a, last)
		next = last + 1
	}
	return res
}

// lastSegmentBadRecord returns the last segment's bytes and the offset of its first bad record,
// or nil if its records end cleanly (zeros to the end).
func lastSegmentBadRecord(t *testing.T, m *vfs.Mem) (int64, []byte) {
	t.Helper()
	name := lastSeg(m)
	if name == "" {
		return 0, nil
	}
	f, err := m.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, m.Files()[name])
	if _, err := f.ReadAt(b, 0); err != nil && len(b) > 0 {
		t.Fatal(err)
	}
	var off int64
	for off < int64(len(b)) {
		_, _, next, ok, end := parseRecord(b, off)
		if end && allZero(b[off:]) {
			return 0, nil
		}
		if !ok {
			return off, b
		}
		off = next
	}
	return 0, nil
}

// Nothing reported durable is lost, and the member always starts, whatever a power loss does to
// unsynced data: dropped, cut, torn, or written back out of order.
func TestCrashNeverLosesDurableEntries(t *testing.T) {
	for _, modes := range [][]vfs.CrashMode{allCrashModes, reorderOnly} {
		holes, recycled := 0, 0
		for seed := uint64(1); seed <= 200; seed++ {
			res := crashRun(t, seed, false, modes)
			if res.refused != nil {
				t.Fatal(res.refused)
			}
			if res.lost > 0 {
				t.Fatalf("seed %d: %d entries reported durable were lost", seed, res.lost)
			}
			holes += res.holes
			recycled += res.recycled
		}
		if slices.Equal(modes, reorderOnly) && holes == 0 || recycled == 0 {
			t.Fatalf("%d crashes left a valid record behind a bad one, %d segments were recycled: a case was not tested", holes, recycled)
		}
		t.Logf("modes %v: %d crashes left a valid record behind a bad one in the last segment; %d segments recycled", modes, holes, recycled)
	}
}

// Control: segments of format 1 (no synced records, and the rule of their time: a bad record
// followed by a valid one is refused) do not survive out-of-order writeback: the member refuses
// to start after some plain power losses. This is what synced records fix.
func TestReorderedCrashRefusedWithoutSyncedRecords(t *testing.T) {
	defer func(v uint8) { segmentVersionWritten = v }(segmentVersionWritten)
	segmentVersionWritten = segmentV1
	refused := 0
	for seed := uint64(1); seed <= 200; seed++ {
		res := crashRun(t, seed, false, reorderOnly)
		if res.lost > 0 {
			t.Fatalf("seed %d: %d entries reported durable were lost", seed, res.lost)
		}
		if res.refused != nil {
			if !errors.Is(res.refused, ErrCorrupt) || !strings.Contains(res.refused.Error(), "precedes a valid one") {
				t.Fatalf("refused for another reason: %v", res.refused)
			}
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("format-1 segments survived every reordered crash: the crash mode does not bite")
	}
	t.Logf("format 1: Open refused after a power loss in %d of 200 runs", refused)
}

// Negative control: with syncing switched off the same test must see loss, or it proves nothing.
func TestCrashTestDetectsMissingSync(t *testing.T) {
	lost := 0
	for seed := uint64(1); seed <= 200; seed++ {
		res := crashRun(t, seed, true, allCrashModes)
		if res.refused != nil {
			t.Fatal(res.refused)
		}
		lost += res.lost
	}
	if lost == 0 {
		t.Fatalf("with syncing off no loss was detected: the crash test cannot see a missing fsync")
	}
	t.Logf("negative control: %d durable-reported entries lost without sync, as expected", lost)
}

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
		cs := &pb.ConfState{Voters: []uint64{1}}
		next := uint64(1)
		var before []string
		for i := 0; i < 200 && m.Files()[spare] == 0; i++ {
			before = segFiles(m)
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
		size := m.Files()[spare]
		if size == 0 {
			t.Fatal("nothing recycled")
		}
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

// A segment that holds only zeros where it is not the last one (the spare's rename lost after its
// zeros were durable, as an older build could leave it) is removed at Open: nothing in it counts,
// and no later start or compaction must deal with it.
func TestAllZeroSegmentIsRemovedAtOpen(t *testing.T) {
	m := vfs.NewMem()
	o := opts()
	o.LogMarginEntries = 5
	a := mustOpen(t, m, o)
	spare := filepath.Join(dir, "log", spareName)
	cs := &pb.ConfState{Voters: []uint64{1}}
	next := uint64(1)
	var before []string
	for i := 0; i < 200 && m.Files()[spare] == 0; i++ {
		before = segFiles(m)
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
	if m.Files()[spare] == 0 {
		t.Fatal("nothing recycled")
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := a.TakeSpareJob()(); err != nil {
		t.Fatal(err)
	}
	durable := a.DurableIndex()
	a.Close()
	recycled := slices.Min(before)
	if err := m.Rename(spare, recycled); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir(filepath.Dir(spare)); err != nil {
		t.Fatal(err)
	}
	if segs := segFiles(m); len(segs) < 2 || slices.Min(segs) != recycled {
		t.Fatalf("segments %v: the zeroed one is not first of several", segs)
	}
	a = mustOpen(t, m, o)
	if slices.Contains(segFiles(m), recycled) {
		t.Fatalf("the all-zero segment %s survived Open", recycled)
	}
	checkPrefix(t, a, durable)
	a.Close()
	m.Crash(rand.New(rand.NewPCG(9, 9)), vfs.CrashDrop)
	a = mustOpen(t, m, o)
	if slices.Contains(segFiles(m), recycled) {
		t.Fatalf("the all-zero segment %s came back after a crash: its removal was not made durable", recycled)
	}
	checkPrefix(t, a, durable)
}

func TestFullDiskStopsWritesLosesNothingAcknowledged(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 50, 1)
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	used := int64(0)
	for _, n := range m.Files() {
		used += n
	}
	m.SetSpaceLimit(used + 3000)
	var err error
	next := uint64(51)
	for i := 0; i < 1000 && err == nil; i++ {
		err = a.Append(hs(1, next), []*pb.Entry{entry(next, 1)})
		if err == nil {
			err = a.Sync()
			next++
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a full disk gave %v, want ENOSPC", err)
	}
	acked := a.DurableIndex()
	if err2 := a.Append(nil, []*pb.Entry{entry(next, 1)}); !errors.Is(err2, syscall.ENOSPC) {
		t.Fatalf("the archive accepted a write after failing: %v", err2)
	}
	if err2 := a.Sync(); err2 == nil {
		t.Fatalf("Sync succeeded after a failure")
	}
	m.SetSpaceLimit(0)
	m.Crash(rand.New(rand.NewPCG(3, 3)), vfs.CrashTruncate)
	a = mustOpen(t, m, opts())
	if last, _ := a.LastIndex(); last < acked {
		t.Fatalf("after the full disk: last %d, but %d was acknowledged", last, acked)
	}
}

func TestFailedSyncIsStickyAndNeverRetried(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 10, 1)
	_ = a.Sync()
	appendRange(t, a, 11, 20, 1)
	m.InjectSyncError(1, syscall.EIO)
	err := a.Sync()
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync error %v, want EIO", err)
	}
	if a.DurableIndex() != 10 {
		t.Fatalf("durable index %d after a failed sync, want 10", a.DurableIndex())
	}
	syncs := m.Syncs
	if err2 := a.Sync(); !errors.Is(err2, syscall.EIO) {
		t.Fatalf("second Sync returned %v: a failed sync must stay failed", err2)
	}
	if m.Syncs != syncs {
		t.Fatalf("the archive retried fsync after a failure")
	}
	if err := a.Append(nil, []*pb.Entry{entry(21, 1)}); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write after a failed sync: %v", err)
	}
	m.Crash(rand.New(rand.NewPCG(4, 4)), vfs.CrashDrop)
	a = mustOpen(t, m, opts())
	checkPrefix(t, a, 10)
}

// A real small tmpfs: the kernel's own ENOSPC.
func TestFullDiskRealTmpfs(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); the model covers ENOSPC", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	d := filepath.Join(mnt, "node")
	o := opts()
	o.GrowBytes = 16 << 10
	o.SegmentBytes = 64 << 10
	a, err := Open(vfs.OS(), d, o)
	if err != nil {
		t.Fatal(err)
	}
	next := uint64(1)
	for i := 0; i < 100000 && err == nil; i++ {
		err = a.Append(hs(1, next), []*pb.Entry{entry(next, 1)})
		if err == nil {
			err = a.Sync()
			next++
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling a 256k tmpfs gave %v, want ENOSPC", err)
	}
	acked := a.DurableIndex()
	if err := a.Sync(); err == nil {
		t.Fatalf("the archive kept syncing after ENOSPC")
	}
	a.Close()
	// Free space, as an operator would, and restart: nothing acknowledged is gone.
	_ = os.Remove(filepath.Join(d, "IDENTITY.tmp"))
	a, err = Open(vfs.OS(), d, o)
	if err != nil {
		t.Fatalf("reopen after ENOSPC: %v", err)
	}
	last, _ := a.LastIndex()
	if last < acked {
		t.Fatalf("last %d < acknowledged %d", last, acked)
	}
	checkPrefix(t, a, last)
	a.Close()
}

func TestSnapshotRetentionAndCompactionBoundDisk(t *testing.T) {
	m := vfs.NewMem()
	o := opts()
	o.SegmentBytes, o.GrowBytes, o.LogMarginEntries, o.SnapshotsRetained = 8<<10, 2<<10, 50, 2
	a := mustOpen(t, m, o)
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}}
	// 1 M commands, 100 per entry (the replica batches many commands into one entry).
	const commands, perEntry = 1_000_000, 100
	payload := bytes.Repeat([]byte{7}, 16*perEntry)
	var maxBytes int64
	for i := uint64(1); i <= commands/perEntry; i++ {
		term := uint64(1)
		e := &pb.Entry{Index: &i, Term: &term, Data: payload}
		if err := a.Append(hs(1, i), []*pb.Entry{e}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if err := a.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := a.Reclaim(); err != nil {
				t.Fatal(err)
			}
		}
		if i%100 == 0 {
			if err := a.CreateSnapshot(i, cs, bytes.Repeat([]byte{1}, 512)); err != nil {
				t.Fatal(err)
			}
		}
		var total int64
		for _, n := range m.Files() {
			total += n
		}
		maxBytes = max(maxBytes, total)
	}
	_ = a.Sync()
	_ = a.Reclaim()
	first, _ := a.FirstIndex()
	if first < commands/perEntry-300 {
		t.Fatalf("log starts at %d after 10 000 entries: compaction did not run", first)
	}
	// Retained snapshots (2) + margin (50 entries) + one snapshot interval + a segment's slack.
	bound := int64(2*1024 + (50+100+200)*(16*perEntry+64) + 2*o.SegmentBytes)
	if maxBytes > bound {
		t.Fatalf("disk use peaked at %d bytes, bound %d", maxBytes, bound)
	}
	snaps := 0
	for name := range m.Files() {
		if strings.HasSuffix(name, ".snap") {
			snaps++
		}
	}
	if snaps != 2 {
		t.Fatalf("%d snapshots kept, want 2", snaps)
	}
	a.Close()
	a = mustOpen(t, m, o)
	last, _ := a.LastIndex()
	if last != commands/perEntry {
		t.Fatalf("after reopen last index %d", last)
	}
	s, _ := a.Snapshot()
	if s.GetMetadata().GetIndex() != commands/perEntry {
		t.Fatalf("newest snapshot at %d", s.GetMetadata().GetIndex())
	}
	t.Logf("1 M commands: disk use peaked at %d KiB", maxBytes>>10)
}

func TestSaveSnapshotResetsLogDurably(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 10, 1)
	_ = a.Sync()
	idx, term := uint64(100), uint64(3)
	snap := &pb.Snapshot{Data: []byte("leader state"), Metadata: &pb.SnapshotMetadata{Index: &idx, Term: &term,
		ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}
	if err := a.SaveSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	_ = a.Sync()
	appendRange(t, a, 101, 105, 3)
	_ = a.Sync()
	m.Crash(rand.New(rand.NewPCG(5, 5)), vfs.CrashDrop)
	a = mustOpen(t, m, opts())
	if f, _ := a.FirstIndex(); f != 101 {
		t.Fatalf("first index %d after a snapshot at 100", f)
	}
	if tm, _ := a.Term(100); tm != 3 {
		t.Fatalf("term of the snapshot index: %d", tm)
	}
	if _, err := a.Entries(5, 6, 1<<20); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("an entry from before the snapshot is still readable: %v", err)
	}
	got, _ := a.Snapshot()
	if !bytes.Equal(got.GetData(), []byte("leader state")) {
		t.Fatalf("snapshot data %q", got.GetData())
	}
	_, cs, _ := a.InitialState()
	if len(cs.GetVoters()) != 3 {
		t.Fatalf("conf state %v", cs)
	}
}

func TestCorruptNewestSnapshotRefused(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 10, 1)
	_ = a.Sync()
	if err := a.CreateSnapshot(10, &pb.ConfState{Voters: []uint64{1}}, []byte("state")); err != nil {
		t.Fatal(err)
	}
	a.Close()
	var snapPath string
	for name := range m.Files() {
		if strings.HasSuffix(name, ".snap") {
			snapPath = name
		}
	}
	m.Corrupt(snapPath, func(b []byte) []byte { b[len(b)-6] ^= 1; return b })
	if _, err := Open(m, dir, opts()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), snapPath) {
		t.Fatalf("a corrupt snapshot must refuse naming the file: %v", err)
	}
}

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

func TestVerifyReports(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 40, 1)
	_ = a.Sync()
	_ = a.CreateSnapshot(30, &pb.ConfState{Voters: []uint64{1}}, []byte("s"))
	a.Close()
	var out bytes.Buffer
	rep, err := Verify(m, dir, &out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastIndex != 40 || len(rep.Snapshots) != 1 || !strings.Contains(out.String(), "entries 1..40") {
		t.Fatalf("report %+v\n%s", rep, out.String())
	}
	if rep.LastSegmentVersion != segmentV2 || rep.SyncedOffset != 0 || !strings.Contains(out.String(), "no synced record yet") {
		t.Fatalf("one sync, nothing written after it: report %+v\n%s", rep, out.String())
	}
	// The first write after a sync vouches for what it synced.
	a = mustOpen(t, m, opts())
	appendRange(t, a, 41, 42, 1)
	end := a.current().end
	_ = a.Sync()
	appendRange(t, a, 43, 44, 1)
	a.Close()
	out.Reset()
	if rep, err = Verify(m, dir, &out); err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("last segment %s: format 2, records end at offset %d, its last synced record vouches for the bytes before offset %d\n", filepath.Base(lastSeg(m)), rep.LastSegmentEnd, end)
	if rep.SyncedOffset != end || rep.LastIndex != 44 || !strings.Contains(out.String(), line) {
		t.Fatalf("report %+v\n%s\nwant a line %q", rep, out.String(), line)
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add(appendRecord(nil, recEntry, []byte("payload")))
	f.Add(appendRecord(nil, recHeader, encodeHeader(segmentV2, 1, 0, false)))
	f.Add(appendRecord(nil, recHeader, encodeHeader(segmentV1, 1, 0, false)))
	f.Add(appendRecord(nil, recSynced, binary.LittleEndian.AppendUint64(nil, 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		var off int64
		for i := 0; i < 1000 && off < int64(len(b)); i++ {
			typ, payload, next, ok, _ := parseRecord(b, off)
			if !ok {
				break
			}
			if next <= off || !bytes.Equal(appendRecord(nil, typ, payload), b[off:next]) {
				t.Fatalf("record at %d does not re-encode to its bytes", off)
			}
			off = next
		}
		// The linear scan finds what parseRecord at every offset finds.
		for _, maxType := range []uint8{recHardState, recSynced} {
			p, found := validRecordAfter(b, 0, maxType)
			wantP, wantFound := naiveValidRecordAfter(b, 0, maxType)
			if found != wantFound || p != wantP {
				t.Fatalf("validRecordAfter(max type %d) = %d, %v; parsing every offset finds %d, %v", maxType, p, found, wantP, wantFound)
			}
		}
		_, _, _, _, _ = decodeHeader(b)
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	idx, term := uint64(5), uint64(2)
	good, _ := encodeSnapshot(&pb.Snapshot{Data: []byte("abc"), Metadata: &pb.SnapshotMetadata{Index: &idx, Term: &term}})
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSnapshot(b)
		if err != nil {
			return
		}
		again, err := encodeSnapshot(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeSnapshot(again); err != nil {
			t.Fatalf("re-encoded snapshot does not decode: %v", err)
		}
	})
}

func BenchmarkAppendSync(b *testing.B) {
	a, err := Open(vfs.OS(), b.TempDir(), Options{ClusterID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	payload := make([]byte, 64)
	next := uint64(1)
	ents := make([]*pb.Entry, 1000)
	b.ReportAllocs()
	for b.Loop() {
		for i := range ents {
			idx, term := next, uint64(1)
			ents[i] = &pb.Entry{Index: &idx, Term: &term, Data: payload}
			next++
		}
		if err := a.Append(hs(1, next-1), ents); err != nil {
			b.Fatal(err)
		}
		if err := a.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(ents))/b.Elapsed().Seconds(), "records/s")
}

// The core runs Sync and a snapshot's write job on goroutines of their own while it reads the log
// and records snapshots, and the node takes the spare's job meanwhile and runs it beside
// everything (doc.go, Concurrency): under -race this shows they share nothing unguarded, and the
// reads see the log as appended.
func TestSyncRunsBesideReadsAndSnapshots(t *testing.T) {
	for _, fsys := range []vfs.FS{vfs.NewMem(), vfs.OS()} {
		dir := "/data"
		if _, ok := fsys.(*vfs.Mem); !ok {
			dir = t.TempDir()
		}
		o := opts()
		o.SegmentBytes, o.GrowBytes, o.LogMarginEntries, o.SnapshotsRetained = 8<<10, 2<<10, 20, 2
		a, err := Open(fsys, dir, o)
		if err != nil {
			t.Fatal(err)
		}
		cs := &pb.ConfState{Voters: []uint64{1, 2, 3}}
		payload := bytes.Repeat([]byte{7}, 300)
		var last, newest uint64
		spares, spareDone := 0, make(chan error, 200)
		for round := 0; round < 200; round++ {
			var batch []*pb.Entry
			for range 5 {
				last++
				i, term := last, uint64(1)
				batch = append(batch, &pb.Entry{Index: &i, Term: &term, Data: payload})
			}
			if err := a.Append(hs(1, last), batch); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- a.Sync() }()
			// Meanwhile: what raft, the apply loop and the node do during a sync.
			if job := a.TakeSpareJob(); job != nil { // the next segment, prepared beside it all
				spares++
				go func() { spareDone <- job() }()
			}
			first, _ := a.FirstIndex()
			if li, _ := a.LastIndex(); li != last {
				t.Fatalf("last index %d during a sync, want %d", li, last)
			}
			ents, err := a.Entries(first, last+1, 1<<20)
			if err != nil || len(ents) == 0 || ents[0].GetIndex() != first {
				t.Fatalf("entries [%d, %d] during a sync: %d entries, %v", first, last, len(ents), err)
			}
			if tm, err := a.Term(last); err != nil || tm != 1 {
				t.Fatalf("term of %d during a sync: %d, %v", last, tm, err)
			}
			var snap *pb.Snapshot
			written := make(chan error, 1)
			if round%20 == 19 {
				var write func() error
				snap, write, err = a.PrepareSnapshot(last-5, cs, []byte("state"))
				if err != nil || snap == nil {
					t.Fatalf("preparing a snapshot at %d: %v, %v", last-5, snap, err)
				}
				go func() { written <- write() }()
			}
			if _, err := a.Snapshot(); err != nil {
				t.Fatal(err)
			}
			if snap != nil { // recorded while the sync may still run
				if err := <-written; err != nil {
					t.Fatal(err)
				}
				if err := a.AddSnapshot(snap); err != nil {
					t.Fatal(err)
				}
				if got, _ := a.Snapshot(); got.GetMetadata().GetIndex() != last-5 {
					t.Fatalf("newest snapshot at %d after adding %d", got.GetMetadata().GetIndex(), last-5)
				}
				newest = last - 5
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := a.Reclaim(); err != nil {
				t.Fatal(err)
			}
			if a.DurableIndex() != last {
				t.Fatalf("durable index %d after the sync, want %d", a.DurableIndex(), last)
			}
		}
		if first, _ := a.FirstIndex(); first < 500 {
			t.Fatalf("log starts at %d after 1 000 entries and 10 snapshots: Reclaim did not compact", first)
		}
		for range spares {
			if err := <-spareDone; err != nil {
				t.Fatal(err)
			}
		}
		if spares < 2 { // a second job is offered only once a roll used the first spare
			t.Fatalf("%d spare jobs: no roll used a spare", spares)
		}
		if len(a.snaps) != o.SnapshotsRetained {
			t.Fatalf("%d snapshots kept, want %d", len(a.snaps), o.SnapshotsRetained)
		}
		_ = a.Close()
		// What the jobs wrote and deleted is what a restart finds.
		b, err := Open(fsys, dir, o)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := b.Snapshot(); got.GetMetadata().GetIndex() != newest {
			t.Fatalf("newest snapshot at %d after a restart, want %d", got.GetMetadata().GetIndex(), newest)
		}
		if len(b.snaps) != o.SnapshotsRetained {
			t.Fatalf("%d snapshot files after a restart, want %d", len(b.snaps), o.SnapshotsRetained)
		}
		_ = b.Close()
	}
}

// naiveValidRecordAfter is validRecordAfter as it was: parseRecord at every offset (quadratic on
// a crafted tail). The tests hold the linear scan to its results.
func naiveValidRecordAfter(b []byte, off int64, maxType uint8) (int64, bool) {
	for p := off + 1; p+recordHeaderBytes <= int64(len(b)); p++ {
		if typ, _, _, ok, _ := parseRecord(b, p); ok && typ <= maxType {
			return p, true
		}
	}
	return 0, false
}
