package node

import (
	"log/slog"

	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Members in the log are named as people see them: by member id, never by raft id (a founding
// member's raft id is its member id + 1; a member added later has another altogether). Two keys,
// the same in every package:
//
//   - selfKey, on every line of the member (Node.log is made With it): its own member id;
//   - memberKey: the other member a line is about (a peer, a transfer's target, a message's
//     sender).
//
// Other member-id-valued attributes say their role: "leader", "preferred", "members". A raft id
// appears only where it is the point (a join's new raft id, a membership change's "change"),
// under "raft_id", or for a raft id the member cannot name (a stranger's handshake).
const (
	selfKey   = "self"
	memberKey = "member"
)

// memberOf returns the member id of a raft id the member knows (Config.MemberOf of the
// transport). Any goroutine.
func (n *Node) memberOf(raftID uint64) (int, bool) {
	if m := n.memberIDs.Load(); m != nil {
		id, ok := (*m)[raftID]
		return id, ok
	}
	return 0, false
}

// memberAttr names the member of a raft id in a log line: memberKey and its member id, or
// "raft_id" if the member does not know it. Any goroutine.
func (n *Node) memberAttr(raftID uint64) slog.Attr {
	if id, ok := n.memberOf(raftID); ok {
		return slog.Int(memberKey, id)
	}
	return slog.Uint64("raft_id", raftID)
}

// noteMembers keeps the raft ids known before the replica is: the configured founding members'
// and, for a member that just joined, those of the join's answer.
func (n *Node) noteMembers(configured []Member, joined *wire.AdminResponse) {
	ids := map[uint64]int{}
	for _, m := range configured {
		ids[replica.RaftID(m.ID)] = m.ID
	}
	if joined != nil {
		for _, m := range joined.Members {
			ids[m.RaftID] = m.ID
		}
	}
	n.memberIDs.Store(&ids)
}

// noteReplicaMembers adds the raft ids of the replicated membership (a removed member's stay
// named: the lines about its last connections come after its removal). Loop only.
func (n *Node) noteReplicaMembers(r *replica.Replica) {
	ids := map[uint64]int{}
	if old := n.memberIDs.Load(); old != nil {
		for k, v := range *old {
			ids[k] = v
		}
	}
	for _, m := range r.Members() {
		ids[m.RaftID] = m.ID
	}
	n.memberIDs.Store(&ids)
}
