package archive

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

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
