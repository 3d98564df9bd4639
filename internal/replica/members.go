package replica

import (
	"slices"
	"strings"
)

// Members and their ids: the raft id of a member id and back, and the advertised addresses each
// member's conf change carries, which the replicated membership is read from.

// Member is one member of the cluster as configured: its id (what people see: 0, 1, 2…; the
// raft id is ID+1) and its endpoints.
type Member struct {
	ID             int
	ClientEndpoint string // advertised address clients use
	MemberEndpoint string // advertised address members use
}

// RaftID is the raft id of a member id.
func RaftID(memberID int) uint64 { return uint64(memberID) + 1 }

// MemberID is the member id of a raft id (-1 for raft id 0, "none").
func MemberID(raftID uint64) int { return int(raftID) - 1 }

// encodeEndpoints is the context of a member's conf change: its endpoints, replicated so every
// member (and a member that joins later) knows where the others are.
func encodeEndpoints(m Member) []byte {
	return []byte(m.ClientEndpoint + "\n" + m.MemberEndpoint)
}

func decodeEndpoints(id int, b []byte) Member {
	client, member, _ := strings.Cut(string(b), "\n")
	return Member{ID: id, ClientEndpoint: client, MemberEndpoint: member}
}

// Members returns the replicated membership, ordered by id.
func (r *Replica) Members() []Member {
	var ms []Member
	for _, m := range r.ctr.Members() {
		if !m.Removed {
			ms = append(ms, decodeEndpoints(MemberID(m.RaftID), m.Endpoints))
		}
	}
	return ms
}

func (r *Replica) member(id int) (Member, bool) {
	for _, m := range r.Members() {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}

func (r *Replica) isMember(raftID uint64) bool {
	cs := r.core.ConfState()
	return slices.Contains(cs.GetVoters(), raftID) || slices.Contains(cs.GetLearners(), raftID)
}
