package consensus

import (
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

// A leader's proposals that a later term's entries replaced count as failed once this member
// applies an entry of a later term; those applied, raft's own (no data) and those a snapshot
// covers do not.
func TestOwnProposalsLostInALeaderChange(t *testing.T) {
	var o ownProposals
	ent := func(term uint64, data string) *pb.Entry { return &pb.Entry{Term: &term, Data: []byte(data)} }
	// Led term 3: proposed 3 entries; raft's empty first entry and 2 of them commit.
	o.proposed(3)
	o.proposed(3)
	o.proposed(3)
	o.applied(ent(3, ""))
	o.applied(ent(3, "a"))
	o.applied(ent(3, "b"))
	if n := o.failed.Load(); n != 0 {
		t.Fatalf("failed before the term is settled: %d", n)
	}
	// Led term 5 too (1 proposal) before anything of term 4 was applied.
	o.proposed(5)
	o.applied(ent(4, "")) // settles term 3: one of its proposals never committed
	if n := o.failed.Load(); n != 1 {
		t.Fatalf("failed after term 3 settled: %d, want 1", n)
	}
	o.applied(ent(5, "c"))
	o.applied(ent(6, ""))
	if n := o.failed.Load(); n != 1 || len(o.terms) != 0 {
		t.Fatalf("failed after term 5 settled: %d (terms %v), want 1", n, o.terms)
	}
	// Term 7's proposal is hidden by a snapshot of term 7: not counted either way.
	o.proposed(7)
	o.installed(7)
	o.applied(ent(8, "d"))
	if n := o.failed.Load(); n != 1 {
		t.Fatalf("failed after a snapshot: %d, want 1", n)
	}
	// Bounded: more terms than ownTermsMax unsettled drop the oldest.
	for term := uint64(10); term < 10+2*ownTermsMax; term++ {
		o.proposed(term)
	}
	if len(o.terms) != ownTermsMax {
		t.Fatalf("%d terms followed, want at most %d", len(o.terms), ownTermsMax)
	}
}
