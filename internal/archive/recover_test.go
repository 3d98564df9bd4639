package archive

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// syncedLog writes entries 1..30 in batches of three (each with a hard state), each batch
// synced, then, with tail, 31..36 unsynced, and closes the archive: the first write after each
// sync but the first starts with a synced record. It returns the last segment's name, the
// offset of every record in it, and those of the synced records, in order.
func syncedLog(t *testing.T, m *vfs.Mem, tail bool) (seg string, offs, synced []int64) {
	t.Helper()
	o := opts()
	o.SegmentBytes = 64 << 10 // one segment
	a := mustOpen(t, m, o)
	for i := uint64(1); i <= 30; i += 3 {
		appendRange(t, a, i, i+2, 1)
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if tail {
		appendRange(t, a, 31, 33, 1)
		appendRange(t, a, 34, 36, 1)
	}
	a.Close()
	seg = lastSeg(m)
	m.Corrupt(seg, func(b []byte) []byte {
		var off int64
		for {
			typ, _, next, ok, _ := parseRecord(b, off)
			if !ok {
				return b
			}
			offs = append(offs, off)
			if typ == recSynced {
				synced = append(synced, off)
			}
			off = next
		}
	})
	want := 9
	if tail {
		want = 10
	}
	if len(synced) != want {
		t.Fatalf("%d synced records, want %d", len(synced), want)
	}
	return seg, offs, synced
}

// In the last segment of format 2, a bad record followed by valid ones is a torn tail when no
// synced record vouches for it (cut there, the member starts), and damage to synced data when
// one does (refused, naming the file, the offset and the synced record).
func TestSyncedRecordsTellTornTailFromDamage(t *testing.T) {
	// Offsets: a record is 9 bytes of header, then its payload; an entry's is ~25 bytes.
	tests := []struct {
		name    string
		tail    bool                                        // entries 31..36 written, not synced
		at      func(offs, synced []int64) (from, to int64) // bytes flipped
		refused bool
		last    uint64 // when not refused
	}{
		{"hole in the unsynced tail, records after it", true,
			func(_, synced []int64) (int64, int64) {
				return synced[9] + syncedRecordBytes + 3, synced[9] + syncedRecordBytes + 60
			}, false, 30},
		{"bit rot early in the segment", true, func(offs, _ []int64) (int64, int64) { return offs[5], offs[5] + 1 }, true, 0},
		{"bit rot in the last synced batch", true, func(_, synced []int64) (int64, int64) { return synced[9] - 30, synced[9] - 29 }, true, 0},
		{"bit rot in the header", true, func([]int64, []int64) (int64, int64) { return 2, 3 }, true, 0},
		// With no write after the last sync, nothing vouches for the last batch: damage there
		// cannot be told from a torn tail, and is cut (see doc.go, Recovery).
		{"bit rot in the last synced batch, nothing written after it", false,
			func(_, synced []int64) (int64, int64) {
				return synced[8] + syncedRecordBytes + 3, synced[8] + syncedRecordBytes + 4
			}, false, 27},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := vfs.NewMem()
			seg, offs, synced := syncedLog(t, m, tc.tail)
			from, to := tc.at(offs, synced)
			m.Corrupt(seg, func(b []byte) []byte {
				for i := from; i < to; i++ {
					b[i] ^= 0xa5
				}
				return b
			})
			a, err := Open(m, dir, opts())
			if tc.refused {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), seg) || !strings.Contains(err.Error(), "offset") {
					t.Fatalf("damage to synced data must be refused naming file and offset, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("the member must start: %v", err)
			}
			checkPrefix(t, a, tc.last)
			appendRange(t, a, tc.last+1, tc.last+5, 1) // and it goes on
			if err := a.Sync(); err != nil {
				t.Fatal(err)
			}
			a.Close()
			a = mustOpen(t, m, opts())
			checkPrefix(t, a, tc.last+5)
		})
	}
	// The message names the synced record that vouches for the damaged offset.
	m := vfs.NewMem()
	seg, offs, synced := syncedLog(t, m, true)
	m.Corrupt(seg, func(b []byte) []byte { b[offs[2]] ^= 1; return b }) // an entry of the first batch
	want := fmt.Sprintf("%s offset %d: a bad record in data the synced record at offset %d says was durable", seg, offs[2], synced[0])
	if _, err := Open(m, dir, opts()); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("refusal %v does not say %q", err, want)
	}
}

// A segment's header is durable before anything else is written to it, so a crash never leaves
// a segment whose header is lost but whose later records survive (recovery would refuse it as
// damage). The new segment's name may reach the disk before any sync of the directory (a real
// file system commits directory entries with its journal): the test makes it so.
func TestRollMakesTheHeaderDurable(t *testing.T) {
	for seed := uint64(1); seed <= 100; seed++ {
		m := vfs.NewMem()
		a := mustOpen(t, m, opts())
		appendRange(t, a, 1, 40, 1)
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
		segs := len(segFiles(m))
		next := uint64(41)
		for len(segFiles(m)) == segs { // until a roll
			appendRange(t, a, next, next+4, 1)
			next += 5
		}
		appendRange(t, a, next, next+9, 1) // more unsynced records in the new segment
		durable := a.DurableIndex()
		if err := m.SyncDir(filepath.Join(dir, "log")); err != nil {
			t.Fatal(err)
		}
		m.Crash(rand.New(rand.NewPCG(seed, 3)), vfs.CrashReorder)
		a, err := Open(m, dir, opts())
		if err != nil {
			t.Fatalf("seed %d: a crash after a roll: %v", seed, err)
		}
		if last, _ := a.LastIndex(); last < durable {
			t.Fatalf("seed %d: last %d < durable %d", seed, last, durable)
		}
		a.Close()
	}
}

// Segments of format 1 (written by an older build) are read with the rule of their time: a bad
// record followed by a valid one is refused, a bad record with nothing valid after it is a torn
// tail; a synced record in one is bad, as that build saw it. The first write after opening one
// starts a segment of format 2.
func TestFormat1SegmentsKeepTheirRule(t *testing.T) {
	t.Run("bad record, valid one after: refused", func(t *testing.T) {
		m, seg, ends := syncedBatches(t, segmentV1)
		m.Corrupt(seg, func(b []byte) []byte { b[ends[len(ends)-4]+2] ^= 1; return b })
		if _, err := Open(m, dir, opts()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "precedes a valid one") {
			t.Fatalf("format 1, a bad record followed by a valid one: %v, want refused", err)
		}
	})
	t.Run("bad last record: cut", func(t *testing.T) {
		m, seg, ends := syncedBatches(t, segmentV1)
		m.Corrupt(seg, func(b []byte) []byte { b[ends[len(ends)-1]-1] ^= 1; return b })
		a, err := Open(m, dir, opts())
		if err != nil {
			t.Fatalf("format 1, a torn last record: %v", err)
		}
		checkPrefix(t, a, 30) // the last record is the batch's hard state
	})
	t.Run("synced record: bad", func(t *testing.T) {
		m, seg, ends := syncedBatches(t, segmentV1)
		end := ends[len(ends)-1]
		m.Corrupt(seg, func(b []byte) []byte {
			copy(b[end:], appendRecord(nil, recSynced, binary.LittleEndian.AppendUint64(nil, uint64(end))))
			return b
		})
		var out bytes.Buffer
		rep, err := Verify(m, dir, &out)
		if err != nil || rep.TornTail == "" || !strings.Contains(out.String(), "format 1 (no synced records)") {
			t.Fatalf("format 1 with a synced record: %v, report %+v\n%s", err, rep, out.String())
		}
	})
	t.Run("upgrade", func(t *testing.T) {
		m, seg, _ := syncedBatches(t, segmentV1)
		var before []byte
		m.Corrupt(seg, func(b []byte) []byte { before = bytes.Clone(b); return b })
		a := mustOpen(t, m, opts())
		checkPrefix(t, a, 30)
		appendRange(t, a, 31, 35, 1)
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
		appendRange(t, a, 36, 40, 1)
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
		a.Close()
		if lastSeg(m) == seg {
			t.Fatal("the first write after opening a format-1 segment did not start a new one")
		}
		m.Corrupt(seg, func(b []byte) []byte {
			if !bytes.Equal(b, before) {
				t.Fatal("the format-1 segment changed")
			}
			return b
		})
		var out bytes.Buffer
		rep, err := Verify(m, dir, &out)
		if err != nil || rep.LastSegmentVersion != segmentVersionWritten || rep.SyncedOffset == 0 || rep.LastIndex != 40 {
			t.Fatalf("after the upgrade: %v, report %+v\n%s", err, rep, out.String())
		}
	})
}

// A synced record this build would never write (a payload that is not 8 bytes, an offset not its
// own) is corruption, refused without a panic, wherever it lies.
func TestMalformedSyncedRecordRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload func(at int64) []byte
		want    string
	}{
		{"short", func(int64) []byte { return []byte{1, 2, 3} }, "a synced record of 3 bytes"},
		{"another offset", func(at int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(at-1)) }, "not its own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := vfs.NewMem()
			seg, _, synced := syncedLog(t, m, false)
			end := synced[len(synced)-1]
			m.Corrupt(seg, func(b []byte) []byte {
				var off int64 = end
				for { // to the end of the records
					_, _, next, ok, _ := parseRecord(b, off)
					if !ok {
						break
					}
					off = next
				}
				end = off
				copy(b[off:], appendRecord(nil, recSynced, tc.payload(off)))
				return b
			})
			if _, err := Open(m, dir, opts()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", end)) {
				t.Fatalf("got %v, want a refusal saying %q at offset %d", err, tc.want, end)
			}
		})
	}
}

// Whatever the last segment holds, Open returns (a log or an error, never a panic), and what it
// recovered is what the next Open recovers.
func FuzzRecoverSegment(f *testing.F) {
	m := vfs.NewMem()
	a, err := Open(m, dir, opts())
	if err != nil {
		f.Fatal(err)
	}
	for i := uint64(1); i <= 12; i += 3 { // synced batches, then one that is not
		var ents []*pb.Entry
		for k := i; k < i+3; k++ {
			ents = append(ents, entry(k, 1))
		}
		if err := a.Append(hs(1, i+2), ents); err != nil {
			f.Fatal(err)
		}
		if i < 10 {
			if err := a.Sync(); err != nil {
				f.Fatal(err)
			}
		}
	}
	a.Close()
	m.Corrupt(lastSeg(m), func(b []byte) []byte {
		ends := recordEnds(b)
		f.Add(bytes.Clone(b[:ends[len(ends)-1]+64]))
		return b
	})
	f.Add(appendRecord(appendRecord(nil, recHeader, encodeHeader(segmentV1, 1, 0, false)), recSynced, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := vfs.NewMem()
		a := mustOpen(t, m, opts())
		a.Close()
		f, err := m.OpenFile(filepath.Join(dir, "log", "0000000000000001.seg"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.Write(b)
		_ = f.Sync()
		_ = m.SyncDir(filepath.Join(dir, "log"))
		a, err = Open(m, dir, opts())
		if err != nil {
			return
		}
		last, _ := a.LastIndex()
		first, _ := a.FirstIndex()
		a.Close()
		a, err = Open(m, dir, opts())
		if err != nil {
			t.Fatalf("a second Open refuses what the first recovered: %v", err)
		}
		if l, _ := a.LastIndex(); l != last {
			t.Fatalf("last index %d, then %d", last, l)
		}
		if fi, _ := a.FirstIndex(); fi != first {
			t.Fatalf("first index %d, then %d", first, fi)
		}
	})
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
	appendRange(t, a, 1, 1, 1)
	_ = a.Sync() // the member's first write, with its hard state, is durable (a torn first write is cut whole: TestTornFirstWriteIsCut)
	appendRange(t, a, 2, 30, 1)
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
		appendRange(t, a, 1, 1, 1)
		_ = a.Sync() // the member's first write, with its hard state, is durable (a torn first write is cut whole: TestTornFirstWriteIsCut)
		appendRange(t, a, 2, 30, 1)
		_ = a.Sync()
		a.Close()
		// A crash leaves the file as long as it was durably (grow syncs the zeros before
		// records go into them): what did not reach the disk reads as zeros. (Shorter is lost
		// synced data: TestTruncatedSegmentRefused.)
		m.Corrupt(seg, func(b []byte) []byte { clear(b[cut:]); return b })
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
	appendRange(t, a, 1, 1, 1)
	_ = a.Sync() // the member's first write, with its hard state, is durable (a torn first write is cut whole: TestTornFirstWriteIsCut)
	appendRange(t, a, 2, 30, 1)
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

// A segment that holds only zeros where it is not the last one (the spare's rename lost after its
// zeros were durable, as an older build could leave it) is removed at Open: nothing in it counts,
// and no later start or compaction must deal with it.
func TestAllZeroSegmentIsRemovedAtOpen(t *testing.T) {
	m := vfs.NewMem()
	o := opts()
	o.LogMarginEntries = 5
	a := mustOpen(t, m, o)
	spare := filepath.Join(dir, "log", spareName)
	before := compactUntilRecycled(t, a, m)
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
	// The sync made a vote durable: it vouched for it at once (vouchVote).
	if rep.LastSegmentVersion != segmentVersionWritten || rep.SyncedOffset != rep.LastSegmentEnd-syncedRecordBytes {
		t.Fatalf("one sync of a new vote, nothing written after it: report %+v\n%s", rep, out.String())
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
	line := fmt.Sprintf("last segment %s: format 3, records end at offset %d, its last synced record vouches for the bytes before offset %d\n", filepath.Base(lastSeg(m)), rep.LastSegmentEnd, end)
	if rep.SyncedOffset != end || rep.LastIndex != 44 || !strings.Contains(out.String(), line) {
		t.Fatalf("report %+v\n%s\nwant a line %q", rep, out.String(), line)
	}
}

// A crash that tears a member's very first write (raft's bootstrap: entries and the hard state
// that goes with them) can leave entries without any hard state. Raft cannot start on that (the
// member would belong to no configuration, for ever): the entries were never acknowledged, and
// are cut, so the member bootstraps afresh (regression schedule torn-first-write.txt).
func TestTornFirstWriteIsCut(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 3, 1) // entries 1..3, then the hard state; never synced
	a.Close()
	seg := lastSeg(m)
	m.Corrupt(seg, func(b []byte) []byte {
		ends := recordEnds(b)
		clear(b[ends[len(ends)-2]:]) // the hard state record did not reach the disk
		return b
	})
	a, err := Open(m, dir, opts())
	if err != nil {
		t.Fatal(err)
	}
	if last, _ := a.LastIndex(); last != 0 {
		t.Fatalf("last index %d: entries without their hard state were kept", last)
	}
	if hs, _, _ := a.InitialState(); hs.GetTerm() != 0 {
		t.Fatalf("hard state %v", hs)
	}
	appendRange(t, a, 1, 3, 1) // the bootstrap again
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	checkPrefix(t, a, 3)
	a.Close()
	if a, err = Open(m, dir, opts()); err != nil {
		t.Fatal(err)
	}
	checkPrefix(t, a, 3)
}
