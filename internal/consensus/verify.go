package consensus

import (
	"slices"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/bugs"
)

// Unverified members: raft's amnesia, and how a member with an empty log rejoins safely.
//
// A member whose data directory was wiped starts on an empty log, bootstraps the founding
// configuration like a founder starting for the first time, and nothing local tells the two
// apart. Raft assumes a member remembers its votes and what it acknowledged; one that forgot can
// vote twice in a term (two leaders) or vote for a candidate that lacks entries it had helped to
// commit (acknowledged commands lost): a wiped disk plus one member down is enough, in three.
// (ARCHITECTURE.md, decision 16; Alagappan et al., FAST '18, call the remedy protocol-aware
// recovery.)
//
// So a member that starts on an empty log (or whose data directory says it never finished this,
// Config.Unverified) is unverified: it neither campaigns (its election clock does not run) nor
// votes (vote requests and TimeoutNow are dropped, as a lossy network would). It forgot its term
// too, so it does not follow a leader either until it knows the term it may have reached: until
// enough verified others (below) told it theirs, it drops every append, heartbeat and snapshot,
// and then those of a term below the highest it heard — a deposed leader that does not know it
// yet must not count on this member's acknowledgements, which its old self, in a later term,
// would have refused. It becomes verified in one of two ways, judged on what the peers said of
// themselves in their member handshakes (PeerStanding: their term; whether they are blank —
// term at most 1, no vote, so never took part in anything; whether they are unverified too):
//
//   - As a founder of a new cluster: no leader has contacted it, no peer said it is not blank,
//     and blank peers with itself make a quorum of voters — at once when every other voter said
//     so, otherwise after one election timeout more without a peer that is not blank (a founder
//     that never starts must not keep the others from forming the cluster). Nobody can have
//     counted on what it forgot: a quorum holds nothing.
//   - As a rejoining member (a late founder, or a wiped one): it heard the terms of at least
//     n-q+1 other voters that are verified or blank (n voters, quorum q; termKnown) — any quorum that elected a
//     candidate with this member's forgotten vote, or committed an entry with its forgotten
//     acknowledgement, holds q-1 others, and n-q+1 others meet every such set, so the highest
//     term they reported is at least any term this member reached — and a leader of at least
//     that term has repaired it: its commit index, synced, reaches an entry of the leader's term,
//     so its log holds every entry committed before (leader completeness). It then votes only in
//     terms after its current one (the vote floor, Config.VoteFloor: a forgotten vote was in a
//     term no later; its own campaigns start after it), and the node records the floor in the
//     data directory, so a restart keeps it.
//
// What it cannot see: a founder that never started while the others ran, plus a wiped member,
// plus the member holding the data down — the wiped member and the never-started founder are
// both blank, and make a quorum. Two of three members without data is beyond what three members
// can survive in any case. A peer of an older build says nothing of itself: a member on an empty
// log among such peers follows no leader and never votes until they are upgraded. A wiped member
// the same leader still counts as holding its entries is handed over for (replica/rejoin.go), or
// stopped by the lost-data rule (lostdata.go).

// standing is what a peer said of itself in its member handshakes: the highest term; blank until
// a report said otherwise; unverified as the newest report (of the highest term) said.
type standing struct {
	term              uint64
	blank, unverified bool
}

// verification is an unverified member's state (verify.go).
type verification struct {
	unverified bool
	floor      uint64 // votes in terms ≤ floor are dropped (0: none)
	contacted  bool   // a leader has sent this member an append, a heartbeat or a snapshot (while unverified)
	blankSince int    // the tick at which blank peers and this member first made a quorum (0: not yet)
	peers      map[uint64]standing
	// hint: the voters of the leader's membership, as the others told it (HintVoters): for a
	// member whose own configuration is stale, the voters whose terms it must hear.
	hint []uint64
}

// HintVoters tells an unverified member the voters of the cluster's current membership, as a
// leader's answer gave them (the node asks the others when it knows no leader): a member whose
// log was wiped knows only the founding configuration, whose voters may since have been removed
// or replaced, and could never hear enough of them. With a hint it counts the terms of the
// hint's voters instead (termKnown). The hint is the leader's applied membership at some moment;
// one change at a time keeps a quorum of it meeting every quorum of the next configuration.
func (c *Core) HintVoters(ids []uint64) {
	c.ver.hint = slices.Sorted(slices.Values(ids))
}

// PeerStanding records what the member with raft id id said of itself in a member handshake: its
// term, whether it is blank (Blank) and whether it is unverified. Reports come from two
// connections in any order: the highest term is kept, a member that said once it is not blank is
// not blank, and of reports of the same term one that says verified wins.
func (c *Core) PeerStanding(id, term uint64, blank, unverified bool) {
	if id == c.cfg.ID {
		return
	}
	if c.ver.peers == nil {
		c.ver.peers = make(map[uint64]standing)
	}
	s, ok := c.ver.peers[id]
	switch {
	case !ok:
		s = standing{term: term, blank: blank, unverified: unverified}
	case term > s.term:
		s = standing{term: term, blank: s.blank && blank, unverified: unverified}
	case term == s.term:
		s.blank, s.unverified = s.blank && blank, s.unverified && unverified
	default:
		s.blank = s.blank && blank
	}
	c.ver.peers[id] = s
	c.checkVerified()
}

// voters returns the voters of raft's configuration (sorted): raft's own, which holds the founding
// configuration from the bootstrap on, before its entries are applied.
func (c *Core) voters() []uint64 {
	ids := c.rn.Status().Config.Voters.IDs()
	voters := make([]uint64, 0, len(ids))
	for id := range ids {
		voters = append(voters, id)
	}
	slices.Sort(voters)
	return voters
}

// Blank reports whether this member never took part in anything: its term is at most 1 and it
// never voted (a founder before the first election; raft's bootstrap sets term 1). What its
// member handshakes say of it.
func (c *Core) Blank() bool {
	bs := c.rn.BasicStatus()
	return bs.GetTerm() <= 1 && bs.GetVote() == 0
}

// LastIndex returns the last index of the log in storage (what this member holds, unsynced
// writes included).
func (c *Core) LastIndex() uint64 {
	last, _ := c.storage.LastIndex()
	return last
}

// Unverified reports whether this member may not yet vote or campaign (verify.go).
func (c *Core) Unverified() bool { return c.ver.unverified }

// VoteFloor returns the term up to which this member drops vote requests (0: none).
func (c *Core) VoteFloor() uint64 { return c.ver.floor }

// dropVote reports whether a message that passed the checks must not reach raft: to an
// unverified member, a vote, a pre-vote, a TimeoutNow, or a leader's message before it knows the
// term it may have reached (termKnown) or of a term below it; a vote request at or below the
// floor (pre-votes need none: raft grants one only for a term past its own, which is at least the
// floor).
func (c *Core) dropVote(m *pb.Message) bool {
	switch m.GetType() {
	case pb.MsgApp, pb.MsgHeartbeat, pb.MsgSnap:
		if !c.ver.unverified {
			return false // (the path of every append: nothing more to look at)
		}
		if high, known := c.termKnown(); !known || m.GetTerm() < high {
			return true
		}
		if m.GetTerm() >= c.rn.BasicStatus().GetTerm() {
			c.ver.contacted = true
		}
	case pb.MsgVote, pb.MsgPreVote, pb.MsgTimeoutNow:
		if c.ver.unverified {
			return true
		}
		return m.GetType() == pb.MsgVote && m.GetTerm() <= c.ver.floor
	}
	return false
}

// termKnown returns the highest term the peers reported, and whether enough voters reported it
// (n-q+1 of the others) for it to be at least any term this member reached before it forgot.
// A report counts if its sender is verified, or blank: founders hear each other while all are
// unverified, and a founder that a leader contacted before it verified must still follow it
// (a standing is as old as its connection). A wiped member is blank too, so two members wiped at
// once may count each other: the guarantee is for one member rebuilt at a time.
func (c *Core) termKnown() (uint64, bool) {
	voters := c.voters()
	if len(c.ver.hint) > 0 {
		voters = c.ver.hint
	}
	quorum := len(voters)/2 + 1
	var others, heard int
	var high uint64
	for _, id := range voters {
		if id == c.cfg.ID {
			continue
		}
		others++
		if s, ok := c.ver.peers[id]; ok {
			high = max(high, s.term)
			if !s.unverified || s.blank {
				heard++
			}
		}
	}
	return high, heard >= min(others, len(voters)-quorum+1)
}

// checkVerified verifies an unverified member once one of the two ways allows it.
func (c *Core) checkVerified() {
	if !c.ver.unverified {
		return
	}
	voters := c.voters()
	if !slices.Contains(voters, c.cfg.ID) {
		return // a learner never votes; it stays unverified until promoted
	}
	quorum := len(voters)/2 + 1
	var others, blank int
	var floor uint64
	notBlank := false
	for _, id := range voters {
		if id == c.cfg.ID {
			continue
		}
		others++
		s, ok := c.ver.peers[id]
		if !ok {
			continue
		}
		floor = max(floor, s.term)
		if s.blank {
			blank++
		} else {
			notBlank = true
		}
	}
	switch {
	case !c.ver.contacted && !notBlank && c.Blank() && blank+1 >= quorum:
		// A founder of a new cluster.
		if blank < others {
			if c.ver.blankSince == 0 {
				c.ver.blankSince = max(c.ticks, 1)
			}
			if c.ticks-c.ver.blankSince < c.cfg.ElectionTicks {
				return
			}
		}
		c.verified(floor, "a founder of a new cluster: a quorum of voters holds nothing")
	case c.repaired():
		c.verified(c.rn.BasicStatus().GetTerm(), "repaired by the leader")
	default:
		c.ver.blankSince = 0
	}
}

// repaired reports whether this member knows the term it may have reached, follows a leader of at
// least that term, and its synced log reaches a committed entry of the leader's term.
func (c *Core) repaired() bool {
	bs := c.rn.BasicStatus()
	if bs.RaftState != raft.StateFollower || bs.Lead == 0 || bs.Lead == c.cfg.ID {
		return false
	}
	if high, known := c.termKnown(); !known || bs.GetTerm() < high {
		return false
	}
	ci := bs.GetCommit()
	if ci > c.durable {
		return false
	}
	t, err := c.storage.Term(ci)
	return err == nil && t == bs.GetTerm()
}

func (c *Core) verified(floor uint64, how string) {
	c.ver.unverified, c.ver.floor = false, floor
	c.log.Info("this member is verified: it may vote and campaign", "how", how, "vote_floor", floor)
}

// unverifiedAtStart is whether a core starts unverified: it bootstrapped its log at this start, or
// its data directory says so.
func unverifiedAtStart(cfg Config, bootstrapped bool) bool {
	if bugs.Active(bugs.EmptyLogVotes) {
		return false // planted bug: a member on an empty log votes and campaigns at once
	}
	return cfg.Unverified || bootstrapped
}

// A member that lost what it acknowledged, and rejoined (a wiped data directory), answers this
// leader's probe at the index the leader believes it holds with a rejection (its log ends before,
// or holds another entry there): raft takes that for an answer to retry at once (its progress
// never goes below what the member acknowledged), and leader and member would trade appends and
// rejections as fast as the network carries them. Such a rejection is dropped, as a lost message;
// the leader's next probe waits for the member's next heartbeat answer. (The replica hands
// leadership over for such a member when its handshake says it rejoined unverified:
// replica/rejoin.go.)
//
// An honest member never rejects an append at the leader's match index: that index was
// acknowledged in the leader's own term, so the member's log holds the leader's entries up to it.
// A rejection delayed or duplicated from before the acknowledgement may: dropping it loses
// nothing (raft itself ignores a rejection at or below the match index once it replicates).

// dropForgetful reports whether m is such a rejection (to this leader, in its term).
func (c *Core) dropForgetful(m *pb.Message) bool {
	if m.GetType() != pb.MsgAppResp || !m.GetReject() {
		return false
	}
	bs := c.rn.BasicStatus()
	if bs.RaftState != raft.StateLeader || m.GetTerm() != bs.GetTerm() {
		return false
	}
	pr, ok := c.rn.Status().Progress[m.GetFrom()]
	return ok && pr.Match != 0 && m.GetIndex() == pr.Match
}
