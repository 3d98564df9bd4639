package consensus

import (
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/tandem-cluster/tandem/internal/bugs"
)

// dropCommitAnnouncements removes from a leader's messages the appends without entries to a
// follower that has acknowledged every entry they follow (StateReplicate, Match at or past the
// append's index): such an append only announces a new commit index. Raft sends one to every
// follower each time the commit index moves, and under light load that doubled the messages of
// every command — the announcement, its acknowledgement, and on the follower a Ready of its own
// (a hard state record, an apply, an answer). The follower learns the commit index instead from
// the next append, which carries it, or the next heartbeat (raft sends min(Match, commit) with
// each one), so under load it applies one round later and at rest within a heartbeat interval.
//
// Why this is safe: dropping any message is what a lossy network does, and raft copes; here raft
// has recorded the commit as sent (sentCommit) and the heartbeat carries it again. Nothing else
// waits for the follower's commit index: commands are answered by the leader, and a leader
// elected later commits its own entry before it applies. Appends a follower may need — probes
// (StateProbe), and the empty appends a throttled StateReplicate sends to recover lost
// messages, whose index is past the follower's Match — are kept.
func (c *Core) dropCommitAnnouncements(msgs []*pb.Message) []*pb.Message {
	found := false
	for _, m := range msgs {
		if m.GetType() == pb.MsgApp && len(m.GetEntries()) == 0 {
			found = true
			break
		}
	}
	if !found {
		return msgs
	}
	var caught [maxTrackedPeers]uint64 // followers in StateReplicate, by raft id: their Match+1
	c.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id < maxTrackedPeers && pr.State == tracker.StateReplicate {
			caught[id] = pr.Match + 1
		}
	})
	kept := msgs[:0] // the Ready's slice is ours until Advance
	for _, m := range msgs {
		if to := m.GetTo(); m.GetType() == pb.MsgApp && len(m.GetEntries()) == 0 && (bugs.Active("drop-empty-appends") ||
			to < maxTrackedPeers && caught[to] > 0 && caught[to]-1 >= m.GetIndex()) {
			continue // (the planted bug drops probes and recovery appends too)
		}
		kept = append(kept, m)
	}
	return kept
}

// maxTrackedPeers bounds the raft ids dropCommitAnnouncements looks at without allocating;
// messages to higher ids are always sent.
const maxTrackedPeers = 64

// splitLeaderEarly separates a leader's appends and heartbeats, which may go out before the
// leader's own write of the same entries (Raft thesis §10.2.1: the leader writes its log in
// parallel with replicating it), from everything else, which waits for the write.
//
// Why this is safe: a message or an applied entry leaves this member only through a Ready, and a
// Ready is taken only once the previous Ready's sync finished. When Ready k is taken, the commit
// index can only cover entries some follower acknowledged, which this member sent in an earlier
// Ready and wrote before that Ready's sync: so every commit index the leader sends, and every
// entry it applies and acknowledges, is durable on it and on the followers that acknowledged it.
// (Acknowledgements stepped while Ready k-1's sync is pending may commit k-1's entries; they are
// applied only after that sync — applyDurable's bound. In a single-member cluster the leader
// commits on its own, but there is nobody to send to, and entries are applied only after the
// write's sync.)
func splitLeaderEarly(msgs []*pb.Message) (early, late []*pb.Message) {
	n := 0
	for _, m := range msgs {
		if t := m.GetType(); t == pb.MsgApp || t == pb.MsgHeartbeat {
			n++
		}
	}
	if n == len(msgs) {
		return msgs, nil
	}
	if n == 0 {
		return nil, msgs
	}
	early = make([]*pb.Message, 0, n)
	late = make([]*pb.Message, 0, len(msgs)-n)
	for _, m := range msgs {
		if t := m.GetType(); t == pb.MsgApp || t == pb.MsgHeartbeat {
			early = append(early, m)
		} else {
			late = append(late, m)
		}
	}
	return early, late
}
