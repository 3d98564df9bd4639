package replica

import (
	"strings"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// transferLeader asks the replica for transfer-leader on conn and returns what it answered
// there at once (ok false: nothing yet, the request is pending).
func (h *harness) transferLeader(conn ConnID, req wire.AdminRequest) (wire.Status, wire.AdminResponse, bool) {
	h.t.Helper()
	req.Op = wire.AdminTransferLeader
	h.request(conn, wire.ClientMsg{Kind: wire.CAdmin, RequestID: 77, Payload: wire.EncodeAdmin(req)})
	return h.adminAnswer(conn)
}

// adminAnswer returns the admin answer sent to conn, if any.
func (h *harness) adminAnswer(conn ConnID) (wire.Status, wire.AdminResponse, bool) {
	h.t.Helper()
	got := h.out.take(conn)
	switch {
	case len(got) == 0:
		return 0, wire.AdminResponse{}, false
	case len(got) > 1 || got[0].Kind != wire.CAdminResponse:
		h.t.Fatalf("answers to connection %d: %+v", conn, got)
	}
	resp, err := wire.DecodeAdminResponse(got[0].Payload)
	if err != nil {
		h.t.Fatal(err)
	}
	return got[0].Status, resp, true
}

// lastIndex is the index of the leader's last entry, as it sent it to member 1.
func (h *harness) lastSent() uint64 {
	var last uint64
	for _, m := range h.out.takeRaft() {
		if m.GetType() == pb.MsgApp {
			last = max(last, m.GetIndex()+uint64(len(m.GetEntries())))
		}
	}
	return last
}

// The leader refuses what cannot take over, with the reason: an id that is no member, a voter
// it has not heard from, a voter too far behind; asked to hand over to itself it answers that
// it leads already; a follower redirects.
func TestTransferLeaderRefusals(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.request(5, wire.ClientMsg{Kind: wire.CAdmin, RequestID: 1,
		Payload: wire.EncodeAdmin(wire.AdminRequest{Op: wire.AdminTransferLeader, ID: 1})})
	if m := h.only(5); m.Kind != wire.CRedirect {
		t.Fatalf("a follower answered transfer-leader with %+v, want a redirect", m)
	}
	h.lead()
	for _, c := range []struct {
		req    wire.AdminRequest
		status wire.Status
		says   string
	}{
		{wire.AdminRequest{ID: 9}, wire.StatusRejected, "member 9 is not a member"},
		{wire.AdminRequest{ID: 2}, wire.StatusUnavailable, "member 2 was not heard from"},
		{wire.AdminRequest{ID: 0}, wire.StatusOK, "member 0 leads already"},
	} {
		st, resp, ok := h.transferLeader(5, c.req)
		if !ok || st != c.status || !strings.Contains(resp.Error+resp.Already, c.says) {
			t.Fatalf("transfer-leader %+v answered %v %+v (answered: %v), want %v saying %q", c.req, st, resp, ok, c.status, c.says)
		}
		if st == wire.StatusOK && (resp.Status == nil || resp.Status.Leader != 0) {
			t.Fatalf("transfer-leader to itself answered without the leader: %+v", resp)
		}
	}
	// Member 1 falls behind by more than a transfer allows: refused for now, with the figure.
	id := sessionID(1)
	h.open(6, id)
	for seq := range wire.Seq(transferLagMax + 20) {
		h.request(6, command(id, seq+1))
	}
	h.step(pb.MsgHeartbeatResp, 1, &pb.Message{}) // heard from lately, just not acknowledging
	st, resp, ok := h.transferLeader(5, wire.AdminRequest{ID: 1})
	if !ok || st != wire.StatusUnavailable || !strings.Contains(resp.Error, "member 1 is not caught up") {
		t.Fatalf("transfer-leader to a member %d entries behind answered %v %+v", transferLagMax+20, st, resp)
	}
	if h.r.Summary().Role != service.Leader {
		t.Fatalf("a refused transfer moved leadership: %+v", h.r.Summary())
	}
}

// The answer waits until the target leads: the leader steps down on the target's vote request
// (a step-down fails pending membership changes, never the transfer), and answers OK once it hears
// from the target as leader of the later term. A second request meanwhile is told to try again.
func TestTransferLeaderAnsweredOnceTheTargetLeads(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.lead()
	id := sessionID(1)
	h.open(7, id)
	h.ackAll()
	last := h.r.core.LastIndex()
	if _, _, ok := h.transferLeader(5, wire.AdminRequest{ID: 1}); ok {
		t.Fatal("transfer-leader answered before the target leads")
	}
	timeoutNow := false
	for _, m := range h.out.takeRaft() {
		timeoutNow = timeoutNow || m.GetType() == pb.MsgTimeoutNow && m.GetTo() == RaftID(1)
	}
	if !timeoutNow {
		t.Fatal("no MsgTimeoutNow to the caught-up target")
	}
	if st, resp, ok := h.transferLeader(6, wire.AdminRequest{Auto: true}); !ok || st != wire.StatusUnavailable ||
		!strings.Contains(resp.Error, "under way") {
		t.Fatalf("a second transfer meanwhile answered %v %+v", st, resp)
	}
	// A command meanwhile is held (raft would drop it), not sent away with no leader to go to.
	h.request(7, command(id, 1))
	if got := h.out.take(7); len(got) > 0 {
		t.Fatalf("a command during the transfer was answered at once: %+v", got)
	}
	// The target campaigns in the next term: the leader votes for it and steps down.
	h.term++
	h.step(pb.MsgVote, 1, &pb.Message{Index: new(last), LogTerm: new(h.term - 1), Context: []byte("CampaignTransfer")})
	if s := h.r.Summary(); s.Role == service.Leader {
		t.Fatalf("still leading after the target's vote request: %+v", s)
	}
	// The held command and the session go to the member this one voted for: no leader is
	// known yet, and the target is the likely one.
	got := h.out.take(7)
	if len(got) == 0 {
		t.Fatal("the held command was not redirected at the step-down")
	}
	for _, m := range got {
		if m.Kind != wire.CRedirect || m.LeaderID != 1 || m.LeaderAddr != "client-1" || m.Term != h.term {
			t.Fatalf("at the step-down, redirected as %+v; want to member 1 (voted for) in term %d", m, h.term)
		}
	}
	if _, _, ok := h.adminAnswer(5); ok {
		t.Fatal("answered at the step-down, before the target was seen leading")
	}
	// Its first heartbeat as leader: answered.
	h.step(pb.MsgHeartbeat, 1, &pb.Message{Commit: new(last)})
	st, resp, ok := h.adminAnswer(5)
	if !ok || st != wire.StatusOK || resp.Status == nil || resp.Status.Leader != 1 || resp.Status.Term != h.term {
		t.Fatalf("once the target leads, transfer-leader answered %v %+v (%v)", st, resp.Status, ok)
	}
}

// A target that never takes over: "outcome unknown" after the wait the answer states, and this
// member leads on (raft gave the transfer up).
func TestTransferLeaderOutcomeUnknownAfterTheWait(t *testing.T) {
	h := newHarness(t, 3, nil)
	h.lead()
	h.ackAll()
	if _, _, ok := h.transferLeader(5, wire.AdminRequest{Auto: true}); ok {
		t.Fatal("transfer-leader --auto answered at once")
	}
	wait := h.r.transferWait().String()
	answered := false
	for range transferWaitElections*h.r.cfg.ElectionTicks + 1 {
		h.step(pb.MsgHeartbeatResp, 1, &pb.Message{}) // alive, but never campaigns
		h.r.Tick()
		h.drive()
		if st, resp, ok := h.adminAnswer(5); ok {
			if st != wire.StatusUnavailable || !strings.Contains(resp.Error, "outcome unknown") ||
				!strings.Contains(resp.Error, "within "+wait) || !strings.Contains(resp.Error, "member 1") {
				t.Fatalf("a transfer that did not happen answered %v %+v", st, resp)
			}
			answered = true
			break
		}
	}
	if !answered {
		t.Fatalf("no answer after %s", wait)
	}
	if h.r.Summary().Role != service.Leader {
		t.Fatalf("not leading after raft gave the transfer up: %+v", h.r.Summary())
	}
}

// --auto with no other voter is refused; with none that can take over, "not now" and why.
func TestTransferLeaderAutoWithoutATarget(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.lead()
	if st, resp, ok := h.transferLeader(5, wire.AdminRequest{Auto: true}); !ok || st != wire.StatusRejected ||
		!strings.Contains(resp.Error, "the only voter") {
		t.Fatalf("--auto alone answered %v %+v", st, resp)
	}
	// Member 2 never heard from, member 1 heard but too far behind.
	h = newHarness(t, 3, nil)
	h.lead()
	id := sessionID(1)
	h.open(6, id)
	for seq := range wire.Seq(transferLagMax + 20) {
		h.request(6, command(id, seq+1))
	}
	h.step(pb.MsgHeartbeatResp, 1, &pb.Message{})
	if st, resp, ok := h.transferLeader(5, wire.AdminRequest{Auto: true}); !ok || st != wire.StatusUnavailable ||
		!strings.Contains(resp.Error, "no other voter can take over now (member 1 is not caught up") {
		t.Fatalf("--auto with no voter able to take over answered %v %+v", st, resp)
	}
}
