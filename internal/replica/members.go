package replica

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/bugs"
)

// Members and their ids: the member id people see and the raft id raft uses, and the advertised
// addresses each member's conf change carries, which the replicated membership is read from.
//
// One vocabulary, from node.Member down to the wire: a member has an id and two advertised
// addresses (host:port), ClientAddr where clients reach it and MemberAddr where members do. They
// travel as the context of the member's conf change (container.Member.Addrs) and, for the
// leader's client address, in a redirect (wire.ClientMsg.LeaderAddr). "Bind" addresses
// (node.Config.ClientBind, MemberBind) are where a member listens, which may differ (NAT,
// containers). "Endpoint" is the client's word only: the client addresses a client is given to
// dial (client.Config.Endpoints, tandem client --endpoints).
//
// Member ids and raft ids. A founding member's raft id is its member id + 1 (RaftID). A member
// added later gets the next raft id never used in the cluster (ids are never reused: raft keeps
// no memory of a removed id, and a reused one could vote twice in a term), and keeps the member
// id it asked for, which the record of its conf change carries. So a member rebuilt in place
// keeps its id, ports and name, under a new raft id (ARCHITECTURE decision 17). Two raft ids
// share a member id only while a rebuilt member's new raft id, a learner, catches up to replace
// the old one.

// Member is one member of the cluster: its id (what people see: 0, 1, 2…), its raft id, and its
// advertised addresses.
type Member struct {
	ID         int
	ClientAddr string // advertised address clients use
	MemberAddr string // advertised address members use
	// RaftID is the member's raft id (0 in a configured founding list: RaftID(ID)).
	RaftID uint64
	// Learner: the member receives the log but does not vote (a joiner until it is promoted).
	Learner bool
	// StayLearner: the member joined as a learner to stay one (it is not promoted by itself).
	StayLearner bool
}

// RaftID is the raft id of a founding member id.
func RaftID(memberID int) uint64 { return uint64(memberID) + 1 }

// MemberID is the member id of a founding raft id (-1 for raft id 0, "none"). A member's own
// mapping, which covers members added later, is Replica.IDOf.
func MemberID(raftID uint64) int { return int(raftID) - 1 }

// encodeAddrs is the record of a founding member's conf change: its advertised addresses,
// replicated so every member (and a member that joins later) knows where the others are.
func encodeAddrs(m Member) []byte {
	return []byte(m.ClientAddr + "\n" + m.MemberAddr)
}

// encodeRecord is the record of a member added by a membership change (cluster version 4 on):
// its member id, addresses, and whether it stays a learner.
func encodeRecord(m Member) []byte {
	stay := "0"
	if m.StayLearner {
		stay = "1"
	}
	return []byte(fmt.Sprintf("%d\n%s\n%s\n%s", m.ID, m.ClientAddr, m.MemberAddr, stay))
}

// decodeRecord reads back what encodeAddrs or encodeRecord wrote, for raft id raftID.
func decodeRecord(raftID uint64, b []byte) Member {
	parts := strings.Split(string(b), "\n")
	m := Member{ID: MemberID(raftID), RaftID: raftID}
	switch len(parts) {
	case 2:
		m.ClientAddr, m.MemberAddr = parts[0], parts[1]
	case 4:
		if id, err := strconv.Atoi(parts[0]); err == nil {
			m.ID = id
		}
		m.ClientAddr, m.MemberAddr, m.StayLearner = parts[1], parts[2], parts[3] == "1"
	}
	return m
}

// validRecord reports whether b is a record encodeRecord could have written.
func validRecord(b []byte) bool {
	parts := strings.Split(string(b), "\n")
	if len(parts) != 4 || (parts[3] != "0" && parts[3] != "1") {
		return false
	}
	id, err := strconv.Atoi(parts[0])
	return err == nil && id >= 0 && strconv.Itoa(id) == parts[0] && parts[1] != "" && parts[2] != ""
}

// Members returns the replicated membership (members of the applied configuration), ordered by
// id, then raft id.
func (r *Replica) Members() []Member {
	var ms []Member
	cs := r.core.ConfState()
	for _, m := range r.ctr.Members() {
		if m.Removed {
			continue
		}
		rm := decodeRecord(m.RaftID, m.Addrs)
		rm.Learner = slices.Contains(cs.GetLearners(), m.RaftID)
		ms = append(ms, rm)
	}
	slices.SortFunc(ms, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.RaftID, b.RaftID))
	})
	return ms
}

// member returns member id's entry in the replicated membership: its voter if a rebuilt
// member's learner shares its id.
func (r *Replica) member(id int) (Member, bool) {
	var found Member
	ok := false
	for _, m := range r.Members() {
		if m.ID == id && (!ok || found.Learner) {
			found, ok = m, true
		}
	}
	return found, ok
}

// memberByRaftID returns the member of raft id id, removed or not (removed: true).
func (r *Replica) memberByRaftID(id uint64) (m Member, removed, ok bool) {
	cm, ok := r.ctr.Member(id)
	if !ok {
		return Member{}, false, false
	}
	return decodeRecord(id, cm.Addrs), cm.Removed, true
}

// IDOf returns the member id of raft id id (-1 for 0, "none"): from the replicated membership,
// or the founding mapping for a raft id it does not hold (yet).
func (r *Replica) IDOf(id uint64) int {
	if id == 0 {
		return -1
	}
	if cm, ok := r.ctr.Member(id); ok && strings.Count(string(cm.Addrs), "\n") == 3 {
		return decodeRecord(id, cm.Addrs).ID // a member added later: its record names its id
	}
	return MemberID(id)
}

// MemberOf returns the member id of raft id id and whether this member knows it: from the
// replicated membership, or the configured founding list (a member that has applied nothing
// yet). A raft id neither holds — a member added while this one lagged, a rebuilt member's new
// raft id — is not known: the founding mapping would name a member that is not the sender
// (raft id 5 is not member 4). For the log; IDOf is for what needs an id whatever.
func (r *Replica) MemberOf(id uint64) (int, bool) {
	if id == 0 {
		return -1, false
	}
	if id == r.self {
		return r.cfg.MemberID, true
	}
	if cm, ok := r.ctr.Member(id); ok {
		return decodeRecord(id, cm.Addrs).ID, true
	}
	if !r.cfg.Joined { // a joiner's list is itself only, under a raft id of its own
		for _, m := range r.cfg.Members {
			if RaftID(m.ID) == id {
				return m.ID, true
			}
		}
	}
	return 0, false
}

// nameID names a raft id in an error an operator reads: "member 2 (raft id 3)", or "raft id 5"
// for one this member cannot name.
func (r *Replica) nameID(id uint64) string {
	if m, ok := r.MemberOf(id); ok {
		return fmt.Sprintf("member %d (raft id %d)", m, id)
	}
	return fmt.Sprintf("raft id %d", id)
}

// SelfRaftID is this member's raft id.
func (r *Replica) SelfRaftID() uint64 { return r.self }

// isMember reports whether raft id is a voter or learner of the applied configuration.
func (r *Replica) isMember(raftID uint64) bool {
	cs := r.core.ConfState()
	return slices.Contains(cs.GetVoters(), raftID) || slices.Contains(cs.GetLearners(), raftID) ||
		slices.Contains(cs.GetVotersOutgoing(), raftID)
}

// nextRaftID is the raft id the next member added gets: one above every raft id the cluster has
// used (recorded, removed ones included, or in the configuration).
func (r *Replica) nextRaftID() uint64 {
	next := uint64(1)
	for _, m := range r.ctr.Members() {
		if m.Removed && bugs.Active(bugs.ReuseRaftIDs) {
			continue // planted bug: a removed member's raft id may be given again
		}
		next = max(next, m.RaftID+1)
	}
	cs := r.core.ConfState()
	for _, id := range slices.Concat(cs.GetVoters(), cs.GetLearners(), cs.GetVotersOutgoing()) {
		next = max(next, id+1)
	}
	return next
}

// Founders returns the founding members (their conf changes are the log's first entries),
// removed ones included, ordered by id: what the member handshake's founding digest is of.
func (r *Replica) Founders() []Member {
	var ms []Member
	for _, m := range r.ctr.Members() {
		if strings.Count(string(m.Addrs), "\n") == 1 {
			ms = append(ms, decodeRecord(m.RaftID, m.Addrs))
		}
	}
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return ms
}

// membershipChanged reports whether the membership is not the founding one any more (a member
// was added or removed since).
func (r *Replica) membershipChanged() bool {
	for _, m := range r.ctr.Members() {
		if m.Removed || strings.Count(string(m.Addrs), "\n") != 1 {
			return true
		}
	}
	return false
}

// ConfState returns raft's configuration as of the applied index (for checkers).
func (r *Replica) ConfState() *pb.ConfState { return r.core.ConfState() }

// HintMembership tells this member the cluster's current membership as a leader's answer gave it
// (the node asks the others when it knows no leader): an unverified member whose configuration is
// stale learns whose terms to hear (consensus.Core.HintVoters).
func (r *Replica) HintMembership(ms []Member) {
	if !r.core.Unverified() {
		return
	}
	var voters []uint64
	for _, m := range ms {
		if !m.Learner && m.RaftID != 0 {
			voters = append(voters, m.RaftID)
		}
	}
	r.core.HintVoters(voters)
}

// Removed reports whether raft id id was removed from the cluster (as recorded here).
func (r *Replica) Removed(id uint64) bool {
	cm, ok := r.ctr.Member(id)
	return ok && cm.Removed
}
