package archive

import (
	"errors"
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/vfs"
)

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
