package replica

import (
	"fmt"
	"time"

	"go.etcd.io/raft/v3/tracker"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Leadership transfer on an operator's command (wire.AdminTransferLeader; tandem cluster
// transfer-leader ID | --auto).
//
// The leader checks the target — a voter of the membership, heard from lately, replicating and
// close to the end of its log — then asks raft to hand over (raft catches the target up and
// sends it MsgTimeoutNow; the target campaigns at once, without a pre-vote) and keeps the
// request pending. It answers OK once it sees the target lead in a later term: it steps down on
// the target's vote request, then hears from it as the leader. It answers "outcome unknown" when
// the target did not lead within transferWait: raft gives a transfer up after an election
// timeout, but a target that got MsgTimeoutNow may still win the election it started, so only
// the operator's next look (tandem cluster leader) tells.
//
// The pending request is kept apart from the membership changes' (Replica.changes): stepDown
// fails those — this leader can no longer see them applied — while the step-down a transfer
// causes is what the transfer waits for.

// transferLagMax: a target whose log is more than this many entries behind the leader's is
// refused ("not now"). Tighter than catchUpLagMax, which only decides when a learner may vote:
// while raft catches the target up before MsgTimeoutNow it drops every proposal (the clients are
// redirected and wait), so the target must be one or two append round trips from the end — a few
// batches at full load, never the thousand a learner may still be missing.
const transferLagMax = 100

// transferWaitElections is how many election timeouts the leader waits for the target to lead
// before it answers "outcome unknown": raft aborts the transfer after one; the second leaves
// the target's election (started by MsgTimeoutNow, at most one round trip and a sync of each
// voter's vote) time to end and the new leader's first heartbeat time to arrive.
const transferWaitElections = 2

// pendingTransfer is an operator's transfer this member started as leader and has not answered.
type pendingTransfer struct {
	conn      ConnID
	requestID uint64
	to        uint64 // the target's raft id
	toID      int    // and its member id
	term      uint64 // the term this member led in when it started the transfer
	deadline  int    // the tick at which it answers "outcome unknown"
}

// transferWait is how long the leader waits for the target to lead.
func (r *Replica) transferWait() time.Duration {
	return time.Duration(transferWaitElections*r.cfg.ElectionTicks) * r.cfg.TickInterval
}

// transferLeader serves AdminTransferLeader on the leader: it refuses, answers at once (the
// target leads already), or starts the transfer and keeps the request pending.
func (r *Replica) transferLeader(conn ConnID, reqID uint64, req wire.AdminRequest) {
	to, aerr := r.planTransfer(req)
	switch {
	case aerr != nil && aerr.status == wire.StatusOK:
		st := r.memberStatus()
		r.answerAdmin(conn, reqID, wire.StatusOK, &wire.AdminResponse{Already: aerr.text, Status: &st})
		return
	case aerr != nil:
		r.answerAdmin(conn, reqID, aerr.status, &wire.AdminResponse{Error: aerr.text})
		return
	}
	r.transfer = &pendingTransfer{conn: conn, requestID: reqID, to: to.RaftID, toID: to.ID, term: r.core.State().Term,
		deadline: r.ticks + transferWaitElections*r.cfg.ElectionTicks}
	r.log.Info("leadership transfer asked for", "member", to.ID, "raft_id", to.RaftID, "auto", req.Auto, "wait", r.transferWait())
	r.core.TransferLeadership(to.RaftID)
}

// planTransfer picks and checks the target; an adminError of StatusOK says it leads already.
func (r *Replica) planTransfer(req wire.AdminRequest) (Member, *adminError) {
	if t := r.transfer; t != nil {
		return Member{}, notNow("a leadership transfer to member %d is under way: try again", t.toID)
	}
	me, _, _ := r.memberByRaftID(r.self)
	if req.Auto {
		return r.autoTarget(me)
	}
	m, aerr := r.target(req.ID)
	switch {
	case aerr != nil && aerr.status == wire.StatusOK: // removed
		return Member{}, refuse("member %d was removed from the cluster", req.ID)
	case aerr != nil:
		return Member{}, aerr
	case m.RaftID == r.self:
		return Member{}, &adminError{status: wire.StatusOK, text: fmt.Sprintf("member %d leads already", m.ID)}
	case m.Learner:
		return Member{}, refuse("member %d is a learner: only a voter can lead (tandem cluster promote %d first)", m.ID, m.ID)
	}
	return m, r.transferable(m)
}

// autoTarget picks, for --auto, the most caught-up of the voters that could take over at once
// (transferable; the lowest raft id on a tie). Not core.ActiveFollowerBut: raft's RecentActive,
// which it reads, is cleared for every follower at each quorum check, so a request just after
// one would find no follower live (liveVoters says the same).
func (r *Replica) autoTarget(me Member) (Member, *adminError) {
	prs := r.core.Progress()
	var (
		best  Member
		found bool
		why   *adminError // why the first other voter cannot take over, if none can
	)
	for _, m := range r.Members() {
		if m.Learner || m.RaftID == r.self {
			continue
		}
		if aerr := r.transferable(m); aerr != nil {
			if why == nil {
				why = aerr
			}
			continue
		}
		if b, c := prs[best.RaftID].Match, prs[m.RaftID].Match; !found || c > b || c == b && m.RaftID < best.RaftID {
			best, found = m, true
		}
	}
	switch {
	case found:
		return best, nil
	case why == nil:
		return Member{}, refuse("member %d is the only voter: there is nobody to hand leadership to", me.ID)
	}
	return Member{}, notNow("no other voter can take over now (%s)", why.text)
}

// transferable refuses, for now, a voter that could not take over at once: not heard from in the
// last election timeout (down, or cut off: raft would wait an election timeout for nothing,
// taking no commands meanwhile), or not replicating close to the end of the log (transferLagMax).
func (r *Replica) transferable(m Member) *adminError {
	at, ok := r.heard[m.RaftID]
	if !ok || r.ticks-at > r.cfg.ElectionTicks {
		return notNow("member %d was not heard from in the last %s: it may be down or cut off; try again once it is back",
			m.ID, time.Duration(r.cfg.ElectionTicks)*r.cfg.TickInterval)
	}
	pr, ok := r.core.Progress()[m.RaftID]
	last := r.core.LastIndex()
	if !ok || pr.State != tracker.StateReplicate || pr.Match == 0 || pr.Match+transferLagMax < last {
		state := "not tracked"
		if ok {
			state = pr.State.String()
		}
		return notNow("member %d is not caught up (%d entries behind, raft state %s; a transfer needs at most %d): try again later",
			m.ID, last-min(last, pr.Match), state, transferLagMax)
	}
	return nil
}

// transferProgress answers the pending transfer once its outcome is known here: the target leads
// in a later term (OK), another member leads ("not now": the request, asked again, reaches that
// leader), or the wait ran out ("outcome unknown"). Called on every tick and change of state,
// leader or not: the leader that started the transfer answers it after stepping down.
func (r *Replica) transferProgress() {
	t := r.transfer
	if t == nil {
		return
	}
	st := r.core.State()
	switch {
	case st.Leader == t.to && st.Term > t.term, bugs.Active(bugs.TransferEarlyAnswer) && st.Term > t.term:
		r.transfer = nil
		ms := r.memberStatus()
		r.log.Info("leadership transferred", "member", t.toID, "term", st.Term)
		r.answerAdmin(t.conn, t.requestID, wire.StatusOK, &wire.AdminResponse{Status: &ms})
	case st.Leader != 0 && st.Leader != t.to && st.Term > t.term:
		r.transfer = nil
		r.answerAdmin(t.conn, t.requestID, wire.StatusUnavailable, &wire.AdminResponse{Error: fmt.Sprintf(
			"member %d took over in term %d, not member %d (an election followed the transfer): try again",
			r.IDOf(st.Leader), st.Term, t.toID)})
	case r.ticks >= t.deadline:
		r.transfer = nil
		r.log.Warn("leadership transfer: the target did not take over in time", "member", t.toID, "wait", r.transferWait())
		r.answerAdmin(t.conn, t.requestID, wire.StatusUnavailable, &wire.AdminResponse{Error: fmt.Sprintf(
			"member %d did not take over within %s (raft gives a transfer up after an election timeout, but an election "+
				"the target started may still make it lead): outcome unknown; tandem cluster leader tells", t.toID, r.transferWait())})
	}
}
