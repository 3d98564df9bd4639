package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

// wantLost asserts that Open and Verify refuse the directory with lost synced data naming file.
func wantLost(t *testing.T, m *vfs.Mem, file, what string) {
	t.Helper()
	before := contents(m)
	_, err := Open(m, dir, opts())
	if after := contents(m); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatalf("%s: Open changed the directory it refused", what)
	}
	var lost *LostSyncedDataError
	if !errors.Is(err, ErrLostSyncedData) || !errors.Is(err, ErrCorrupt) || !errors.As(err, &lost) || lost.File != file {
		t.Fatalf("%s: Open: %v, want lost synced data in %s", what, err, file)
	}
	if !strings.Contains(err.Error(), "do not start it as it is") {
		t.Fatalf("%s: the refusal does not give the remedy: %v", what, err)
	}
	var out bytes.Buffer
	if _, err := Verify(m, dir, &out); !errors.Is(err, ErrLostSyncedData) || !strings.Contains(out.String(), "LOST SYNCED DATA") {
		t.Fatalf("%s: Verify: %v\n%s", what, err, out.String())
	}
}

// contents returns every file's bytes.
func contents(m *vfs.Mem) map[string][]byte {
	out := map[string][]byte{}
	for name := range m.Files() {
		m.Corrupt(name, func(b []byte) []byte { out[name] = bytes.Clone(b); return b })
	}
	return out
}

// twoSegments writes entries 1..n (n spans at least two segments), syncs and closes. It returns
// the segment names in order.
func twoSegments(t *testing.T, m *vfs.Mem, n uint64) []string {
	t.Helper()
	a := mustOpen(t, m, opts())
	for i := uint64(1); i <= n; i += 10 {
		appendRange(t, a, i, min(i+9, n), 1)
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	segs := segFiles(m)
	slicesSort(segs)
	if len(segs) < 2 {
		t.Fatalf("%d segments, want at least 2", len(segs))
	}
	return segs
}

func slicesSort(s []string) {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
}

// Case 1. A segment is durably as long as its allocated records say (the spare's zeros, or a
// step of GrowBytes synced before records go into it): a file cut shorter, at any offset, is lost
// synced data, in the last segment as in an earlier one. (Before: cut as a torn tail, or not
// noticed at all when the cut fell between records.)
func TestTruncatedSegmentRefused(t *testing.T) {
	m := vfs.NewMem()
	segs := twoSegments(t, m, 200)
	for _, seg := range []string{segs[len(segs)-1], segs[0]} {
		size := m.Files()[seg]
		for cut := int64(0); cut < size; cut += 1 + cut/64 {
			m := vfs.NewMem()
			twoSegments(t, m, 200)
			m.Corrupt(seg, func(b []byte) []byte { return b[:cut] })
			wantLost(t, m, seg, fmt.Sprintf("%s cut to %d of %d bytes", filepath.Base(seg), cut, size))
		}
	}
}

// Case 2. The newest segment deleted (one or two of them): the file that names the newest
// segment says the log ended later. (Before: the log silently ended earlier.)
func TestDeletedNewestSegmentRefused(t *testing.T) {
	for _, n := range []int{1, 2} {
		m := vfs.NewMem()
		segs := twoSegments(t, m, 300)
		newest := segs[len(segs)-1]
		for _, s := range segs[len(segs)-n:] {
			if err := m.Remove(s); err != nil {
				t.Fatal(err)
			}
		}
		wantLost(t, m, newest, fmt.Sprintf("the %d newest segments deleted", n))
	}
	// The file itself damaged is lost synced data too.
	m := vfs.NewMem()
	twoSegments(t, m, 300)
	path := filepath.Join(dir, "log", newestName)
	m.Corrupt(path, func(b []byte) []byte { b[0] ^= 1; return b })
	wantLost(t, m, path, "a damaged newest-segment file")
}

// Case 3. A flipped bit in synced records that a later synced record vouches for: lost synced
// data (it was refused as corruption before, now typed); one in a segment before the last too.
func TestBitFlipInSyncedRecordsIsLostData(t *testing.T) {
	m := vfs.NewMem()
	seg, offs, _ := syncedLog(t, m, true)
	m.Corrupt(seg, func(b []byte) []byte { b[offs[4]+11] ^= 0x20; return b })
	wantLost(t, m, seg, "a bit flipped in the last segment's synced records")

	m = vfs.NewMem()
	segs := twoSegments(t, m, 200)
	m.Corrupt(segs[0], func(b []byte) []byte { b[60] ^= 0x20; return b })
	wantLost(t, m, segs[0], "a bit flipped in an earlier segment")
}

// Case 4. A hard state that changed the term or the vote is vouched for by a synced record as
// soon as Sync returns: a damaged one is lost synced data, never cut (which would revert the
// vote). One that changed only the commit index may still be cut as torn when it is the last
// record (nothing vouches for the last sync): the term and vote stay.
func TestDamagedVoteRefused(t *testing.T) {
	write := func(t *testing.T, last *pb.HardState) (*vfs.Mem, string, int64) {
		m := vfs.NewMem()
		a := mustOpen(t, m, opts())
		appendRange(t, a, 1, 5, 1) // term 1, vote 1
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := a.Append(last, nil); err != nil {
			t.Fatal(err)
		}
		if err := a.Sync(); err != nil {
			t.Fatal(err)
		}
		a.settle(a.current())
		s := a.current()
		end := s.end - syncedRecordBytes // the hard state ends before vouchVote's record
		if s.vouched != end || s.voteEnd != end {
			end = s.end // no vouching record: the hard state is the last record
		}
		a.Close()
		return m, s.path, end
	}
	term, vote, commit := uint64(2), uint64(3), uint64(5)
	m, seg, end := write(t, &pb.HardState{Term: &term, Vote: &vote, Commit: &commit})
	m.Corrupt(seg, func(b []byte) []byte { b[end-2] ^= 0x08; return b })
	wantLost(t, m, seg, "a damaged hard state that changed the vote")

	m, seg, end = write(t, hs(1, 5))
	m.Corrupt(seg, func(b []byte) []byte { b[end-2] ^= 0x08; return b })
	a, err := Open(m, dir, opts())
	if err != nil {
		t.Fatalf("a damaged last hard state that changed only the commit index: %v", err)
	}
	st, _, _ := a.InitialState()
	if st.GetTerm() != 1 || st.GetVote() != 1 {
		t.Fatalf("term %d vote %d after the cut, want 1 and 1", st.GetTerm(), st.GetVote())
	}
	a.Close()
}

// A hard state whose commit index lies beyond the log (and the snapshot): the entries it names
// were synced before it, so they were lost.
func TestCommitBeyondLogRefused(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 5, 1)
	if err := a.Append(hs(1, 9), nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	seg := a.current().path
	a.Close()
	wantLost(t, m, seg, "a commit index beyond the log")
}

// A crash inside a roll, at each of its syncs (the one that fails drops what it would have
// made durable, and the power goes), never reads as lost synced data: the member starts with
// everything that was durable.
func TestCrashInsideARollStarts(t *testing.T) {
	for n := 1; n <= 6; n++ {
		for _, mode := range allCrashModes {
			for seed := uint64(1); seed <= 5; seed++ {
				m := vfs.NewMem()
				a := mustOpen(t, m, opts())
				next := uint64(1)
				for a.current() == nil || a.current().end < opts().SegmentBytes-200 {
					appendRange(t, a, next, next+4, 1)
					next += 5
					if err := a.Sync(); err != nil {
						t.Fatal(err)
					}
				}
				durable := a.DurableIndex()
				segs := len(segFiles(m))
				m.InjectSyncError(n, syscall.EIO)
				for range 3 { // rolls, then writes into the new segment
					if err := a.Append(hs(1, next+19), appendEntries(next, next+19)); err != nil {
						break
					}
					next += 20
					if a.Sync() != nil {
						break
					}
					durable = a.DurableIndex()
				}
				if len(segFiles(m)) == segs && a.Err() == nil {
					t.Fatalf("sync %d: no roll happened", n)
				}
				m.Crash(rand.New(rand.NewPCG(seed, uint64(n))), mode)
				m.InjectSyncError(0, nil)
				a, err := Open(m, dir, opts())
				if err != nil {
					t.Fatalf("sync %d failed, crash mode %d, seed %d: %v", n, mode, seed, err)
				}
				if last, _ := a.LastIndex(); last < durable {
					t.Fatalf("sync %d failed, crash mode %d: last index %d, %d was durable", n, mode, last, durable)
				}
				a.Close()
			}
		}
	}
}

func appendEntries(lo, hi uint64) []*pb.Entry {
	var ents []*pb.Entry
	for i := lo; i <= hi; i++ {
		ents = append(ents, entry(i, 1))
	}
	return ents
}

// Verify refuses an IDENTITY file that fails its checksum (it said "ok" before).
func TestVerifyRefusesDamagedIdentity(t *testing.T) {
	m := vfs.NewMem()
	a := mustOpen(t, m, opts())
	appendRange(t, a, 1, 3, 1)
	_ = a.Sync()
	a.Close()
	m.Corrupt(filepath.Join(dir, "IDENTITY"), func(b []byte) []byte { b[3] ^= 1; return b })
	if _, err := Verify(m, dir, io.Discard); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "IDENTITY") {
		t.Fatalf("Verify of a damaged IDENTITY: %v", err)
	}
}
