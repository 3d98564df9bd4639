package archive

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

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
