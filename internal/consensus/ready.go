package consensus

import (
	"encoding/binary"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/bugs"
)

// Process runs Ready cycles until raft has nothing more to do or a cycle waits for its sync,
// following the Ready contract:
//  1. persist the snapshot, then entries, then the hard state, and sync when raft.MustSync
//     (a leader sends its appends and heartbeats just before: splitLeaderEarly);
//  2. send the other messages (only now: they may promise what was just persisted);
//  3. install the snapshot, then apply committed entries (ApplyConfChange for conf changes);
//  4. report read states and expired reads; 5. Advance.
//
// The sync of step 1 is not run by Process: it leaves it pending and returns at once. The driver
// takes it (TakeSync), starts it where it likes, calls Process again — which now applies what was
// durable before (applyWhileSyncing): the disk never waits for the apply — and reports the
// sync's end with SyncDone. Until then the driver goes on calling Step, Tick, Propose and
// ReadIndex, and Process after each input: raft takes them in between Ready and Advance (as its
// own node.go does), everything they produce waits for the next Ready, and a leader applies at
// once the entries they commit that were already durable here (applyDurable). Once the sync is
// reported, the next Process finishes the cycle (steps 2–5) and goes on.
//
// A storage error stops the core for good (sticky); a handler error is returned as is.
func (c *Core) Process(h Handler) error {
	if c.err != nil {
		return c.err
	}
	c.expireReads(h)
	for {
		if p := c.pending; p != nil {
			if !p.done {
				return c.applyWhileSyncing(h, p)
			}
			c.pending = nil
			if p.err != nil {
				c.fail(p.err)
				return c.err
			}
			if err := c.storage.Reclaim(); err != nil {
				c.fail(err)
				return c.err
			}
			c.noteDurable(&p.rd)
			if err := c.finish(h, &p.rd, p.msgs, p.committed[p.next:]); err != nil {
				return err
			}
			continue
		}
		if !c.rn.HasReady() {
			return nil
		}
		rd := c.rn.Ready()
		msgs := rd.Messages
		role := c.state.Role
		if rd.SoftState != nil {
			role = rd.SoftState.RaftState
		}
		if role == raft.StateLeader && len(msgs) > 0 {
			msgs = c.dropCommitAnnouncements(msgs)
			var early []*pb.Message
			early, msgs = splitLeaderEarly(msgs)
			if len(early) > 0 {
				c.send(h, early)
			}
		}
		if bugs.Active("send-before-persist") && len(msgs) > 0 {
			c.send(h, msgs) // planted bug: every role sends before its write is durable
			msgs = nil
		}
		syncing, err := c.write(&rd)
		if err != nil {
			c.fail(err)
			return c.err
		}
		committed := rd.CommittedEntries
		if !syncing {
			if err := c.finish(h, &rd, msgs, committed); err != nil {
				return err
			}
			continue
		}
		// While the sync is pending, what this member synced before this Ready may be applied
		// (a rewritten suffix is not synced): applyWhileSyncing, once the sync runs. Nothing is
		// applied before the driver has taken the sync, so that the disk starts at once.
		bound := c.durable
		if len(rd.Entries) > 0 {
			bound = min(bound, rd.Entries[0].GetIndex()-1)
		}
		p := &pendingReady{rd: rd, msgs: msgs, committed: committed, bound: bound}
		p.job = c.storage.Sync
		if role == raft.StateLeader {
			p.leaderTerm = c.rn.BasicStatus().GetTerm()
		}
		c.pending = p
		return nil
	}
}

// pendingReady is a Ready whose write waits for its sync.
type pendingReady struct {
	rd        raft.Ready
	msgs      []*pb.Message // to send once the sync finished
	committed []*pb.Entry   // to apply: committed[:next] while the sync runs, the rest after it
	next      int
	// bound is the last index this member had synced before this Ready (and that the Ready
	// does not rewrite); leaderTerm the term in which this member led when the Ready was taken
	// (0 if it did not).
	bound, leaderTerm uint64
	job               func() error // the sync, until the driver takes it
	done              bool
	err               error
}

// TakeSync returns the sync the pending Ready waits for, once: the driver starts it (on another
// goroutine, or later in simulated time), calls Process (which applies meanwhile what was durable
// before), and reports the result with SyncDone. It returns nil when no sync is waiting to be
// taken.
//
// While the sync runs the driver may call Step, Tick, Propose, ReadIndex, CreateSnapshot,
// SnapshotDone and Process, which read the storage (Term, Entries, FirstIndex, LastIndex, Snapshot) and record
// snapshots but never append: Storage.Sync is written to allow that.
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

// send hands msgs to the handler, noting what Step's checks need to know of them.
func (c *Core) send(h Handler, msgs []*pb.Message) {
	c.val.noteSent(msgs)
	h.Send(msgs)
}

// finish completes a Ready once what it wrote is durable: steps 2–5 of Process.
func (c *Core) finish(h Handler, rd *raft.Ready, msgs []*pb.Message, committed []*pb.Entry) error {
	if rd.SoftState != nil || rd.HardState != nil {
		c.noteState(h, rd.SoftState, rd.HardState)
	}
	if len(msgs) > 0 {
		c.send(h, msgs)
	}
	if bugs.Active("ack-before-commit") && c.state.Role == raft.StateLeader {
		// Planted bug: treat what this member persisted as committed.
		for _, e := range rd.Entries {
			if e.GetIndex() != c.applied+1 || e.GetType() != pb.EntryNormal {
				break
			}
			if err := c.apply(h, e); err != nil {
				return err
			}
		}
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := h.InstallSnapshot(rd.Snapshot); err != nil {
			return err
		}
		c.confState = proto.Clone(rd.Snapshot.GetMetadata().GetConfState()).(*pb.ConfState)
		c.applied = rd.Snapshot.GetMetadata().GetIndex()
	}
	for _, e := range committed {
		if e.GetIndex() <= c.applied {
			continue // applied while a sync was pending (or under the planted ack-before-commit bug)
		}
		if err := c.apply(h, e); err != nil {
			return err
		}
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
		if err := c.storage.Reclaim(); err != nil {
			return false, err
		}
		c.noteDurable(rd)
		return false, nil
	}
	if bugs.Active("vote-not-synced") && len(rd.Entries) == 0 {
		return false, nil // planted bug: a term or vote alone is written but not synced
	}
	return rd.MustSync, nil
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
