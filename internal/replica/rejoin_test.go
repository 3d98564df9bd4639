package replica

import (
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// A leader hands leadership over, to a live voter, when a member's handshake says it rejoined
// unverified with a log that ends before what it acknowledged to this leader; not for one that
// holds it all, nor for one that says it is verified.
func TestLeaderHandsOverForAMemberThatRejoinedLacking(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.lead()
	match, ok := h.r.core.Match(RaftID(1))
	if !ok || match <= 3 {
		t.Fatalf("member 1's match %d (%v): the harness should have it acknowledge the leader's entry", match, ok)
	}
	h.step(pb.MsgHeartbeatResp, 2, &pb.Message{}) // member 2 is alive: a target
	for _, s := range []wire.Standing{
		{Term: h.term, Last: match, Unverified: true}, // holds what it acknowledged
		{Term: h.term, Last: 3},                       // verified
	} {
		h.r.PeerStanding(RaftID(1), s)
		if to := h.r.core.Status().LeadTransferee; to != 0 {
			t.Fatalf("standing %+v: leadership handed to raft id %d", s, to)
		}
	}
	h.r.PeerStanding(RaftID(1), wire.Standing{Term: 1, Last: 3, Blank: true, Unverified: true})
	if to := h.r.core.Status().LeadTransferee; to != RaftID(2) {
		t.Fatalf("a member rejoined lacking what it acknowledged: leadership handed to raft id %d, want %d", to, RaftID(2))
	}
}
