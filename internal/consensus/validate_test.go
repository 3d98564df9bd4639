package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// testCluster is three cores over memory storage, raft ids 1–3, with an honest network that
// delivers through Step and fails the test if Step refuses an honest message.
type testCluster struct {
	t     testing.TB
	cores map[uint64]*Core
	sinks map[uint64]*sink
	lax   bool // refusals are ignored (a cluster a forged message reached unvalidated)
}

func newTestCluster(t testing.TB) *testCluster {
	tc := &testCluster{t: t, cores: map[uint64]*Core{}, sinks: map[uint64]*sink{}}
	for id := uint64(1); id <= 3; id++ {
		c, err := New(Config{ID: id, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16,
			MaxUncommittedBytes: 1 << 20}, memStorage{raft.NewMemoryStorage()}, []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		tc.cores[id] = c
		tc.sinks[id] = &sink{failed: map[uint64]error{}, ready: map[uint64]uint64{}}
	}
	meet(tc.cores)
	for id := uint64(1); id <= 3; id++ {
		tc.drive(id)
	}
	// Member 1 campaigns and wins; then a few entries commit everywhere.
	if err := tc.cores[1].rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	tc.settle()
	if tc.cores[1].State().Role != raft.StateLeader {
		t.Fatalf("member 1 did not win: %v", tc.cores[1].State())
	}
	for i := range 5 {
		if err := tc.cores[1].Propose(fmt.Appendf(nil, "cmd %d", i)); err != nil {
			t.Fatal(err)
		}
		tc.settle()
	}
	return tc
}

func (tc *testCluster) drive(id uint64) {
	tc.t.Helper()
	if err := drive(tc.cores[id], tc.sinks[id]); err != nil {
		tc.t.Fatalf("member %d: %v", id, err)
	}
}

// settle delivers every message until none is left (heartbeats included: a tick round first).
func (tc *testCluster) settle() {
	tc.t.Helper()
	for range 100 {
		moved := false
		for _, id := range tc.ids() {
			tc.drive(id)
			msgs := tc.sinks[id].sent
			tc.sinks[id].sent = nil
			for _, m := range msgs {
				to, ok := tc.cores[m.GetTo()]
				if !ok {
					continue // a member taken out of the test (removed, or down)
				}
				moved = true
				if err := to.Step(m); err != nil && !tc.lax {
					tc.t.Fatalf("an honest %s from %d to %d was refused: %v", m.GetType(), m.GetFrom(), m.GetTo(), err)
				}
			}
		}
		if !moved {
			return
		}
	}
	if !tc.lax {
		tc.t.Fatalf("the cluster did not settle")
	}
}

// round ticks every member once and settles.
func (tc *testCluster) round() {
	for _, id := range tc.ids() {
		tc.cores[id].Tick()
	}
	tc.settle()
}

// ids are the cluster's raft ids, in order.
func (tc *testCluster) ids() []uint64 {
	return slices.Sorted(maps.Keys(tc.cores))
}

func (tc *testCluster) last(id uint64) uint64 {
	l, _ := tc.cores[id].storage.LastIndex()
	return l
}

// panics reports what f panicked with, or "".
func panics(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	f()
	return ""
}

func msg(t pb.MessageType, from, to, term uint64) *pb.Message {
	return &pb.Message{Type: t.Enum(), From: new(from), To: new(to), Term: new(term)}
}

func ctx8(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func confState(voters ...uint64) *pb.ConfState { return &pb.ConfState{Voters: voters} }

// Each forged message makes raft v3.7 panic when stepped as is (shown on one cluster), and is
// refused by Step without a panic (on another); that cluster then goes on committing, with no
// leader or term change.
func TestStepRefusesWhatRaftPanicsOn(t *testing.T) {
	type forge func(tc *testCluster) (target uint64, ms []*pb.Message)
	cases := []struct {
		name  string
		forge forge
		panic string // what raft panics with (a substring)
	}{
		{"heartbeat committing beyond the follower's log", func(tc *testCluster) (uint64, []*pb.Message) {
			term := tc.cores[2].State().Term
			m := msg(pb.MsgHeartbeat, 1, 2, term)
			m.Commit = new(uint64(1_000_000_000))
			return 2, []*pb.Message{m}
		}, "tocommit(1000000000) is out of range"},
		{"heartbeat of a later term committing one past the log", func(tc *testCluster) (uint64, []*pb.Message) {
			m := msg(pb.MsgHeartbeat, 3, 2, tc.cores[2].State().Term+1)
			m.Commit = new(tc.last(2) + 1)
			return 2, []*pb.Message{m}
		}, "is out of range [lastIndex"},
		{"acknowledgement beyond the leader's log", func(tc *testCluster) (uint64, []*pb.Message) {
			m := msg(pb.MsgAppResp, 2, 1, tc.cores[1].State().Term)
			m.Index = new(tc.last(1) + 10)
			return 1, []*pb.Message{m}
		}, "need non-empty snapshot"},
		{"heartbeat response with a 3-byte context", func(tc *testCluster) (uint64, []*pb.Message) {
			m := msg(pb.MsgHeartbeatResp, 2, 1, tc.cores[1].State().Term)
			m.Context = []byte{1, 2, 3}
			return 1, []*pb.Message{m}
		}, "index out of range"},
		{"heartbeat responses acknowledging reads never queued", func(tc *testCluster) (uint64, []*pb.Message) {
			term := tc.cores[1].State().Term
			a, b := msg(pb.MsgHeartbeatResp, 2, 1, term), msg(pb.MsgHeartbeatResp, 3, 1, term)
			a.Context, b.Context = ctx8(5), ctx8(5)
			return 1, []*pb.Message{a, b}
		}, "out of range"},
		{"empty proposal", func(tc *testCluster) (uint64, []*pb.Message) {
			return 1, []*pb.Message{msg(pb.MsgProp, 2, 1, 0)}
		}, "stepped empty MsgProp"},
		{"snapshot whose configuration has no voter", func(tc *testCluster) (uint64, []*pb.Message) {
			term := tc.cores[2].State().Term
			m := msg(pb.MsgSnap, 1, 2, term)
			m.Snapshot = &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(tc.last(2) + 5), Term: new(term),
				ConfState: &pb.ConfState{Voters: []uint64{}, Learners: []uint64{2}}}}
			return 2, []*pb.Message{m}
		}, "unable to restore config"},
		{"snapshot whose configuration lists a voter twice", func(tc *testCluster) (uint64, []*pb.Message) {
			term := tc.cores[2].State().Term
			m := msg(pb.MsgSnap, 1, 2, term)
			m.Snapshot = &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(tc.last(2) + 5), Term: new(term),
				ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{3}}}}
			return 2, []*pb.Message{m}
		}, "not equivalent"},
		{"append with a gap in its entries, then its commit", func(tc *testCluster) (uint64, []*pb.Message) {
			term, last := tc.cores[2].State().Term, tc.last(2)
			m := msg(pb.MsgApp, 1, 2, term)
			m.Index, m.LogTerm, m.Commit = new(last), new(term), new(last)
			m.Entries = []*pb.Entry{{Index: new(last + 1), Term: new(term)}, {Index: new(last + 5), Term: new(term)}}
			return 2, []*pb.Message{m}
		}, "slice bounds out of range"},
	}
	for _, k := range cases {
		t.Run(k.name, func(t *testing.T) {
			// Unvalidated, raft panics (the hole).
			raw := newTestCluster(t)
			raw.lax = true
			target, ms := k.forge(raw)
			got := panics(func() {
				for _, m := range ms {
					_ = raw.cores[target].rn.Step(m)
					_ = drive(raw.cores[target], raw.sinks[target])
				}
				raw.round()
			})
			if !strings.Contains(got, k.panic) {
				t.Fatalf("raft stepping the forged message as is: panic %q, want one with %q", got, k.panic)
			}
			// Through Step: refused, no panic, the cluster goes on.
			tc := newTestCluster(t)
			target, ms = k.forge(tc)
			leader, term := tc.cores[1].State().Leader, tc.cores[1].State().Term
			if got := panics(func() {
				for _, m := range ms {
					if err := tc.cores[target].Step(m); !errors.Is(err, ErrInvalidMessage) {
						t.Errorf("Step(%s) = %v, want ErrInvalidMessage", m.GetType(), err)
					}
					tc.drive(target)
				}
				for range 5 {
					tc.round()
				}
				if err := tc.cores[1].Propose([]byte("after")); err != nil {
					t.Errorf("propose after the forged message: %v", err)
				}
				tc.settle()
				tc.round()
			}); got != "" {
				t.Fatalf("panic after Step refused the message: %s", got)
			}
			for id, c := range tc.cores {
				if st := c.State(); st.Leader != leader || st.Term != term {
					t.Fatalf("member %d sees leader %d term %d, was %d/%d", id, st.Leader, st.Term, leader, term)
				}
				if c.Status().GetCommit() != tc.last(1) {
					t.Fatalf("member %d committed %d, the leader's log ends at %d", id, c.Status().GetCommit(), tc.last(1))
				}
			}
		})
	}
}

// Honest traffic of every kind passes: elections, appends, heartbeats with reads, a snapshot to
// a member that fell behind, responses — settle fails the test on any refusal.
func TestStepPassesHonestTraffic(t *testing.T) {
	tc := newTestCluster(t)
	for i := range 20 {
		if _, err := tc.cores[1].ReadIndex(); err != nil {
			t.Fatal(err)
		}
		if err := tc.cores[1].Propose(fmt.Appendf(nil, "x%d", i)); err != nil {
			t.Fatal(err)
		}
		tc.round()
	}
	if got := len(tc.sinks[1].ready); got != 20 {
		t.Fatalf("%d reads served, want 20", got)
	}
	// Member 3 misses appends; the leader compacts; member 3 gets a snapshot.
	lost := tc.cores[3]
	delete(tc.cores, 3)
	for i := range 10 {
		_ = tc.cores[1].Propose(fmt.Appendf(nil, "y%d", i))
		for id := uint64(1); id <= 2; id++ {
			tc.drive(id)
		}
		for _, s := range tc.sinks {
			kept := s.sent[:0]
			for _, m := range s.sent {
				if m.GetTo() != 3 && m.GetFrom() != 3 {
					kept = append(kept, m)
				}
			}
			s.sent = kept
		}
		tc.settleWithout(3)
	}
	applied := tc.cores[1].Applied()
	if _, err := tc.cores[1].CreateSnapshot(applied, tc.cores[1].ConfState(), []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := tc.cores[1].SnapshotDone(nil); err != nil {
		t.Fatal(err)
	}
	ms := tc.cores[1].storage.(watchedStorage).Storage.(memStorage)
	if err := ms.Compact(applied); err != nil {
		t.Fatal(err)
	}
	tc.cores[3] = lost
	tc.sinks[3].sent = nil
	for range 10 {
		tc.round()
	}
	if got, want := tc.cores[3].Status().GetCommit(), tc.cores[1].Status().GetCommit(); got != want {
		t.Fatalf("member 3 committed %d after the snapshot, leader %d", got, want)
	}
	// Leadership moves to member 2 (MsgTimeoutNow, then votes without pre-vote).
	tc.cores[1].TransferLeadership(2)
	tc.settle()
	for range 3 {
		tc.round()
	}
	if tc.cores[2].State().Role != raft.StateLeader {
		t.Fatalf("member 2 did not take over: %v", tc.cores[2].State())
	}
}

// settleWithout settles the members other than skip, dropping what goes to or from it.
func (tc *testCluster) settleWithout(skip uint64) {
	tc.t.Helper()
	for range 100 {
		moved := false
		for id, s := range tc.sinks {
			if id == skip {
				s.sent = nil
				continue
			}
			tc.drive(id)
			msgs := s.sent
			s.sent = nil
			for _, m := range msgs {
				if m.GetTo() == skip {
					continue
				}
				moved = true
				if err := tc.cores[m.GetTo()].Step(m); err != nil {
					tc.t.Fatalf("an honest %s from %d to %d was refused: %v", m.GetType(), m.GetFrom(), m.GetTo(), err)
				}
			}
		}
		if !moved {
			return
		}
	}
}

// Message types no honest member sends over the network, and malformed addressing, are refused
// before raft sees them (a negative type used to panic raft.IsLocalMsg in Step itself).
func TestStepRefusesWhatNoMemberSends(t *testing.T) {
	if got := panics(func() { raft.IsLocalMsg(pb.MessageType(-1)) }); got == "" {
		t.Fatalf("raft.IsLocalMsg of a negative type no longer panics: the first check may be simplified")
	}
	tc := newTestCluster(t)
	term := tc.cores[1].State().Term
	withEntry := func(m *pb.Message) *pb.Message {
		m.Entries = []*pb.Entry{{Data: []byte("ctx")}}
		return m
	}
	for _, m := range []*pb.Message{
		msg(pb.MessageType(-1), 2, 1, term),
		msg(pb.MessageType(99), 2, 1, term),
		msg(pb.MsgHup, 2, 1, term),
		msg(pb.MsgBeat, 2, 1, term),
		msg(pb.MsgCheckQuorum, 2, 1, term),
		msg(pb.MsgUnreachable, 2, 1, term),
		msg(pb.MsgSnapStatus, 2, 1, term),
		msg(pb.MsgStorageAppendResp, 2, 1, term),
		withEntry(msg(pb.MsgProp, 2, 1, 0)),
		withEntry(msg(pb.MsgReadIndex, 2, 1, term)),
		withEntry(msg(pb.MsgReadIndexResp, 1, 2, term)),
		msg(pb.MsgTransferLeader, 2, 1, term),
		msg(pb.MsgForgetLeader, 1, 2, term),
		msg(pb.MsgHeartbeat, 1, 2, 0),    // term 0: raft would take it for a local message
		msg(pb.MsgVote, 2, 1, termMax+1), // no honest cluster gets there; Term+1 would wrap
		msg(pb.MsgHeartbeat, 2, 2, term), // from itself
		msg(pb.MsgHeartbeat, 0, 2, term), // from nobody
		{Type: pb.MsgApp.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(term), LogTerm: new(term + 1)},
		appWith(term, tc.last(2), &pb.Entry{Term: new(term)}, &pb.Entry{Term: new(term - 1)}), // terms go back
		appWith(term, tc.last(2), &pb.Entry{Term: new(term + 1)}),                             // beyond the message's term
		appWith(term, tc.last(2), &pb.Entry{Term: new(term), Type: pb.EntryConfChange.Enum(), Data: []byte{0xff}}),
		appWith(term, tc.last(2), &pb.Entry{Term: new(term), Type: pb.EntryConfChange.Enum(), Data: v1(pb.ConfChangeRemoveNode, 3)}),
		appWith(term, tc.last(2), &pb.Entry{Term: new(term), Type: pb.EntryConfChangeV2.Enum(), Data: v2(pb.ConfChangeUpdateNode, 3)}),
		appWith(term, tc.last(2), &pb.Entry{Term: new(term), Type: pb.EntryConfChangeV2.Enum(), Data: v2(pb.ConfChangeAddNode, 0)}),
		appWith(term, tc.last(2), &pb.Entry{Term: new(term), Type: pb.EntryConfChangeV2.Enum(), Data: []byte{0xff}}),
	} {
		if err := tc.cores[m.GetTo()].Step(m); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("Step(%s from %d to %d term %d) = %v, want ErrInvalidMessage", m.GetType(), m.GetFrom(), m.GetTo(), m.GetTerm(), err)
		}
	}
	if err := tc.cores[2].Step(msg(pb.MsgHeartbeat, 1, 3, term)); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("a heartbeat for member 3 stepped into member 2: %v, want ErrInvalidMessage", err)
	}
	if st := tc.cores[2].State(); st.Leader != 1 || st.Term != term {
		t.Fatalf("member 2 sees leader %d term %d", st.Leader, st.Term)
	}
}

// appWith is an append from member 1 to member 2 after index prev, its entries numbered from
// prev+1.
func appWith(term, prev uint64, ents ...*pb.Entry) *pb.Message {
	m := msg(pb.MsgApp, 1, 2, term)
	m.Index, m.LogTerm = new(prev), new(term)
	for i, e := range ents {
		e.Index = new(prev + 1 + uint64(i))
	}
	m.Entries = ents
	return m
}

// replaceWithEmpty gives member id an empty storage, as a member whose data directory was wiped
// and which bootstrapped a fresh log at its restart.
func (tc *testCluster) replaceWithEmpty(id uint64) {
	c, err := New(Config{ID: id, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16,
		MaxUncommittedBytes: 1 << 20}, memStorage{raft.NewMemoryStorage()}, []raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}, 0)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.cores[id] = c
	tc.sinks[id] = &sink{failed: map[uint64]error{}, ready: map[uint64]uint64{}}
	tc.drive(id)
}

// A member whose log lost what it acknowledged refuses the leader's heartbeats; once the refusals
// persist (lostDataRefusalsMin of them over lostDataElections election timeouts) it stops with a
// LostDataError naming its log's end, the leader, the term and the claimed commit index.
func TestLostDataStopsTheMember(t *testing.T) {
	tc := newTestCluster(t)
	tc.lax = true
	commit := tc.cores[1].Status().GetCommit()
	term := tc.cores[1].State().Term
	tc.replaceWithEmpty(2)
	wiped := tc.cores[2]
	var lost *LostDataError
	refusals := 0
	for tick := 0; tick < 100 && lost == nil; tick++ {
		for id := uint64(1); id <= 3; id++ {
			tc.cores[id].Tick()
			_ = drive(tc.cores[id], tc.sinks[id])
		}
		for id := uint64(1); id <= 3; id++ {
			msgs := tc.sinks[id].sent
			tc.sinks[id].sent = nil
			for _, m := range msgs {
				err := tc.cores[m.GetTo()].Step(m)
				switch {
				case m.GetTo() != 2 || m.GetType() != pb.MsgHeartbeat:
				case errors.As(err, &lost):
				case errors.Is(err, ErrInvalidMessage):
					refusals++
				case err != nil:
					t.Fatalf("heartbeat to the wiped member: %v", err)
				}
			}
			_ = drive(tc.cores[id], tc.sinks[id])
		}
		if lost == nil && tick < 2*10-1 && wiped.Err() != nil {
			t.Fatalf("stopped after %d ticks: %v", tick+1, wiped.Err())
		}
	}
	if lost == nil {
		t.Fatalf("the wiped member never stopped (%d refusals)", refusals)
	}
	if refusals < lostDataRefusalsMin-1 {
		t.Fatalf("stopped after %d refusals", refusals+1)
	}
	if lost.Member != 2 || lost.Leader != 1 || lost.Term != term || lost.Commit != commit || !lost.Bootstrapped || lost.Last != 3 {
		t.Fatalf("LostDataError %+v: want member 2, leader 1, term %d, commit %d, last 3, bootstrapped", *lost, term, commit)
	}
	err := drive(wiped, tc.sinks[2])
	if !errors.Is(err, ErrLostData) || !errors.Is(err, ErrStopped) {
		t.Fatalf("Process after the stop: %v, want ErrLostData", err)
	}
	for _, want := range []string{"member 1 started with an empty data directory", "the leader (member 0, term",
		fmt.Sprintf("keeps saying index %d of it is committed", commit), "lost entries it had acknowledged", "Start it again on an empty data directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%q lacks %q", err, want)
		}
	}
	if err := wiped.Propose([]byte("x")); !errors.Is(err, ErrStopped) {
		t.Fatalf("Propose after the stop: %v", err)
	}
}

// Forged heartbeats claiming the leader's id and term, one per heartbeat interval for many
// election timeouts, never stop a member whose real leader keeps reaching it: each acceptable
// heartbeat from the leader clears the suspicion. A single one never does either.
func TestForgedHeartbeatsNeverStopAMember(t *testing.T) {
	tc := newTestCluster(t)
	term := tc.cores[1].State().Term
	for range 100 {
		forged := msg(pb.MsgHeartbeat, 1, 2, term)
		forged.Commit = new(uint64(1_000_000_000))
		if err := tc.cores[2].Step(forged); !errors.Is(err, ErrInvalidMessage) || errors.Is(err, ErrLostData) {
			t.Fatalf("forged heartbeat: %v", err)
		}
		tc.round()
	}
	if err := tc.cores[2].Err(); err != nil {
		t.Fatalf("member 2 stopped: %v", err)
	}
	// One forged heartbeat from a later term while the leader is silent for a long time.
	forged := msg(pb.MsgHeartbeat, 3, 2, term+1)
	forged.Commit = new(uint64(1_000_000_000))
	if err := tc.cores[2].Step(forged); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("forged heartbeat: %v", err)
	}
	for range 100 {
		tc.cores[2].Tick()
		tc.sinks[2].sent = nil
		tc.drive(2)
	}
	if err := tc.cores[2].Err(); err != nil {
		t.Fatalf("member 2 stopped after one forged heartbeat: %v", err)
	}
}

// BenchmarkCheck measures Step's validation alone, on the two messages of every replicated
// command: an append on a follower, its acknowledgement on the leader.
func BenchmarkCheck(b *testing.B) {
	f, _ := fixtureCore(b, false)
	l, _ := fixtureCore(b, true)
	app := msg(pb.MsgApp, 1, 2, 2)
	app.Index, app.LogTerm, app.Commit = new(uint64(10)), new(uint64(2)), new(uint64(10))
	app.Entries = []*pb.Entry{{Index: new(uint64(11)), Term: new(uint64(2)), Data: make([]byte, 256)}}
	ack := msg(pb.MsgAppResp, 2, 1, 3)
	ack.Index = new(uint64(12))
	b.Run("append", func(b *testing.B) {
		for b.Loop() {
			if err := f.check(app); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ack", func(b *testing.B) {
		for b.Loop() {
			if err := l.check(ack); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// restoredCore is member id on a storage recovered from a power loss: a snapshot at index 1,
// entries of term 1 up to index 5, then entries of the terms in later, and the hard state hs.
func restoredCore(t *testing.T, id uint64, hs *pb.HardState, later ...uint64) (*Core, *sink) {
	t.Helper()
	ms := raft.NewMemoryStorage()
	if err := ms.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(1)), Term: new(uint64(1)),
		ConfState: confState(1, 2, 3)}}); err != nil {
		t.Fatal(err)
	}
	var ents []*pb.Entry
	for i := uint64(2); i <= 5; i++ {
		ents = append(ents, &pb.Entry{Index: new(i), Term: new(uint64(1))})
	}
	for i, term := range later {
		ents = append(ents, &pb.Entry{Index: new(uint64(6 + i)), Term: new(term)})
	}
	if err := ms.Append(ents); err != nil {
		t.Fatal(err)
	}
	if err := ms.SetHardState(hs); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{ID: id, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16,
		MaxUncommittedBytes: 1 << 20}, memStorage{ms}, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{failed: map[uint64]error{}, ready: map[uint64]uint64{}}
	if err := drive(c, s); err != nil {
		t.Fatal(err)
	}
	return c, s
}

// A member at term 1 that hears the leader of term 3 writes that term and the leader's entries
// in one Ready: entries first, then the hard state. A power loss inside its sync may keep the
// entries and lose the hard state (the archive then recovers entries of term 3 under a hard
// state of term 1: a cut, torn or reordered writeback of the unsynced tail). Nothing was lost
// that it had promised, and it asks for votes honestly, with its last log term beyond its
// term. Its pre-vote must reach raft: the answer carries the cluster's term, which the member
// learns from it. Refusing it as invalid (it once was: a log term above the message's term)
// told an honest member nothing and closed its connections.
func TestVoteWithALogTermBeyondItsTermIsNotRefused(t *testing.T) {
	restored, rs := restoredCore(t, 1, &pb.HardState{Term: new(uint64(1)), Commit: new(uint64(5))}, 3, 3, 3)
	peer, ps := restoredCore(t, 2, &pb.HardState{Term: new(uint64(3)), Vote: new(uint64(3)), Commit: new(uint64(5))}, 3)
	if err := restored.rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	if err := drive(restored, rs); err != nil {
		t.Fatal(err)
	}
	var asked bool
	for _, m := range rs.sent {
		if m.GetTo() != 2 || m.GetType() != pb.MsgPreVote {
			continue
		}
		asked = true
		if m.GetLogTerm() <= m.GetTerm() {
			t.Fatalf("the pre-vote has log term %d and term %d: not the case under test", m.GetLogTerm(), m.GetTerm())
		}
		if err := peer.Step(m); err != nil {
			t.Fatalf("an honest pre-vote (term %d, log term %d) was refused: %v", m.GetTerm(), m.GetLogTerm(), err)
		}
	}
	if !asked {
		t.Fatalf("the restored member sent no pre-vote to member 2: %v", rs.sent)
	}
	if err := drive(peer, ps); err != nil {
		t.Fatal(err)
	}
	for _, m := range ps.sent {
		if m.GetTo() == 1 {
			if err := restored.Step(m); err != nil {
				t.Fatalf("the answer %s was refused: %v", m.GetType(), err)
			}
		}
	}
	if err := drive(restored, rs); err != nil {
		t.Fatal(err)
	}
	if got := restored.State().Term; got != 3 {
		t.Fatalf("the restored member is at term %d, want the cluster's 3, learnt from the answer", got)
	}
}

// v1 and v2 encode a conf change of one change.
func v1(typ pb.ConfChangeType, id uint64) []byte {
	b, _ := proto.Marshal(&pb.ConfChange{Type: typ.Enum(), NodeId: new(id)})
	return b
}

func v2(typ pb.ConfChangeType, id uint64) []byte {
	b, _ := proto.Marshal(&pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(id)}}})
	return b
}
