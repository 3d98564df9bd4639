package consensus

import (
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/tandem-cluster/tandem/internal/bugs"
)

// Deviations from stock raft usage.
//
// The core runs raft's Ready contract (doc.go) as written, but in the places below, each chosen
// for speed, each with the argument that it is safe. doc.go lists them; the code points here.
//
// 1. A leader's appends and heartbeats go out before its own write (splitLeaderEarly).
//
// Stock usage sends a Ready's messages once its write is durable. A leader here sends its appends
// and heartbeats at once, and writes the same entries meanwhile (Raft thesis §10.2.1: the leader
// writes its log in parallel with replicating it), so that its fsync overlaps its followers';
// every other message (votes and their answers, snapshots, acknowledgements) waits for the write.
//
// Why this is safe: what a follower acts on in these messages is entries and a commit index.
// Entries the leader has not made durable yet harm nothing in a follower's log, and cannot
// commit on the leader's word: raft counts the leader's own copy only once its write is durable
// (its acknowledgement to itself is stepped at Advance). The commit index: a Ready is taken only
// once the previous Ready's sync finished, so when Ready k is taken, its commit index can only
// cover entries some follower acknowledged, which this member sent in an earlier Ready and wrote
// before that Ready's sync finished: every commit index the leader sends, and every entry it
// applies and acknowledges, is durable on it and on the followers that acknowledged it.
// Acknowledgements stepped while Ready k-1's sync runs may commit k-1's own entries; they are
// applied only after that sync (the bound of 3). In a single-member cluster the leader commits on
// its own, but there is nobody to send to, and entries are applied only after the write's sync.
//
// 2. A leader does not announce a new commit index to followers that hold every entry
// (dropCommitAnnouncements).
//
// Raft sends an append without entries to every follower each time the commit index moves. Under
// light load that doubled the messages of every command — the announcement, its
// acknowledgement, and on the follower a Ready of its own (a hard state record, an apply, an
// answer). The leader drops those sent to a follower that has acknowledged every entry they
// follow (StateReplicate, Match at or past the append's index): the follower learns the commit
// index instead from the next append, which carries it, or the next heartbeat (raft sends
// min(Match, commit) with each one), so under load it applies one round later and at rest within
// a heartbeat interval.
//
// Why this is safe: dropping any message is what a lossy network does, and raft copes; here raft
// has recorded the commit as sent (sentCommit) and the heartbeat carries it again. Nothing else
// waits for the follower's commit index: commands are answered by the leader, and a leader
// elected later commits its own entry before it applies. Appends a follower may need — probes
// (StateProbe), and the empty appends a throttled StateReplicate sends to recover lost
// messages, whose index is past the follower's Match — are kept.
//
// Except when the Ready commits a membership change: those announcements are kept. A follower's
// configuration, and so the quorum its elections need, is the one it has applied, so it follows
// its commit index; and a leader whose own removal commits steps down (StepDownOnRemoval) and
// stops as soon as it applies it, so no heartbeat ever carries the commit index. Dropped there,
// the announcement left the remaining voters in the old configuration, counting the removed
// leader's vote: soak seed 395 052, voters 1–4 with 2 lost for good, 1 removed while 3 and 4
// held the change uncommitted — they needed three votes of four and had two, for ever.
//
// 3. Committed entries are applied while a Ready's sync runs (apply.go: the apply rule).
//
// Stock usage applies a Ready's committed entries after its write is durable, and only those.
// Here, once the driver has started the sync (never before: the disk starts first), the member
// applies the committed entries that were durable before the Ready: the Ready's own, and on a
// leader also those that commit meanwhile (acknowledgements stepped during the sync), read back
// from the storage. So the disk never waits for the state machine, and a leader answers a
// command once a quorum has it, not one sync later.
//
// Why this is safe: an entry is applied only when it is
//   - committed: it is among the Ready's committed entries, or this member has led in the same
//     term since the Ready was taken (terms only grow: leading in that term now means leading
//     throughout) and the entry is at or below raft's commit index;
//   - durable here as raft has it: at or below the bound, the last index synced before the Ready
//     that the Ready does not rewrite. When the Ready is taken the storage holds raft's entries
//     up to the bound (whatever raft rewrote since the last write is among the Ready's entries,
//     above the bound), and goes on holding them while the member leads in the same term (a
//     leader's log only grows in its term). A member that no longer leads may step an append from
//     a newer leader that rewrites raft's log past the commit index while the storage still holds
//     the old entries: it applies only the Ready's committed entries, fixed when it was taken.
//     Across a crash the storage keeps a prefix containing all that was synced: the member finds
//     every entry it applied in its log or snapshot, and applies the same ones again (committed
//     entries never change, and every later leader holds them);
//   - not a conf change: a conf change waits for the Ready that carries it, where raft expects it
//     applied (ApplyConfChange); Tandem writes them only at bootstrap.
//
// The Ready's hard state, which carries the commit index, may not be durable yet when its
// entries are applied; stock raft does not sync for a commit index alone either (raft.MustSync).
// Raft learns what was applied only at Advance, for the Ready's committed entries: those a leader
// applied beyond them come again in a later Ready, and are skipped (apply.go). Raft reads them
// from the storage then, so the log is not compacted behind a snapshot taken among them until
// raft's applied index reaches it (Core.reclaim; compacting at once made raft panic at the next
// Ready, simulator seed 395721).
//
// 4. A Ready hands out more committed entries than raft's default (Config.MaxCommittedBytesPerReady).
//
// Raft counts an entry against the uncommitted limit (Config.MaxUncommittedBytes) until the Ready
// that hands it out as committed is advanced, and a Ready hands out at most
// MaxCommittedSizePerReady bytes of them (by default MaxSizePerMsg). A leader that applies and
// answers during its syncs (3) lets its clients go on at the rate of its syncs, faster than
// raft's default share per Ready brings the count down: the count reached the limit though what
// it counted had committed, and raft dropped proposals (ErrDropped). The driver raises the share
// (the replica's raftCommittedBytesPerReadyMax says why and by how much).
//
// Why this is safe: only how many committed entries a Ready carries changes, not which entries
// are applied nor in which order; the cost is the memory of one Ready's committed entries.
//
// 5. Messages from the network are checked before raft sees them (validate.go).
//
// Raft trusts its peers: Step refuses what raft would panic on and what no honest member sends,
// and stops a member whose log lost what it had acknowledged (LostDataError). Why an honest
// message is never refused is argued at each check in validate.go.

// 6. A member does not send an append's answer from an earlier term than its own
// (dropStaleAppendAnswers).
//
// Raft queues an answer to an append, to go out with the Ready that persists what it answers
// (msgsAfterAppend). A member may step, between two Readys, an append of term t (the answer
// acknowledges its entries up to index i) and then one of a newer leader that truncates those
// entries before they were ever written; raft still sends the first answer, of term t, with the
// Ready that persists the truncation. A leader of term t that has not yet learned of the newer
// term would count an acknowledgement of entries this member never held. (The simulator's
// durability check found it: soak seed 267 237, a follower whose disk stalled through a newer
// leader's rewrite of its tail.)
//
// Why dropping them is safe: an answer of an earlier term is useless to every leader but the
// deposed one (raft ignores messages of lower terms), and dropping a message is what a lossy
// network does; the deposed leader learns the newer term from the next message this member
// sends it, or the newer leader's.
//
// 7. A member on an empty log neither votes nor campaigns until it is verified, and a leader
// drops a rejection at a follower's match index: both in verify.go, with the argument.

// dropStaleAppendAnswers removes the answers to appends (MsgAppResp) of a term below term, the
// member's own after the Ready: deviation 6.
func dropStaleAppendAnswers(msgs []*pb.Message, term uint64) []*pb.Message {
	kept := msgs[:0:0]
	for _, m := range msgs {
		if m.GetType() == pb.MsgAppResp && m.GetTerm() < term {
			continue
		}
		kept = append(kept, m)
	}
	if len(kept) == len(msgs) {
		return msgs
	}
	return kept
}

// dropCommitAnnouncements removes from a leader's messages the appends without entries to a
// follower that has acknowledged every entry they follow (StateReplicate, Match at or past the
// append's index): they only announce a new commit index. It keeps them all when committed, the
// Ready's committed entries, holds a membership change. Deviation 2, at the top of this file.
func (c *Core) dropCommitAnnouncements(msgs []*pb.Message, committed []*pb.Entry) []*pb.Message {
	for _, e := range committed {
		if t := e.GetType(); t == pb.EntryConfChange || t == pb.EntryConfChangeV2 {
			return msgs
		}
	}
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
		if to := m.GetTo(); m.GetType() == pb.MsgApp && len(m.GetEntries()) == 0 && (bugs.Active(bugs.DropEmptyAppends) ||
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

// splitLeaderEarly separates a leader's appends and heartbeats, which go out before its own
// write of the same entries, from everything else, which waits for the write. Deviation 1, at the
// top of this file.
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
