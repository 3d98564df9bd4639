package archive

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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

// compactUntilRecycled appends, syncs, snapshots and reclaims in rounds of ten entries until
// compaction released a segment to become the spare (at most 200 rounds; the test fails if none
// was), and returns the segments as they were before the round that released it.
func compactUntilRecycled(t *testing.T, a *Archive, m *vfs.Mem) (before []string) {
	t.Helper()
	spare := filepath.Join(dir, "log", spareName)
	cs := &pb.ConfState{Voters: []uint64{1}}
	next := uint64(1)
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
	return before
}
