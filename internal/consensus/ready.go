package consensus

import (
	"encoding/binary"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/bugs"
)

// Process runs Ready cycles, following raft's Ready contract, until raft has nothing more to do
// or a cycle waits for its sync. What each call does depends on where the cycle stands (the
// states of doc.go's diagram, the cases below); inputs (Step, Tick, Propose, ReadIndex) may come
// between any two calls.
//
// A storage error stops the core for good (sticky); a handler error is returned as is.
func (c *Core) Process(h Handler) error {
	if c.err != nil {
		return c.err
	}
	c.expireReads(h)
	for {
		p := c.pending
		switch {
		case p == nil && !c.rn.HasReady(): // idle
			return nil
		case p == nil: // idle, with a Ready to take: written, then synced at once or pending
			if err := c.takeReady(h); err != nil {
				return err
			}
		case p.job != nil: // written: the driver has not taken the sync
			return nil // nothing is applied before the disk starts
		case !p.done: // syncing
			return c.applyWhileSyncing(h, p)
		default: // synced
			if err := c.finishSynced(h, p); err != nil {
				return err
			}
		}
	}
}

// takeReady takes raft's Ready and writes it: a leader's appends and heartbeats go out first
// (deviations.go, 1 and 2). A Ready that needs no sync is finished at once; otherwise it is left
// pending with its sync for the driver to take.
func (c *Core) takeReady(h Handler) error {
	rd := c.rn.Ready()
	msgs := rd.Messages
	role := c.state.Role
	if rd.SoftState != nil {
		role = rd.SoftState.RaftState
	}
	if len(msgs) > 0 {
		term := c.state.Term
		if !raft.IsEmptyHardState(rd.HardState) {
			term = rd.HardState.GetTerm()
		}
		msgs = dropStaleAppendAnswers(msgs, term) // deviations.go, 6
	}
	if role == raft.StateLeader && len(msgs) > 0 {
		msgs = c.dropCommitAnnouncements(msgs, rd.CommittedEntries)
		var early []*pb.Message
		early, msgs = splitLeaderEarly(msgs)
		if len(early) > 0 {
			c.send(h, early)
		}
	}
	if bugs.Active(bugs.SendBeforePersist) && len(msgs) > 0 {
		c.send(h, msgs) // planted bug: every role sends before its write is durable
		msgs = nil
	}
	syncing, err := c.write(&rd)
	if err != nil {
		c.fail(err)
		return c.err
	}
	if !syncing {
		return c.finish(h, &rd, msgs)
	}
	// While the sync runs, what this member synced before this Ready may be applied (a
	// rewritten suffix is not synced): applyWhileSyncing.
	bound := c.durable
	if len(rd.Entries) > 0 {
		bound = min(bound, rd.Entries[0].GetIndex()-1)
	}
	p := &pendingReady{rd: rd, msgs: msgs, bound: bound}
	p.job = c.storage.Sync
	if role == raft.StateLeader {
		p.leaderTerm = c.rn.BasicStatus().GetTerm()
	}
	c.pending = p
	return nil
}

// write persists the Ready's snapshot, entries and hard state. A snapshot is synced at once (and
// the log compacted); otherwise write reports whether raft.MustSync: the sync is left pending.
func (c *Core) write(rd *raft.Ready) (syncing bool, err error) {
	snap := !raft.IsEmptySnap(rd.Snapshot)
	if snap {
		if err := c.storage.SaveSnapshot(rd.Snapshot); err != nil {
			return false, err
		}
	}
	if len(rd.Entries) > 0 || !raft.IsEmptyHardState(rd.HardState) {
		if err := c.storage.Append(rd.HardState, rd.Entries); err != nil {
			return false, err
		}
	}
	if snap {
		if err := c.storage.Sync(); err != nil {
			return false, err
		}
		if err := c.reclaim(); err != nil {
			return false, err
		}
		c.noteDurable(rd)
		return false, nil
	}
	if bugs.Active(bugs.VoteNotSynced) && len(rd.Entries) == 0 {
		return false, nil // planted bug: a term or vote alone is written but not synced
	}
	return rd.MustSync, nil
}

// send hands msgs to the handler, noting what Step's checks need to know of them.
func (c *Core) send(h Handler, msgs []*pb.Message) {
	c.val.noteSent(msgs)
	h.Send(msgs)
}

// pendingReady is a Ready whose write waits for its sync.
type pendingReady struct {
	rd   raft.Ready
	msgs []*pb.Message // to send once the sync finished
	// bound is the last index this member had synced before this Ready (and that the Ready
	// does not rewrite); leaderTerm the term in which this member led when the Ready was taken
	// (0 if it did not).
	bound, leaderTerm uint64
	// Invariant: job is the sync until the driver takes it (nil after); done and err, the sync's
	// result, are set by SyncDone only after that.
	job  func() error
	done bool
	err  error
}

// TakeSync returns the sync the pending Ready waits for, once: the driver starts it (on another
// goroutine, or later in simulated time), calls Process (which applies meanwhile what was durable
// before), and reports the result with SyncDone. It returns nil when no sync is waiting to be
// taken.
//
// While the sync runs the driver may call Step, Tick, Propose, ReadIndex, CreateSnapshot,
// SnapshotDone and Process, which read the storage (Term, Entries, FirstIndex, LastIndex,
// Snapshot) and record snapshots but never append: Storage.Sync is written to allow that.
func (c *Core) TakeSync() func() error {
	if c.pending == nil || c.pending.job == nil {
		return nil
	}
	job := c.pending.job
	c.pending.job = nil
	return job
}

// SyncPending reports whether a Ready waits for its sync (taken or not).
func (c *Core) SyncPending() bool { return c.pending != nil && !c.pending.done }

// SyncDone reports the result of the sync TakeSync returned. The next Process finishes the Ready.
func (c *Core) SyncDone(err error) {
	if c.pending == nil || c.pending.job != nil || c.pending.done {
		panic("consensus: SyncDone without a sync taken")
	}
	c.pending.done, c.pending.err = true, err
}

// finishSynced finishes the pending Ready once the driver reported its sync: a failed sync stops
// the core; otherwise the log that snapshots released is reclaimed and the Ready completed.
func (c *Core) finishSynced(h Handler, p *pendingReady) error {
	c.pending = nil
	if p.err != nil {
		c.fail(p.err)
		return c.err
	}
	if err := c.reclaim(); err != nil {
		c.fail(err)
		return c.err
	}
	c.noteDurable(&p.rd)
	return c.finish(h, &p.rd, p.msgs)
}

// noteDurable records what the Ready's sync made durable.
func (c *Core) noteDurable(rd *raft.Ready) {
	if !raft.IsEmptySnap(rd.Snapshot) {
		c.durable = rd.Snapshot.GetMetadata().GetIndex()
	}
	if n := len(rd.Entries); n > 0 {
		c.durable = rd.Entries[n-1].GetIndex()
	}
}

// finish completes a Ready once what it wrote is durable: it sends the messages that waited for
// the write, applies (applyReady), reports read states and calls Advance.
func (c *Core) finish(h Handler, rd *raft.Ready, msgs []*pb.Message) error {
	if rd.SoftState != nil || rd.HardState != nil {
		c.noteState(h, rd.SoftState, rd.HardState)
	}
	if len(msgs) > 0 {
		c.send(h, msgs)
	}
	if err := c.applyReady(h, rd); err != nil {
		return err
	}
	for _, rs := range rd.ReadStates {
		if len(rs.RequestCtx) != 8 {
			continue
		}
		id := binary.LittleEndian.Uint64(rs.RequestCtx)
		if _, ok := c.reads[id]; ok {
			delete(c.reads, id)
			h.ReadReady(id, rs.Index)
		}
	}
	c.rn.Advance(*rd)
	c.checkVerified()
	return nil
}
