package consensus

import (
	"errors"
	"fmt"
	"math"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/bugs"
)

// The apply rule: an entry is applied once it is committed and durable here, in index order,
// exactly once. One function applies (applyDurable); its callers differ only in how far the
// rule reaches at their moment of the Ready's cycle (doc.go's diagram):
//
//   - while the pending Ready's sync runs (applyWhileSyncing): through the last index synced
//     before that Ready and not rewritten by it (pendingReady.bound), and no further than the
//     Ready's committed entries — or, on a member that has led in the same term since the Ready
//     was taken, raft's commit index now. Conf changes wait. Why this is safe: deviations.go, 3.
//   - when the Ready finishes, after its sync (applyReady): through its last committed entry,
//     conf changes included, as raft's Ready contract has it.
//
// Raft learns what was applied only from Advance, which covers the Ready's committed entries: the
// entries a leader applied beyond them during a sync come again in a later Ready. That is the
// one reason applyDurable skips entries at or below c.applied (the planted bug ack-before-commit
// relies on it too, for the entries it applies before they commit).

// applyWhileSyncing applies, while the pending Ready's sync runs, what the apply rule allows
// before the sync ends.
func (c *Core) applyWhileSyncing(h Handler, p *pendingReady) error {
	committed := lastIndex(p.rd.CommittedEntries)
	if p.leaderTerm != 0 {
		// A leader's commit index only grows in its term, and its log only grows: the storage
		// holds, up to the bound, raft's entries (deviations.go, 3).
		if bs := c.rn.BasicStatus(); bs.RaftState == raft.StateLeader && bs.GetTerm() == p.leaderTerm {
			committed = bs.GetCommit()
		}
	}
	return c.applyDurable(h, p.rd.CommittedEntries, min(committed, p.bound), false)
}

// applyDurable applies the entries from c.applied+1 through hi in index order — the caller
// vouches that they are committed and durable here — taking each from ents (a Ready's committed
// entries) as far as they reach and from the storage beyond. Without confChanges it stops before
// a conf change, which waits for the end of the Ready that carries it.
func (c *Core) applyDurable(h Handler, ents []*pb.Entry, hi uint64, confChanges bool) error {
	if len(ents) > 0 {
		// Raft hands out committed entries from the one after the last it handed out, and every
		// Ready's were applied before its Advance: never past c.applied+1.
		first := ents[0].GetIndex()
		if first > c.applied+1 {
			return fmt.Errorf("consensus: raft hands out committed entries from index %d, but %d is the last applied",
				first, c.applied)
		}
		ents = ents[min(c.applied+1-first, uint64(len(ents))):] // applied during a sync: see above
	}
	for c.applied < hi {
		if len(ents) == 0 {
			var err error
			ents, err = c.storage.Entries(c.applied+1, hi+1, math.MaxUint64)
			switch {
			case errors.Is(err, raft.ErrCompacted) || errors.Is(err, raft.ErrUnavailable):
				return nil // not expected; the Ready that carries them applies them
			case err != nil:
				c.fail(err)
				return c.err
			case len(ents) == 0:
				return nil
			}
		}
		e := ents[0]
		if e.GetType() != pb.EntryNormal && !confChanges {
			return nil
		}
		if err := c.apply(h, e); err != nil {
			return err
		}
		ents = ents[1:]
	}
	return nil
}

// applyReady installs the Ready's snapshot and applies its committed entries, once its write is
// durable (the Ready contract's step 3).
func (c *Core) applyReady(h Handler, rd *raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := h.InstallSnapshot(rd.Snapshot); err != nil {
			return err
		}
		c.own.installed(rd.Snapshot.GetMetadata().GetTerm())
		c.confState = proto.Clone(rd.Snapshot.GetMetadata().GetConfState()).(*pb.ConfState)
		c.applied = rd.Snapshot.GetMetadata().GetIndex()
	}
	hi := lastIndex(rd.CommittedEntries)
	if bugs.Active(bugs.AckBeforeCommit) && c.state.Role == raft.StateLeader {
		hi = max(hi, c.durable) // planted bug: what this member persisted counts as committed
	}
	return c.applyDurable(h, rd.CommittedEntries, hi, true)
}

func lastIndex(ents []*pb.Entry) uint64 {
	if len(ents) == 0 {
		return 0
	}
	return ents[len(ents)-1].GetIndex()
}

func (c *Core) apply(h Handler, e *pb.Entry) error {
	c.own.applied(e)
	if e.GetType() != pb.EntryNormal {
		return c.applyConfChange(h, e)
	}
	if err := h.ApplyEntry(e, nil); err != nil {
		return err
	}
	c.applied = e.GetIndex()
	c.conf.noteApplied(e, c.state.Term)
	return nil
}
