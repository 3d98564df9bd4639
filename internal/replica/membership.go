package replica

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/consensus"
	"github.com/tandem-cluster/tandem/internal/container"
)

// Membership changes as the log carries them (consensus/confchange.go carries raft's side).
//
// A change's context is "tandem-change/1 TOKEN", then, for a change that adds a raft id the
// cluster has not recorded, a line break and that member's record (encodeRecord). The token
// (the proposing leader's term and a number of its own) tells the leader which of its requests
// the applied change answers. The founding conf changes carry only the addresses (encodeAddrs).
//
// Every member re-checks a change at apply (AdmitConfChange), from the log alone, so all refuse
// the same ones: membership changes need cluster version 4; a raft id once removed never comes
// back; a raft id the cluster has not recorded comes with its record, one per change; only a
// member of the configuration is removed.

// ErrRemoved: this member was removed from the cluster. It stops, and its data cannot serve
// again: a member that comes back joins anew (tandem node N --join, on a cleaned directory).
var ErrRemoved = errors.New("replica: this member was removed from the cluster")

// RemovedError says when this member was removed.
type RemovedError struct {
	MemberID int
	RaftID   uint64
	Index    uint64 // the change's index (0: known from the state, not from an applied change)
	// Seen: the leader's applied index whose membership lacks this member (it learnt of its
	// removal from the others, not from its log).
	Seen uint64
}

func (e *RemovedError) Error() string {
	at := ""
	if e.Index != 0 {
		at = fmt.Sprintf(" by the change at index %d", e.Index)
	}
	if e.Seen != 0 {
		at = fmt.Sprintf(" (the leader's membership at index %d lacks it)", e.Seen)
	}
	return fmt.Sprintf("%v: member %d (raft id %d) was removed%s; its data directory cannot serve again: "+
		"to bring it back, clean the directory (tandem clean %d) and join anew (tandem node %d --join ADDR)",
		ErrRemoved, e.MemberID, e.RaftID, at, e.MemberID, e.MemberID)
}

func (e *RemovedError) Unwrap() error { return ErrRemoved }

const changePrefix = "tandem-change/1 "

// changeContext is the context of a membership change with token and, if rec is not nil, the
// record of the raft id it adds.
func changeContext(token string, rec []byte) []byte {
	b := []byte(changePrefix + token)
	if rec != nil {
		b = append(append(b, '\n'), rec...)
	}
	return b
}

// parseChangeContext splits a change's context: ok is false for a founding change's.
func parseChangeContext(ctx []byte) (token string, rec []byte, ok bool) {
	rest, found := bytes.CutPrefix(ctx, []byte(changePrefix))
	if !found {
		return "", nil, false
	}
	tok, rec, _ := bytes.Cut(rest, []byte("\n"))
	if len(rec) == 0 {
		rec = nil
	}
	return string(tok), rec, true
}

// AdmitConfChange implements consensus.Handler: the checks every member makes at apply.
func (r *Replica) AdmitConfChange(index uint64, cc *pb.ConfChangeV2) error {
	_, rec, versioned := parseChangeContext(cc.GetContext())
	if !versioned {
		// A founding change: each adds a voter with its addresses.
		for _, ch := range cc.GetChanges() {
			if ch.GetType() != pb.ConfChangeAddNode {
				return fmt.Errorf("a change without a context of this build's (%s)", consensus.DescribeConfChange(cc, nil))
			}
		}
		return nil
	}
	if v := r.ctr.ClusterVersion(); v < container.ClusterVersionMembership {
		return fmt.Errorf("membership changes need cluster version %d; %d is in force", container.ClusterVersionMembership, v)
	}
	if rec != nil && !validRecord(rec) {
		return fmt.Errorf("the change's member record %q is malformed", rec)
	}
	newIDs := 0
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		_, removed, recorded := r.memberByRaftID(id)
		switch {
		case removed && !bugs.Active(bugs.ReuseRaftIDs):
			return fmt.Errorf("raft id %d was removed: raft ids are never reused", id)
		case ch.GetType() == pb.ConfChangeRemoveNode:
			if !r.isMember(id) {
				return fmt.Errorf("raft id %d is not a member", id)
			}
		case !recorded || removed: // (removed: only with the planted bug)
			newIDs++
		}
	}
	if newIDs > 1 || (newIDs == 1) != (rec != nil) {
		return fmt.Errorf("%d raft ids the cluster has not recorded, and a record %q: want one with one", newIDs, rec)
	}
	return nil
}

// applyConfChange applies a committed membership change (cc nil: applied as no change) to the
// replicated membership, and answers the request that proposed it if it was this leader's. It
// reports whether a snapshot is due, and whether a member was added (a snapshot is owed: raft
// drops a snapshot whose configuration lacks its receiver, so a joiner that needs one must be sent
// one taken after it was added).
//
// A member is recorded as removed once it is in no part of the applied configuration: a voter a
// replacement removes stays in the outgoing half of the joint configuration, and counts there,
// until raft leaves it.
func (r *Replica) applyConfChange(e *pb.Entry, cc *pb.ConfChangeV2) (due, added bool) {
	ix := e.GetIndex()
	ctx := cc.GetContext()
	if cc == nil {
		if whole, err := consensus.DecodeConfChange(e); err == nil {
			ctx = whole.GetContext()
		}
	}
	token, rec, versioned := parseChangeContext(ctx)
	touched := false
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		switch {
		case !versioned:
			due = r.ctr.ApplyMember(ix, id, ctx, false) || due
			touched = true
		case ch.GetType() == pb.ConfChangeRemoveNode:
		default:
			if _, removed, recorded := r.memberByRaftID(id); !recorded || removed {
				due = r.ctr.ApplyMember(ix, id, rec, false) || due
				touched, added = true, true
			}
		}
	}
	if cc != nil {
		for _, id := range r.gone() {
			due = r.ctr.ApplyMember(ix, id, nil, true) || due
			touched = true
			if id == r.self && r.removed == nil {
				r.removed = &RemovedError{MemberID: r.cfg.MemberID, RaftID: r.self, Index: ix}
			}
		}
	}
	if !touched {
		due = r.ctr.ApplyEmpty(ix)
	}
	if versioned && cc != nil && len(cc.GetChanges()) > 0 {
		r.log.Info("membership changed", "index", ix, "change", r.describe(cc), "members", memberList(r.Members()))
	}
	if versioned {
		r.changeApplied(token, ix, cc != nil)
	}
	st := r.core.State()
	r.out.Changed(Change{Kind: ChangeMembers, Index: ix, Term: st.Term, Role: r.role, Leader: r.IDOf(st.Leader)})
	return due, added
}

// gone returns the raft ids recorded as members (not removed) that are in no part of the applied
// configuration any more, in order.
func (r *Replica) gone() []uint64 {
	var ids []uint64
	for _, m := range r.ctr.Members() {
		if !m.Removed && !r.isMember(m.RaftID) {
			ids = append(ids, m.RaftID)
		}
	}
	return ids
}

// describe is a change as log lines show it, with member ids: "add-learner 3 (raft id 4)".
func (r *Replica) describe(cc *pb.ConfChangeV2) string {
	return consensus.DescribeConfChange(cc, func(id uint64) string {
		return strconv.Itoa(r.IDOf(id)) + " (raft id " + strconv.FormatUint(id, 10) + ")"
	})
}

// checkRemoved stops a member whose applied state says it was removed: at start (its data is of
// a removed member), or when the change removing it was applied.
func (r *Replica) checkRemoved() error {
	if r.removed != nil {
		return r.removed
	}
	if r.ctr.Applied() < r.startCommit {
		return nil
	}
	if _, removed, _ := r.memberByRaftID(r.self); removed {
		r.removed = &RemovedError{MemberID: r.cfg.MemberID, RaftID: r.self}
		return r.removed
	}
	return nil
}

// voterIDs are the raft ids of the voters of the applied configuration (incoming and
// outgoing), in order.
func (r *Replica) voterIDs() []uint64 {
	cs := r.core.ConfState()
	ids := slices.Concat(cs.GetVoters(), cs.GetVotersOutgoing())
	slices.Sort(ids)
	return slices.Compact(ids)
}
