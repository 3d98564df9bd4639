package consensus

import (
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// freshCores starts n cores of an n-member cluster on empty logs, as founders starting for the
// first time (or wiped ones: nothing tells them apart).
func freshCores(t *testing.T, n uint64) (map[uint64]*Core, map[uint64]*sink) {
	t.Helper()
	var peers []raft.Peer
	for id := uint64(1); id <= n; id++ {
		peers = append(peers, raft.Peer{ID: id})
	}
	cores, sinks := map[uint64]*Core{}, map[uint64]*sink{}
	for id := uint64(1); id <= n; id++ {
		c, err := New(Config{ID: id, ElectionTicks: 10, HeartbeatTicks: 1, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16,
			MaxUncommittedBytes: 1 << 20}, memStorage{raft.NewMemoryStorage()}, peers, 0)
		if err != nil {
			t.Fatal(err)
		}
		cores[id], sinks[id] = c, &sink{failed: map[uint64]error{}, ready: map[uint64]uint64{}}
	}
	return cores, sinks
}

// tickAll ticks the given cores once and delivers their messages among them (to a core not in
// up, a message is lost); it returns the leader among them, if any.
func tickAll(t *testing.T, cores map[uint64]*Core, sinks map[uint64]*sink, up ...uint64) uint64 {
	t.Helper()
	for _, id := range up {
		cores[id].Tick()
	}
	for range 50 {
		moved := false
		for _, id := range up {
			if err := drive(cores[id], sinks[id]); err != nil {
				t.Fatal(err)
			}
			msgs := sinks[id].sent
			sinks[id].sent = nil
			for _, m := range msgs {
				for _, to := range up {
					if to == m.GetTo() {
						moved = true
						if err := cores[to].Step(m); err != nil {
							t.Fatalf("%s from %d to %d: %v", m.GetType(), m.GetFrom(), to, err)
						}
					}
				}
			}
		}
		if !moved {
			break
		}
	}
	for _, id := range up {
		if cores[id].State().Role == raft.StateLeader {
			return id
		}
	}
	return 0
}

// Founders on empty logs neither campaign nor vote until the others said, in their handshakes,
// that they hold nothing too; then they elect as usual.
func TestFoundersElectOnceTheyHeardEachOther(t *testing.T) {
	cores, sinks := freshCores(t, 3)
	for range 100 {
		if lead := tickAll(t, cores, sinks, 1, 2, 3); lead != 0 {
			t.Fatalf("member %d leads before any member heard from another", lead)
		}
	}
	for id, c := range cores {
		if !c.Unverified() || c.Status().GetTerm() != 1 {
			t.Fatalf("member %d: unverified %v, term %d; want unverified in term 1", id, c.Unverified(), c.Status().GetTerm())
		}
	}
	meet(cores)
	for id, c := range cores {
		if c.Unverified() {
			t.Fatalf("member %d still unverified after every other voter said it holds nothing", id)
		}
	}
	lead := uint64(0)
	for i := 0; i < 100 && lead == 0; i++ {
		lead = tickAll(t, cores, sinks, 1, 2, 3)
	}
	if lead == 0 {
		t.Fatal("no leader once the founders heard each other")
	}
}

// Two of three founders that heard each other wait one election timeout more for the third (whose
// word would be final), then form the cluster without it.
func TestTwoFoundersWaitAnElectionTimeoutForTheThird(t *testing.T) {
	cores, sinks := freshCores(t, 3)
	up := map[uint64]*Core{1: cores[1], 2: cores[2]}
	meet(up)
	for tick := 1; tick < 10; tick++ {
		tickAll(t, cores, sinks, 1, 2)
		if !cores[1].Unverified() || !cores[2].Unverified() {
			t.Fatalf("verified after %d ticks, before an election timeout (10)", tick)
		}
	}
	lead := uint64(0)
	for i := 0; i < 100 && lead == 0; i++ {
		lead = tickAll(t, cores, sinks, 1, 2)
	}
	if lead == 0 || cores[1].Unverified() || cores[2].Unverified() {
		t.Fatalf("leader %d, unverified %v %v: the two founders did not form the cluster", lead,
			cores[1].Unverified(), cores[2].Unverified())
	}
	// A peer that is not blank keeps a founder from verifying as one: member 3, on an empty log
	// now, hears that the others took part in something.
	cores[3].PeerStanding(1, cores[1].Status().GetTerm(), cores[1].Blank())
	cores[3].PeerStanding(2, cores[2].Status().GetTerm(), cores[2].Blank())
	for range 30 {
		cores[3].Tick()
	}
	if !cores[3].Unverified() {
		t.Fatal("a member on an empty log verified as a founder although its peers are not blank")
	}
}

// A wiped member follows but does not vote until a new leader repaired it and it heard the terms
// of enough others; then it votes only in terms after the highest it heard.
func TestWipedMemberVotesOnlyOnceRepaired(t *testing.T) {
	tc := newTestCluster(t)
	tc.lax = true // leader 1 still counts the wiped member as holding what it forgot
	tc.replaceWithEmpty(3)
	wiped := tc.cores[3]
	if !wiped.Unverified() {
		t.Fatal("a member restarted on an empty log is verified")
	}
	// A vote request reaches it: dropped, no answer, no term change.
	term := wiped.Status().GetTerm()
	m := msg(pb.MsgVote, 2, 3, 50)
	m.LogTerm, m.Index = new(uint64(50)), new(uint64(1000))
	if err := wiped.Step(m); err != nil {
		t.Fatal(err)
	}
	tc.drive(3)
	for _, s := range tc.sinks[3].sent {
		if s.GetType() == pb.MsgVoteResp {
			t.Fatalf("the unverified member answered a vote request: %v", s)
		}
	}
	tc.sinks[3].sent = nil
	if wiped.Status().GetTerm() != term {
		t.Fatalf("a dropped vote request moved the term from %d to %d", term, wiped.Status().GetTerm())
	}
	// Leadership moves to member 2, which repairs member 3 from scratch.
	tc.cores[1].TransferLeadership(2)
	for i := 0; i < 50 && tc.cores[2].State().Role != raft.StateLeader; i++ {
		tc.round()
	}
	if tc.cores[2].State().Role != raft.StateLeader {
		t.Fatalf("member 2 did not take over: %v", tc.cores[2].State())
	}
	for range 5 {
		tc.round()
	}
	if wiped.Status().GetCommit() != tc.cores[2].Status().GetCommit() || !wiped.Unverified() {
		t.Fatalf("commit %d (leader %d), unverified %v: want repaired and still unverified (no terms heard)",
			wiped.Status().GetCommit(), tc.cores[2].Status().GetCommit(), wiped.Unverified())
	}
	// It hears the terms of the others (n-q+1 = 2 of them): verified, with the floor at the
	// highest term heard.
	high := tc.cores[2].State().Term + 3 // say member 1 had moved on to a later term meanwhile
	wiped.PeerStanding(1, high, false)
	if !wiped.Unverified() {
		t.Fatal("verified after hearing one other of three")
	}
	wiped.PeerStanding(2, tc.cores[2].State().Term, false)
	if wiped.Unverified() || wiped.VoteFloor() != high {
		t.Fatalf("unverified %v, floor %d: want verified with floor %d", wiped.Unverified(), wiped.VoteFloor(), high)
	}
	// A vote request at the floor is dropped; one after it reaches raft.
	for _, c := range []struct {
		term     uint64
		answered bool
	}{{high, false}, {high + 1, true}} {
		m := msg(pb.MsgVote, 1, 3, c.term)
		m.LogTerm, m.Index = new(c.term), new(uint64(1000))
		m.Context = []byte("CampaignTransfer") // a transfer's vote: raft answers it although it hears a leader
		if err := wiped.Step(m); err != nil {
			t.Fatal(err)
		}
		tc.drive(3)
		answered := false
		for _, s := range tc.sinks[3].sent {
			answered = answered || s.GetType() == pb.MsgVoteResp
		}
		tc.sinks[3].sent = nil
		if answered != c.answered {
			t.Fatalf("vote request in term %d (floor %d): answered %v, want %v", c.term, high, answered, c.answered)
		}
	}
}

// A member that lost what it acknowledged answers the leader's probe at the match index with a
// rejection, which raft would answer with the same probe at once, for ever: the rejection is
// dropped, and the leader probes again only at the next heartbeat answer.
func TestLeaderDropsRejectionsOfWhatWasAcknowledged(t *testing.T) {
	tc := newTestCluster(t)
	tc.lax = true
	tc.replaceWithEmpty(3)
	for round := range 10 {
		for id := uint64(1); id <= 3; id++ {
			tc.cores[id].Tick()
		}
		if err := tc.cores[1].Propose([]byte("x")); err != nil {
			t.Fatal(err)
		}
		// Deliver by hand, counting what the leader sends member 3 in this round.
		appends := 0
		for range 50 {
			moved := false
			for id := uint64(1); id <= 3; id++ {
				tc.drive(id)
				msgs := tc.sinks[id].sent
				tc.sinks[id].sent = nil
				for _, m := range msgs {
					moved = true
					if m.GetType() == pb.MsgApp && m.GetTo() == 3 {
						appends++
					}
					_ = tc.cores[m.GetTo()].Step(m)
				}
			}
			if !moved {
				break
			}
		}
		if appends > 5 { // a storm fills every delivery pass (50)
			t.Fatalf("round %d: the leader sent member 3 %d appends (a storm)", round, appends)
		}
	}
}
