package consensus

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/confchange"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// Membership changes (etcd raft's ConfChangeV2; ARCHITECTURE decision 17).
//
// Raft takes a conf change proposal it cannot accept — another one is pending (proposed, not
// applied), the configuration is joint and the proposal does not leave it, or a leader has not
// applied its predecessors' entries yet — and appends an empty entry in its place, saying
// nothing. A leader that reported such a proposal as done would lie, so ProposeConfChange refuses
// in each of those cases first (ErrConfChangePending): one change at a time, and the caller tries
// again once the one before is applied.
//
// A committed change is applied by every member alike, in log order. Before raft applies one
// the core runs it on a tracker of its own built from the applied configuration (raft panics on
// a change it cannot make, e.g. one that would remove the last voter), and asks the handler
// (Handler.AdmitConfChange: the replica re-checks its own rules at apply, such as raft ids never
// being reused). A change either refuses is applied as no change: not handed to raft at all
// (RawNode.ApplyConfChange's contract), and handed to ApplyEntry with a nil cc. Both checks see
// only the log's contents, so every member refuses the same changes. A snapshot that arrives while
// a Ready's committed entries wait for their sync is dropped (Step): raft would restore its
// configuration before those entries, conf changes among them, are applied.

// ErrConfChangePending: a membership change is pending (proposed and not applied, or the
// configuration is joint), or this leader has not applied what it inherited yet; try again.
var ErrConfChangePending = errors.New("consensus: a membership change is pending")

// ProposeConfChange proposes a membership change, on the leader (*NotLeaderError elsewhere, and
// ErrConfChangePending while another is pending). Whether it commits is learnt from the applied
// log: Handler.ApplyEntry gets it (its context tells it apart).
func (c *Core) ProposeConfChange(cc *pb.ConfChangeV2) error {
	err := c.proposeConfChange(cc)
	if err != nil {
		c.own.failed.Add(1)
	}
	return err
}

func (c *Core) proposeConfChange(cc *pb.ConfChangeV2) error {
	if c.err != nil {
		return ErrStopped
	}
	bs := c.rn.BasicStatus()
	if bs.RaftState != raft.StateLeader || bs.LeadTransferee != 0 {
		return c.notLeader()
	}
	if c.confChangePending(bs, cc.LeaveJoint()) {
		return ErrConfChangePending
	}
	if err := c.rn.ProposeConfChange(cc); err != nil {
		if errors.Is(err, raft.ErrProposalDropped) {
			return ErrDropped
		}
		return err
	}
	c.conf.outstanding = true
	if !cc.LeaveJoint() {
		c.own.proposed(bs.GetTerm()) // a leave of a joint configuration carries no data (proposals.go)
	}
	return nil
}

// ConfChangePending reports whether ProposeConfChange would refuse a change that does not leave
// a joint configuration with ErrConfChangePending.
func (c *Core) ConfChangePending() bool {
	return c.confChangePending(c.rn.BasicStatus(), false)
}

// confChangePending mirrors, conservatively, the checks raft makes before it replaces a conf
// change proposal with an empty entry: a change proposed by this leader and not applied; raft's
// applied index below a conf change applied here, or below this leader's first entry (raft counts
// everything it inherited as possibly a change); a joint configuration, which only a change that
// leaves it may follow.
func (c *Core) confChangePending(bs raft.BasicStatus, leave bool) bool {
	joint := len(c.confState.GetVotersOutgoing()) > 0
	return c.conf.outstanding || c.conf.termFirst == 0 || bs.Applied < c.conf.termFirst ||
		bs.Applied < c.conf.lastApplied || joint != leave
}

// confTrack is what confChangePending needs to know.
type confTrack struct {
	outstanding bool   // this leader proposed a change that has not been applied
	termFirst   uint64 // the first entry of the current term applied here (0: none yet)
	termOf      uint64 // the term termFirst is of
	lastApplied uint64 // the last conf change entry applied here
}

// noteApplied keeps confTrack up to date with an applied entry.
func (t *confTrack) noteApplied(e *pb.Entry, term uint64) {
	if t.termOf != term {
		t.termOf, t.termFirst = term, 0
	}
	if t.termFirst == 0 && e.GetTerm() == term {
		t.termFirst = e.GetIndex()
	}
	if e.GetType() != pb.EntryNormal {
		t.lastApplied, t.outstanding = e.GetIndex(), false
	}
}

// newTerm forgets what belonged to the leadership before (a change this member proposed as
// leader is lost with it, or applied under the next leader).
func (t *confTrack) newTerm(term uint64) {
	if t.termOf != term {
		t.termOf, t.termFirst = term, 0
	}
	t.outstanding = false
}

// applyConfChange applies the conf change entry e: the core's dry run, the handler's check, then
// raft's ApplyConfChange, then the handler's ApplyEntry (with a nil cc for a refused change).
func (c *Core) applyConfChange(h Handler, e *pb.Entry) error {
	cc, err := DecodeConfChange(e)
	if err != nil {
		return fmt.Errorf("consensus: conf change at index %d: %w", e.GetIndex(), err)
	}
	applied := cc
	if err := c.dryRun(cc); err != nil {
		c.log.Warn("a committed membership change is applied as no change: raft cannot make it",
			"index", e.GetIndex(), "change", DescribeConfChange(cc, c.describeID), "err", err)
		applied = nil
	} else if err := h.AdmitConfChange(e.GetIndex(), cc); err != nil {
		c.log.Warn("a committed membership change is applied as no change: the member refused it",
			"index", e.GetIndex(), "change", DescribeConfChange(cc, c.describeID), "err", err)
		applied = nil
	}
	if applied != nil {
		c.confState = c.rn.ApplyConfChange(applied)
	}
	// (A refused change is not handed to raft at all: RawNode.ApplyConfChange's contract. Raft's
	// pending change is over once its index is applied, which Advance tells it.)
	if err := h.ApplyEntry(e, applied); err != nil {
		return err
	}
	c.applied = e.GetIndex()
	c.conf.noteApplied(e, c.state.Term)
	return nil
}

// DecodeConfChange decodes a conf change entry, a founding ConfChange as its V2 equivalent.
func DecodeConfChange(e *pb.Entry) (*pb.ConfChangeV2, error) {
	if e.GetType() == pb.EntryConfChange {
		var v1 pb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &v1); err != nil {
			return nil, err
		}
		return v1.AsV2(), nil
	}
	cc := new(pb.ConfChangeV2)
	if err := proto.Unmarshal(e.GetData(), cc); err != nil {
		return nil, err
	}
	return cc, nil
}

// dryRun makes the change on a tracker restored from the applied configuration: an error is one
// raft's ApplyConfChange would panic on.
func (c *Core) dryRun(cc *pb.ConfChangeV2) error {
	trk := tracker.MakeProgressTracker(1, 0)
	chg := confchange.Changer{Tracker: trk, LastIndex: c.applied}
	cfg, prs, err := confchange.Restore(chg, c.confState)
	if err != nil {
		return fmt.Errorf("restoring the applied configuration: %w", err)
	}
	trk.Config, trk.Progress = cfg, prs
	chg = confchange.Changer{Tracker: trk, LastIndex: c.applied}
	if t := cc.GetTransition(); t > pb.ConfChangeTransitionJointExplicit {
		return fmt.Errorf("transition %v", t) // raft panics on it
	}
	if cc.LeaveJoint() {
		_, _, err = chg.LeaveJoint()
	} else if auto, ok := cc.EnterJoint(); ok {
		_, _, err = chg.EnterJoint(auto, cc.GetChanges()...)
	} else {
		_, _, err = chg.Simple(cc.GetChanges()...)
	}
	return err
}

// DescribeConfChange is a change as log lines show it: "add-learner 4, remove 3", each raft id
// as name says it (nil: the raft id).
func DescribeConfChange(cc *pb.ConfChangeV2, name func(uint64) string) string {
	if name == nil {
		name = func(id uint64) string { return fmt.Sprint(id) }
	}
	if len(cc.GetChanges()) == 0 {
		return "leave joint"
	}
	s := ""
	for i, ch := range cc.GetChanges() {
		if i > 0 {
			s += ", "
		}
		switch ch.GetType() {
		case pb.ConfChangeAddNode:
			s += "add-voter "
		case pb.ConfChangeAddLearnerNode:
			s += "add-learner "
		case pb.ConfChangeRemoveNode:
			s += "remove "
		default:
			s += ch.GetType().String() + " "
		}
		s += name(ch.GetNodeId())
	}
	return s
}

// Progress returns, on the leader, what it knows of each member's log (raft's progress: match
// index, whether it heard from it lately, whether it is a learner); nil elsewhere.
func (c *Core) Progress() map[uint64]tracker.Progress {
	if c.rn.BasicStatus().RaftState != raft.StateLeader {
		return nil
	}
	return c.rn.Status().Progress
}

// nameID names the sender of a message in an error the driver logs: "member 2 (raft id 3)",
// or "raft id 5" for one the member cannot name.
func (c *Core) nameID(id uint64) string {
	if m, ok := c.memberOf(id); ok {
		return fmt.Sprintf("member %d (raft id %d)", m, id)
	}
	return fmt.Sprintf("raft id %d", id)
}

// memberOf is Config.MemberOf, or the founding mapping if it is nil.
func (c *Core) memberOf(id uint64) (int, bool) {
	if c.cfg.MemberOf != nil {
		return c.cfg.MemberOf(id)
	}
	return int(id) - 1, true
}

// describeID names a raft id in the core's log lines: "2 (raft id 3)", as the replica's do, or
// "raft id 5" for one the member cannot name.
func (c *Core) describeID(id uint64) string {
	m, ok := c.memberOf(id)
	if !ok {
		return fmt.Sprintf("raft id %d", id)
	}
	return fmt.Sprintf("%d (raft id %d)", m, id)
}
