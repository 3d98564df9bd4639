package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/confchange"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/bugs"
)

// Validation of messages from the network (Step), until members authenticate each other.
//
// etcd raft trusts its peers: a message no honest member sends can make it panic, and the member
// with it. Step therefore refuses, with an error wrapping ErrInvalidMessage, every message raft
// v3.7 would panic on (or that would corrupt its state so that it panics later), and what no
// honest Tandem member ever sends over the network. The caller drops the connection the message
// came from. The checks, and the panic each one prevents:
//
//   - Type: only the types members exchange (MsgApp, MsgAppResp, MsgVote, MsgVoteResp, MsgPreVote,
//     MsgPreVoteResp, MsgSnap, MsgHeartbeat, MsgHeartbeatResp, MsgTimeoutNow). Local types would
//     drive raft's own machinery; MsgReadIndex with no entry panics a leader (index out of range
//     in readOnly) and no member sends one (reads start on the leader itself); MsgTransferLeader,
//     MsgForgetLeader and MsgReadIndexResp are never sent by a member either; an unknown or
//     negative type panics raft.IsLocalMsg. MsgProp is refused too: proposal forwarding is off,
//     so no honest member sends one, and a forged one would append arbitrary entries to the
//     leader's log (undecodable ones stop every member at apply) — except under the planted bug
//     follower-forwards, which needs it; even then an empty MsgProp ("stepped empty MsgProp") and
//     a conf change in it (raft panics on an undecodable one) are refused.
//   - Addressing and terms: From is another member (not 0, not this member), To is this member,
//     Term is not 0 (raft takes a term-0 message for a local one and skips its term checks),
//     every term and index is below termMax / indexMax (no overflow of Term+1 or Index+n), and
//     LogTerm is at most Term but in votes and acknowledgements (logTermMayPassTerm).
//   - MsgHeartbeat: the commit index is at most the last index this member's log is sure to
//     hold (lastCertain), if raft would act on it ("tocommit(…) is out of range [lastIndex(…)]");
//     its context is empty or 8 bytes (the leader decodes the echo as a uint64).
//   - MsgApp: entries are contiguous after Index, their terms never go down, start at or after
//     LogTerm and do not pass the message's term; conf changes are decodable ConfChange entries
//     adding a voter (the only kind Tandem writes, at bootstrap) — an undecodable or otherwise
//     impossible conf change, once committed, panics raft's ApplyConfChange or stops the member.
//     With contiguous entries raft never reaches "entry … conflict with committed entry" or
//     "index … is out of range": it answers an append starting at or below its commit index
//     without looking at its entries.
//   - MsgSnap: a snapshot with an index and a term no greater than the message's, whose
//     ConfState raft can restore ("unable to restore config", assertConfStatesEquivalent).
//   - MsgAppResp, to a leader in its term: an acceptance claims no index beyond lastCertain
//     (raft would record a match beyond its log, send a snapshot it may not have — "need
//     non-empty snapshot" — and commit that far on the follower); a rejection's hint is at most
//     the rejected index, as raft's own are (bounds the leader's search).
//   - MsgHeartbeatResp, to a leader in its term: its context is empty or an 8-byte read position
//     this leader can have sent (readOnly would slice past its queue of reads). Raft reads no
//     index from a heartbeat response.
//
// An honest message is never refused; the argument is at each check (lastCertain for the index
// bounds). A member whose log lost what it acknowledged does get honest heartbeats it must
// refuse: see LostDataError.

// ErrInvalidMessage is wrapped by the error Step returns for a message it refused: raft never saw
// it. The caller should drop the connection it came from (until members authenticate, anyone
// able to connect can send anything).
var ErrInvalidMessage = errors.New("consensus: invalid message refused")

// Plausibility bounds on terms and indexes from the network: no honest cluster gets near them
// (an election every microsecond would take 146 000 years to reach termMax), and below them
// raft's Term+1 and Index+n cannot overflow.
const (
	termMax  = 1 << 62
	indexMax = 1 << 62
)

// validator is the state Step's checks keep.
type validator struct {
	// floor and truncFrom describe what raft's log may have lost since the storage last matched
	// it (every Append or SaveSnapshot of a Ready: then the storage holds raft's log exactly).
	// Steps in between may truncate raft's unstable log (a conflicting append, a snapshot) below
	// the storage's last index: floor is at most where raft's log ends since then (MaxUint64:
	// nothing truncated), truncFrom the lowest index a truncation may have rewritten, from which
	// the storage's terms no longer tell raft's.
	floor, truncFrom uint64
	// readPos is the highest read position (raft's count of the reads it queued, which a
	// heartbeat's context carries and its response echoes) this member sent as leader in term
	// readTerm: an honest response echoes one of those, never more.
	readTerm, readPos uint64
	bootstrapped      bool // the storage was empty at New: the core bootstrapped a log
	suspect           suspicion
}

func (v *validator) matched() { v.floor, v.truncFrom = math.MaxUint64, math.MaxUint64 }

// watchedStorage is the core's view of its storage: writing a Ready (Append, SaveSnapshot) makes
// the storage hold raft's log again, which resets the validator's truncation window.
type watchedStorage struct {
	Storage
	v *validator
}

func (w watchedStorage) Append(hs *pb.HardState, ents []*pb.Entry) error {
	w.v.matched()
	return w.Storage.Append(hs, ents)
}

func (w watchedStorage) SaveSnapshot(snap *pb.Snapshot) error {
	w.v.matched()
	return w.Storage.SaveSnapshot(snap)
}

// noteSent records the read positions of the heartbeats among msgs (what this member sends).
func (v *validator) noteSent(msgs []*pb.Message) {
	for _, m := range msgs {
		if m.GetType() != pb.MsgHeartbeat || len(m.GetContext()) != 8 {
			continue
		}
		if t := m.GetTerm(); t != v.readTerm {
			v.readTerm, v.readPos = t, 0
		}
		v.readPos = max(v.readPos, binary.LittleEndian.Uint64(m.GetContext()))
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidMessage, fmt.Sprintf(format, args...))
}

// networkTypes are the message types members exchange.
var networkTypes = [...]pb.MessageType{pb.MsgApp, pb.MsgAppResp, pb.MsgVote, pb.MsgVoteResp,
	pb.MsgPreVote, pb.MsgPreVoteResp, pb.MsgSnap, pb.MsgHeartbeat, pb.MsgHeartbeatResp, pb.MsgTimeoutNow}

// check validates m before raft sees it (the list at the top of this file) and, for a message it
// lets through, notes what stepping it may do to raft's log.
func (c *Core) check(m *pb.Message) error {
	t := m.GetType()
	if t == pb.MsgProp {
		return c.checkProp(m)
	}
	if !slices.Contains(networkTypes[:], t) {
		return invalid("message type %s is not sent between members", t)
	}
	from := m.GetFrom()
	switch {
	case from == 0 || from == c.cfg.ID:
		return invalid("%s claims to come from raft id %d", t, from)
	case m.GetTo() != c.cfg.ID:
		return invalid("%s for raft id %d delivered to raft id %d", t, m.GetTo(), c.cfg.ID)
	case m.GetTerm() == 0 || m.GetTerm() > termMax:
		return invalid("%s from %s has term %d", t, c.nameID(from), m.GetTerm())
	case m.GetIndex() > indexMax || m.GetCommit() > indexMax || m.GetLogTerm() > termMax ||
		m.GetLogTerm() > m.GetTerm() && !logTermMayPassTerm(t):
		return invalid("%s from %s term %d has index %d, log term %d, commit %d", t, c.nameID(from), m.GetTerm(),
			m.GetIndex(), m.GetLogTerm(), m.GetCommit())
	}
	bs := c.rn.BasicStatus()
	term := bs.GetTerm()
	// Raft acts on a message of an older term only by answering it (and drops an append or a
	// heartbeat): nothing in it reaches the log. A leader ignores appends, snapshots and
	// heartbeats of its own term (only a forger sends them), and only a leader reads responses.
	acted := m.GetTerm() >= term
	asLeader := bs.RaftState == raft.StateLeader && m.GetTerm() == term
	switch t {
	case pb.MsgHeartbeat:
		return c.checkHeartbeat(m, bs, acted && !asLeader)
	case pb.MsgApp:
		if err := c.checkEntries(m); err != nil {
			return err
		}
		if acted && !asLeader {
			c.noteAppend(m, bs.GetCommit())
		}
	case pb.MsgSnap:
		if err := c.checkSnapshot(m); err != nil {
			return err
		}
		if acted && !asLeader {
			c.noteSnapshot(m, bs.GetCommit())
		}
	case pb.MsgAppResp:
		if asLeader {
			return c.checkAppResp(m, bs)
		}
	case pb.MsgHeartbeatResp:
		if len(m.GetContext()) != 0 && len(m.GetContext()) != 8 {
			return invalid("heartbeat response from %s has a %d-byte context", c.nameID(from), len(m.GetContext()))
		}
		if asLeader {
			return c.checkHeartbeatResp(m, bs)
		}
	}
	return nil
}

// logTermMayPassTerm reports whether an honest message of type t may carry a log term above its
// term. An acknowledgement's is a hint from the follower's log. A vote's is the candidate's last
// log term, which exceeds its term after a power loss kept a Ready's entries and lost the hard
// state written after them (a member that jumped terms hearing a new leader): the member asks
// honestly, and learns the cluster's term from the answers.
func logTermMayPassTerm(t pb.MessageType) bool {
	return t == pb.MsgAppResp || t == pb.MsgVote || t == pb.MsgPreVote
}

// checkProp lets a MsgProp through only under the planted bug follower-forwards, and only with
// the normal entries raft's Propose makes.
func (c *Core) checkProp(m *pb.Message) error {
	if !bugs.Active(bugs.FollowerForwards) {
		return invalid("proposal from %s: proposals are not forwarded between members", c.nameID(m.GetFrom()))
	}
	if m.GetFrom() == 0 || m.GetFrom() == c.cfg.ID || m.GetTo() != c.cfg.ID || len(m.GetEntries()) == 0 {
		return invalid("malformed proposal from %s (%d entries)", c.nameID(m.GetFrom()), len(m.GetEntries()))
	}
	for _, e := range m.GetEntries() {
		if e.GetType() != pb.EntryNormal {
			return invalid("proposal from %s carries a %s entry", c.nameID(m.GetFrom()), e.GetType())
		}
	}
	return nil
}

// lastCertain returns an index raft's log certainly reaches now: the storage's last index unless a
// step since the last write may have truncated raft's log below it (floor), and at least the
// commit index (raft's log always holds what it committed).
//
// Why an honest sender never claims more (the index bounds of heartbeats and acknowledgements):
//   - Heartbeat, on a follower: the leader of term T sends min(Match, commit), where Match is the
//     highest index this member acknowledged in term T. It acknowledged only what it had written
//     and synced (Ready contract; the storage keeps all of it across a restart), so the storage
//     held it, and only a leader of a later term can rewrite it — whose own heartbeats then
//     carry the later term, while raft drops the older leader's unread (no check: acted is false).
//     A truncation in term T starts past every index acknowledged in T (the leader's log agrees
//     up to there), so it never brings raft's log, nor floor, below Match.
//   - Acknowledgement, on the leader of term T: a follower acknowledges an index of an append or
//     snapshot this leader sent (written to the storage before it was sent, and a leader's log
//     only grows in its term), or its own commit index, which the leader's log covers (a leader
//     holds every committed entry, and held them in the storage when it campaigned).
func (c *Core) lastCertain(commit uint64) uint64 {
	last, err := c.storage.LastIndex()
	if err != nil {
		return commit
	}
	return max(min(last, c.val.floor), commit)
}

// checkHeartbeat refuses a heartbeat committing beyond this member's log, and weighs the refusal
// as evidence of lost data (LostDataError).
func (c *Core) checkHeartbeat(m *pb.Message, bs raft.BasicStatus, acted bool) error {
	if n := len(m.GetContext()); n != 0 && n != 8 {
		return invalid("heartbeat from %s has a %d-byte context", c.nameID(m.GetFrom()), n)
	}
	if !acted {
		return nil
	}
	last := c.lastCertain(bs.GetCommit())
	if m.GetCommit() <= last {
		if m.GetTerm() >= c.val.suspect.term {
			c.val.suspect = suspicion{} // a leader this log can follow
		}
		return nil
	}
	err := invalid("heartbeat from %s in term %d commits index %d, but this log ends at %d",
		c.nameID(m.GetFrom()), m.GetTerm(), m.GetCommit(), last)
	if lost := c.weighRefusal(m, last); lost != nil {
		return lost
	}
	return err
}

// checkEntries checks an append's entries: contiguous after Index, terms between LogTerm and the
// message's term and never going down, conf changes only of the kind Tandem writes. An honest
// leader's entries are a slice of its log, whose terms never go down and never pass its term.
func (c *Core) checkEntries(m *pb.Message) error {
	prev := m.GetLogTerm()
	for i, e := range m.GetEntries() {
		if e.GetIndex() != m.GetIndex()+1+uint64(i) || e.GetTerm() < prev || e.GetTerm() > m.GetTerm() {
			return invalid("append from %s at index %d (log term %d, term %d): entry %d has index %d and term %d",
				c.nameID(m.GetFrom()), m.GetIndex(), m.GetLogTerm(), m.GetTerm(), i, e.GetIndex(), e.GetTerm())
		}
		prev = e.GetTerm()
		switch e.GetType() {
		case pb.EntryNormal:
		case pb.EntryConfChange, pb.EntryConfChangeV2:
			if err := checkConfChange(e); err != nil {
				return invalid("append from %s: entry %d is a conf change Tandem never writes: %v", c.nameID(m.GetFrom()), e.GetIndex(), err)
			}
		default:
			return invalid("append from %s: entry %d is of type %s", c.nameID(m.GetFrom()), e.GetIndex(), e.GetType())
		}
	}
	return nil
}

// maxConfChanges bounds the changes of one conf change entry: Tandem writes at most two (a
// replacement: a learner made voter, a voter removed).
const maxConfChanges = 8

// checkConfChange checks a conf change entry is of the kinds Tandem writes: a founding ConfChange
// adds a voter; a ConfChangeV2 adds voters or learners and removes members (raft ids not 0), in
// a transition raft knows, or is raft's own leaving of a joint configuration (no changes). What
// raft itself would refuse to apply is left to apply time, where every member refuses it alike
// (confchange.go): a follower cannot judge it against a configuration it has not applied yet.
func checkConfChange(e *pb.Entry) error {
	if e.GetType() == pb.EntryConfChange {
		var cc pb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
			return err
		}
		if cc.GetType() != pb.ConfChangeAddNode || cc.GetNodeId() == 0 {
			return fmt.Errorf("%v of raft id %d", cc.GetType(), cc.GetNodeId())
		}
		return nil
	}
	var cc pb.ConfChangeV2
	if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
		return err
	}
	if t := cc.GetTransition(); t > pb.ConfChangeTransitionJointExplicit {
		return fmt.Errorf("transition %v", t)
	}
	if len(cc.GetChanges()) > maxConfChanges {
		return fmt.Errorf("%d changes", len(cc.GetChanges()))
	}
	for _, ch := range cc.GetChanges() {
		switch ch.GetType() {
		case pb.ConfChangeAddNode, pb.ConfChangeAddLearnerNode, pb.ConfChangeRemoveNode:
		default:
			return fmt.Errorf("a change of type %v", ch.GetType())
		}
		if ch.GetNodeId() == 0 || ch.GetNodeId() > raftIDMax {
			return fmt.Errorf("a change of raft id %d", ch.GetNodeId())
		}
	}
	return nil
}

// raftIDMax bounds the raft ids a conf change may name (ids are allocated one at a time).
const raftIDMax = 1 << 32

// checkSnapshot checks a MsgSnap's metadata, and that raft can restore its ConfState: the dry run
// raft's restore would do, on a tracker of its own.
func (c *Core) checkSnapshot(m *pb.Message) error {
	md := m.GetSnapshot().GetMetadata()
	if md == nil || md.GetIndex() == 0 || md.GetIndex() > indexMax || md.GetTerm() == 0 || md.GetTerm() > m.GetTerm() {
		return invalid("snapshot from %s in term %d has index %d and term %d", c.nameID(m.GetFrom()), m.GetTerm(),
			md.GetIndex(), md.GetTerm())
	}
	cs := pb.EnsureConfState(md.GetConfState())
	trk := tracker.MakeProgressTracker(1, 0)
	cfg, prs, err := confchange.Restore(confchange.Changer{Tracker: trk, LastIndex: md.GetIndex()}, cs)
	if err == nil {
		trk.Config, trk.Progress = cfg, prs
		err = cs.Equivalent(trk.ConfState())
	}
	if err != nil {
		return invalid("snapshot from %s at index %d has a configuration raft cannot restore: %v", c.nameID(m.GetFrom()), md.GetIndex(), err)
	}
	return nil
}

// noteAppend notes, for an append raft will act on, whether it may truncate raft's log below the
// storage's last index: raft rewrites from the first entry whose term differs from its own (when
// the append's previous entry matches), and its log then ends at the append's last entry.
// Entries past the storage's last index cannot bring raft's log below it.
func (c *Core) noteAppend(m *pb.Message, commit uint64) {
	ents := m.GetEntries()
	if len(ents) == 0 || m.GetIndex() < commit {
		return // raft answers an append below its commit index without reading its entries
	}
	last, err := c.storage.LastIndex()
	if err != nil {
		return
	}
	lastNew := m.GetIndex() + uint64(len(ents))
	if m.GetIndex() <= last && m.GetIndex() < c.val.truncFrom {
		if t, err := c.storage.Term(m.GetIndex()); err == nil && t != m.GetLogTerm() {
			return // raft rejects it: its previous entry does not match
		}
	}
	for _, e := range ents {
		i := e.GetIndex()
		if i >= c.val.truncFrom {
			c.val.truncFrom, c.val.floor = min(c.val.truncFrom, i), min(c.val.floor, lastNew)
			return
		}
		if i > last {
			return
		}
		if t, err := c.storage.Term(i); err != nil || t != e.GetTerm() {
			c.val.truncFrom, c.val.floor = min(c.val.truncFrom, i), min(c.val.floor, lastNew)
			return
		}
	}
}

// noteSnapshot notes a snapshot raft may restore: its log then ends at the snapshot's index.
// Raft ignores one at or below its commit index, one whose ConfState lacks this member, and only
// moves its commit index for one whose index and term its log holds.
func (c *Core) noteSnapshot(m *pb.Message, commit uint64) {
	md := m.GetSnapshot().GetMetadata()
	i := md.GetIndex()
	cs := md.GetConfState()
	if i <= commit || !(slices.Contains(cs.GetVoters(), c.cfg.ID) || slices.Contains(cs.GetLearners(), c.cfg.ID) ||
		slices.Contains(cs.GetVotersOutgoing(), c.cfg.ID)) {
		return
	}
	if last, err := c.storage.LastIndex(); err == nil && i <= last && i < c.val.truncFrom {
		if t, err := c.storage.Term(i); err == nil && t == md.GetTerm() {
			return
		}
	}
	c.val.truncFrom, c.val.floor = min(c.val.truncFrom, i+1), min(c.val.floor, i)
}

// checkAppResp checks an acknowledgement to the leader (see lastCertain).
func (c *Core) checkAppResp(m *pb.Message, bs raft.BasicStatus) error {
	if m.GetReject() {
		if m.GetRejectHint() > m.GetIndex() {
			return invalid("rejection from %s of index %d hints at index %d", c.nameID(m.GetFrom()), m.GetIndex(), m.GetRejectHint())
		}
		return nil
	}
	if last := c.lastCertain(bs.GetCommit()); m.GetIndex() > last {
		return invalid("acknowledgement from %s in term %d of index %d, but this leader's log ends at %d",
			c.nameID(m.GetFrom()), m.GetTerm(), m.GetIndex(), last)
	}
	return nil
}

// checkHeartbeatResp checks the read position a heartbeat response echoes. Raft's leader counts
// the ReadIndex requests it queued in its term and sends the count in heartbeats; an
// acknowledgement by a quorum beyond what it queued makes it slice past its queue of reads. The
// count only grows within a term (reads leave the queue as they are confirmed, and the
// confirmed count grows by as many), so a position no greater than the highest this leader sent
// in its term is within its queue. Honest responses echo a position it sent in this term.
func (c *Core) checkHeartbeatResp(m *pb.Message, bs raft.BasicStatus) error {
	if len(m.GetContext()) == 0 {
		return nil
	}
	pos := binary.LittleEndian.Uint64(m.GetContext())
	var sent uint64
	if c.val.readTerm == bs.GetTerm() {
		sent = c.val.readPos
	}
	if pos > sent {
		return invalid("heartbeat response from %s acknowledges read %d, this leader sent %d in term %d",
			c.nameID(m.GetFrom()), pos, sent, bs.GetTerm())
	}
	return nil
}
