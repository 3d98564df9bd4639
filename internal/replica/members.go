package replica

import (
	"slices"
	"strings"
)

// Members and their ids: the raft id of a member id and back, and the advertised addresses each
// member's conf change carries, which the replicated membership is read from.
//
// One vocabulary, from node.Member down to the wire: a member has an id and two advertised
// addresses (host:port), ClientAddr where clients reach it and MemberAddr where members do. They
// travel as the context of the member's conf change (container.Member.Addrs) and, for the
// leader's client address, in a redirect (wire.ClientMsg.LeaderAddr). "Bind" addresses
// (node.Config.ClientBind, MemberBind) are where a member listens, which may differ (NAT,
// containers). "Endpoint" is the client's word only: the client addresses a client is given to
// dial (client.Config.Endpoints, tandem client --endpoints).

// Member is one member of the cluster as configured: its id (what people see: 0, 1, 2…; the
// raft id is ID+1) and its advertised addresses.
type Member struct {
	ID         int
	ClientAddr string // advertised address clients use
	MemberAddr string // advertised address members use
}

// RaftID is the raft id of a member id.
func RaftID(memberID int) uint64 { return uint64(memberID) + 1 }

// MemberID is the member id of a raft id (-1 for raft id 0, "none").
func MemberID(raftID uint64) int { return int(raftID) - 1 }

// encodeAddrs is the context of a member's conf change: its advertised addresses, replicated so
// every member (and a member that joins later) knows where the others are.
func encodeAddrs(m Member) []byte {
	return []byte(m.ClientAddr + "\n" + m.MemberAddr)
}

// decodeAddrs reads back what encodeAddrs wrote, for member id.
func decodeAddrs(id int, b []byte) Member {
	client, member, _ := strings.Cut(string(b), "\n")
	return Member{ID: id, ClientAddr: client, MemberAddr: member}
}

// Members returns the replicated membership, ordered by id.
func (r *Replica) Members() []Member {
	var ms []Member
	for _, m := range r.ctr.Members() {
		if !m.Removed {
			ms = append(ms, decodeAddrs(MemberID(m.RaftID), m.Addrs))
		}
	}
	return ms
}

// member returns member id of the replicated membership.
func (r *Replica) member(id int) (Member, bool) {
	for _, m := range r.Members() {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

// isMember reports whether raft id is a voter or learner of the applied configuration.
func (r *Replica) isMember(raftID uint64) bool {
	cs := r.core.ConfState()
	return slices.Contains(cs.GetVoters(), raftID) || slices.Contains(cs.GetLearners(), raftID)
}
