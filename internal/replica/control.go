package replica

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// The operator's controls (wire.EntryControl; container/control.go says what each does to the
// state): the leader proposes one for an admin request and answers once it is applied.
//
// Shutdown. Every member that applies the shutdown entry while it is current stops there, after
// a snapshot at its index unless Abort; the leader stops last. "Current" means two things. The
// entry is past the commit index this member started with: one it replays at a restart (it was
// committed before) was done already. And its term is this member's term: once the cluster was
// started again (a new term), a member that was down during the shutdown and catches up later
// applies the entry as history, and goes on. Once it proposed the entry, the leader proposes
// nothing more (client items are answered "unavailable", and retried by their clients after the
// restart), so nothing is committed after it in its term; it waits, bounded, until every member
// has the entry and heard that it is committed, so that the followers stop before it does (a
// follower left behind would elect a leader among the others and go on). A member stops only
// once its snapshot is written and its log synced: a restart starts from the snapshot, or
// replays the entry as done.

// ErrShutdown: the member stopped at a shutdown entry (tandem cluster shutdown). Starting it
// again resumes the cluster with nothing lost.
var ErrShutdown = errors.New("replica: the cluster was shut down")

// ShutdownError says where the member stopped.
type ShutdownError struct {
	MemberID int
	Index    uint64
	Abort    bool // without a snapshot at Index
}

func (e *ShutdownError) Error() string {
	how := fmt.Sprintf("after a snapshot at index %d", e.Index)
	if e.Abort {
		how = "without a snapshot (--abort)"
	}
	return fmt.Sprintf("%v: member %d stopped at log index %d, %s; start it again to resume", ErrShutdown, e.MemberID, e.Index, how)
}

func (e *ShutdownError) Unwrap() error { return ErrShutdown }

// stopWaitElections bounds, in election timeouts, how long a leader that applied a shutdown
// waits for every member to have the entry before it stops anyway.
const stopWaitElections = 4

// pendingControl is a control entry this leader proposed for a request, until it is applied.
type pendingControl struct {
	token     string
	conn      ConnID
	requestID uint64
}

// control checks and proposes an operator's control; it returns a refusal, or nil (the answer
// waits for the entry to be applied).
func (r *Replica) control(conn ConnID, reqID uint64, req wire.AdminRequest) *adminError {
	if v := r.ctr.ClusterVersion(); v < container.ClusterVersionControl {
		return refuse("%s needs cluster version %d, and %d is in force: every member must run a build that has it "+
			"(the leader raises the version once all do; tandem cluster status shows each member's build)",
			req.Op, container.ClusterVersionControl, v)
	}
	if r.shutdownProposed || r.stop != nil {
		return notNow("the cluster is shutting down")
	}
	if r.appliedTerm != r.core.State().Term {
		return notNow("the leader is new and has not applied what it inherited yet: try again")
	}
	if r.core.ConfChangePending() || len(r.changes) > 0 {
		// (A joint change's leave entry, which raft proposes by itself, would follow a
		// shutdown in its term.)
		return notNow("a membership change is in progress: try again once it is applied")
	}
	ctl := wire.Control{}
	switch req.Op {
	case wire.AdminSuspend:
		if r.ctr.Suspended() {
			return &adminError{status: wire.StatusOK, text: "the cluster is suspended already"}
		}
		ctl.Op = wire.ControlSuspend
	case wire.AdminResume:
		if !r.ctr.Suspended() {
			return &adminError{status: wire.StatusOK, text: "the cluster is not suspended"}
		}
		ctl.Op = wire.ControlResume
	case wire.AdminSnapshot:
		ctl.Op = wire.ControlSnapshot
	case wire.AdminShutdown:
		ctl.Op, ctl.Abort = wire.ControlShutdown, req.Abort
	case wire.AdminSetPreferred:
		ids, aerr := r.checkPreferred(req)
		if aerr != nil {
			return aerr
		}
		ctl.Op, ctl.Preferred = wire.ControlPreferred, ids
	}
	if ctl.Op == wire.ControlShutdown {
		// What clients sent before goes into the log before the shutdown; nothing after it.
		r.flush()
	}
	r.changeSeq++
	ctl.Token = fmt.Sprintf("c%d.%d", r.core.State().Term, r.changeSeq)
	if err := r.core.Propose(wire.AppendControl(nil, &ctl)); err != nil {
		return notNow("proposing %s: %v", req.Op, err)
	}
	r.log.Info("control proposed", "op", ctl.Op.String(), "abort", ctl.Abort, "preferred", ctl.Preferred)
	r.controls = append(r.controls, &pendingControl{token: ctl.Token, conn: conn, requestID: reqID})
	if ctl.Op == wire.ControlShutdown {
		r.shutdownProposed = true
	}
	return nil
}

// checkPreferred checks set-preferred-leader's members: each a member that may lead (a voter, or
// a learner that will be promoted), none twice, at most wire.MaxPreferred.
func (r *Replica) checkPreferred(req wire.AdminRequest) ([]int, *adminError) {
	bad := func(format string, args ...any) ([]int, *adminError) {
		return nil, &adminError{status: wire.StatusBadRequest, text: fmt.Sprintf(format, args...)}
	}
	switch {
	case req.Clear && len(req.IDs) > 0:
		return bad("set-preferred-leader takes members or --clear, not both")
	case !req.Clear && len(req.IDs) == 0:
		return bad("set-preferred-leader needs the members (ID[,ID]) or --clear")
	case len(req.IDs) > wire.MaxPreferred:
		return bad("%d preferred members (at most %d)", len(req.IDs), wire.MaxPreferred)
	}
	for i, id := range req.IDs {
		if slices.Contains(req.IDs[:i], id) {
			return bad("member %d is named twice", id)
		}
		m, aerr := r.target(id)
		if aerr != nil {
			if aerr.status == wire.StatusOK { // removed
				return nil, refuse("member %d was removed", id)
			}
			return nil, aerr
		}
		if m.Learner && m.StayLearner {
			return nil, refuse("member %d is a learner that stays one (it joined with --learner): it cannot lead; promote it first", id)
		}
	}
	if cur, set := r.ctr.Preferred(); set && slices.Equal(cur, req.IDs) {
		if len(cur) == 0 {
			return nil, &adminError{status: wire.StatusOK, text: "no leader is preferred already"}
		}
		return nil, &adminError{status: wire.StatusOK, text: fmt.Sprintf("the preferred leaders are %v already", cur)}
	}
	return slices.Clone(req.IDs), nil
}

// failControls answers every pending control's request: this member stopped leading before the
// entry was applied, so its outcome is unknown here.
func (r *Replica) failControls() {
	for _, p := range r.controls {
		r.answerAdmin(p.conn, p.requestID, wire.StatusUnavailable, &wire.AdminResponse{Error: "the leader changed before the " +
			"request was applied: it may yet be applied or not (outcome unknown); tandem cluster status tells"})
	}
	r.controls = nil
	r.shutdownProposed = false
}

// applyControl applies a control entry of term term at ix.
func (r *Replica) applyControl(ix, term uint64, data []byte) (bool, error) {
	ctl, err := wire.DecodeControl(data)
	if err != nil {
		return false, fmt.Errorf("%w: the entry at index %d: %w", ErrCannotApply, ix, err)
	}
	due, err := r.ctr.ApplyControl(ix, &ctl)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrCannotApply, err)
	}
	switch ctl.Op {
	case wire.ControlSuspend, wire.ControlResume:
		r.log.Info("cluster "+ctl.Op.String()+"d", "index", ix)
		if ctl.Op == wire.ControlResume && r.isLeader() {
			// No session expires for the time it was suspended: every idle clock restarts.
			now := r.clock.Now()
			for _, id := range r.ctr.SessionIDs() {
				r.lastActivity[id] = now
			}
		}
	case wire.ControlSnapshot:
		r.log.Info("snapshot requested by the operator", "index", ix)
		r.snapForced = true
	case wire.ControlPreferred:
		r.preferring = false
		r.log.Info("preferred leaders set", "preferred", ctl.Preferred, "index", ix)
	case wire.ControlShutdown:
		switch {
		case ix <= r.startCommit:
			r.log.Info("a shutdown this member did before its restart", "index", ix)
		case term != r.core.Status().GetTerm():
			r.log.Info("a shutdown of an earlier term: the cluster was started again since", "index", ix, "term", term)
		default:
			r.log.Info("shutting down: this member stops at this index", "index", ix, "abort", ctl.Abort)
			r.stop = &ShutdownError{MemberID: r.cfg.MemberID, Index: ix, Abort: ctl.Abort}
			r.stopTick, r.stopMatched = r.ticks, -1
			r.snapForced = !ctl.Abort
			if r.isLeader() {
				r.shutdownProposed = true // a leader that inherited it proposes nothing more either
			}
		}
	}
	if i := slices.IndexFunc(r.controls, func(p *pendingControl) bool { return p.token == ctl.Token }); i >= 0 && ctl.Token != "" {
		p := r.controls[i]
		r.controls = slices.Delete(r.controls, i, i+1)
		resp := &wire.AdminResponse{Index: ix}
		resp.Preferred, _ = r.ctr.Preferred()
		resp.Suspended = r.ctr.Suspended()
		r.answerAdmin(p.conn, p.requestID, wire.StatusOK, resp)
	}
	return due, nil
}

// stopAtSnapshot, for a snapshot of term term installed at ix, stops this member there if the
// snapshot was taken at a current shutdown: a member behind the leader's log gets the shutdown's
// snapshot instead of its entry.
func (r *Replica) stopAtSnapshot(ix, term uint64) {
	if r.ctr.LastShutdown() != ix || ix <= r.startCommit || term != r.core.Status().GetTerm() || r.stop != nil {
		return
	}
	r.log.Info("shutting down: the leader's snapshot is the shutdown's; this member stops at its index", "index", ix)
	r.stop = &ShutdownError{MemberID: r.cfg.MemberID, Index: ix}
	r.stopTick, r.stopMatched = r.ticks, -1
}

// checkStop returns the ShutdownError once this member may stop: it applied a current shutdown
// entry, its snapshot there is written (unless Abort), its log is synced, and, on the leader,
// every other member has the entry and was told it is committed (or the wait is over).
func (r *Replica) checkStop() error {
	s := r.stop
	if s == nil || r.snapDue != nil || r.snapJob != nil || r.snapWriting || r.core.SyncPending() ||
		!s.Abort && r.lastSnap < s.Index {
		return nil
	}
	if r.isLeader() && r.ticks-r.stopTick < stopWaitElections*r.cfg.ElectionTicks {
		all := true
		for id, pr := range r.core.Progress() {
			all = all && (id == r.self || pr.Match >= s.Index)
		}
		switch {
		case !all:
			return nil
		case r.stopMatched < 0:
			r.stopMatched = r.ticks
			return nil
		case r.ticks-r.stopMatched < 2*r.cfg.HeartbeatTicks:
			return nil // heartbeats carry the commit index to those that have the entry
		}
	}
	return s
}
