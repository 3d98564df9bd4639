package consensus

import (
	"slices"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Tests of the apply rule (apply.go): each safety condition of applying while a sync runs, shown
// by a schedule that breaks the rule if the condition is dropped. TestCoreAppliesDurableEntriesWhileSyncing
// and TestLeaderAppliesWhatCommitsDuringItsSync (core_test.go) show the bound and the
// exactly-once skip.

// stepAppend steps into c an append from leader from in term, after entry prev of term prevTerm,
// committing commit, with entries of the append's term at the given indexes (a conf change at
// confAt), and runs Process. It returns the sync the append left pending, taken, after a
// second Process (the driver's, once the sync runs).
func stepAppend(t *testing.T, c *Core, h Handler, from, term, prev, prevTerm, commit, confAt uint64, idx ...uint64) func() error {
	t.Helper()
	m := &pb.Message{Type: pb.MsgApp.Enum(), From: new(from), To: new(c.cfg.ID), Term: new(term),
		LogTerm: new(prevTerm), Index: new(prev), Commit: new(commit)}
	for _, i := range idx {
		e := &pb.Entry{Term: new(term), Index: new(i), Data: []byte("x")}
		if i == confAt {
			data, err := proto.Marshal(&pb.ConfChange{Type: pb.ConfChangeAddNode.Enum(), NodeId: new(uint64(3))})
			if err != nil {
				t.Fatal(err)
			}
			e.Type, e.Data = pb.EntryConfChange.Enum(), data
		}
		m.Entries = append(m.Entries, e)
	}
	if err := c.Step(m); err != nil {
		t.Fatal(err)
	}
	if err := c.Process(h); err != nil {
		t.Fatal(err)
	}
	job := c.TakeSync()
	if job == nil {
		t.Fatalf("no sync pending after an append of %v", idx)
	}
	if err := c.Process(h); err != nil {
		t.Fatal(err)
	}
	return job
}

// endSync reports the sync job's result and drives c until raft has nothing more to do.
func endSync(t *testing.T, c *Core, h Handler, job func() error) {
	t.Helper()
	c.SyncDone(job())
	if err := drive(c, h); err != nil {
		t.Fatal(err)
	}
}

// A committed, durable conf change waits for the end of the Ready that carries it, and the
// entries after it with it.
func TestConfChangeWaitsForItsReady(t *testing.T) {
	c, _, a := newSyncCore(t, 3)
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	endSync(t, c, a, stepAppend(t, c, a, 2, 2, 3, 1, 3, 4, 4, 5)) // a conf change at 4, then 5: synced
	job := stepAppend(t, c, a, 2, 2, 5, 2, 5, 0, 6)               // commits 4 and 5, durable before this Ready
	if c.Applied() != 3 {
		t.Fatalf("applied %d while the sync of entry 6 runs, want 3: the conf change at 4 waits for its Ready", c.Applied())
	}
	endSync(t, c, a, job)
	if c.Applied() != 5 || len(a.violations) > 0 || !slices.Equal(a.applied, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("applied %v (violations %v), want 1…5 once each", a.applied, a.violations)
	}
}

// Entries that a Ready rewrites are not applied before its sync, though this member had synced
// its own entries at those indexes: the Ready commits the new ones.
func TestRewrittenEntriesWaitForTheirSync(t *testing.T) {
	c, _, a := newSyncCore(t, 3)
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	endSync(t, c, a, stepAppend(t, c, a, 2, 2, 3, 1, 3, 0, 4, 5)) // leader 2, term 2: 4 and 5 synced, not committed
	job := stepAppend(t, c, a, 1, 3, 3, 1, 5, 0, 4, 5)            // leader 1, term 3, replaces and commits them
	if c.Applied() != 3 {
		t.Fatalf("applied %d while the sync of the rewritten entries 4 and 5 runs, want 3", c.Applied())
	}
	endSync(t, c, a, job)
	if c.Applied() != 5 || len(a.violations) > 0 || a.terms[4] != 3 || a.terms[5] != 3 {
		t.Fatalf("applied %v of terms %v (violations %v), want 4 and 5 of term 3, once each, after their sync",
			a.applied, a.terms, a.violations)
	}
}

// A leader deposed while its sync runs applies nothing more from its log: the new leader's append
// rewrote raft's entry past the commit index, which the storage still holds as this member
// wrote it, and committed the new one.
func TestDeposedLeaderAppliesNothingFromItsLogWhileSyncing(t *testing.T) {
	c, st, a := newSyncCore(t, 1)
	term := electLeader(t, c, a)
	last, _ := st.LastIndex() // the leader's empty entry
	ackFrom(t, c, term, 2, last)
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	if err := c.Propose([]byte("x")); err != nil { // x: synced here, acknowledged by nobody
		t.Fatal(err)
	}
	if err := drive(c, a); err != nil {
		t.Fatal(err)
	}
	x := last + 1
	if err := c.Propose([]byte("y")); err != nil { // y: its sync runs
		t.Fatal(err)
	}
	if err := c.Process(a); err != nil {
		t.Fatal(err)
	}
	job := c.TakeSync()
	if job == nil {
		t.Fatal("no sync pending after a proposal")
	}
	// Member 2, leader of the next term, replaces x with an entry of its own and commits it.
	next := term + 1
	if err := c.Step(&pb.Message{Type: pb.MsgApp.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(next),
		LogTerm: new(term), Index: new(last), Commit: new(x),
		Entries: []*pb.Entry{{Term: new(next), Index: new(x), Data: []byte("x2")}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Process(a); err != nil {
		t.Fatal(err)
	}
	if c.Applied() != last {
		t.Fatalf("applied %d while deposed, want %d: entry %d in the storage is not the committed one", c.Applied(), last, x)
	}
	endSync(t, c, a, job)
	if c.Applied() != x || a.terms[x] != next || len(a.violations) > 0 {
		t.Fatalf("applied %v of terms %v (violations %v), want %d of term %d", a.applied, a.terms, a.violations, x, next)
	}
}
