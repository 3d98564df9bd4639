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

// applyWhileSyncing runs while the pending Ready's sync runs (not before the driver took it):
// it applies the Ready's committed entries up to the bound — what this member had synced before
// it; on a leader, all of them: an entry commits only after a follower's acknowledgement was
// stepped, after the Ready that sent it, whose sync had finished — and then, on a leader, what
// commits meanwhile (applyDurable). Only h.ApplyEntry runs: a conf change waits for the sync,
// since applying one may read the log. finish skips what was applied here.
func (c *Core) applyWhileSyncing(h Handler, p *pendingReady) error {
	if p.job != nil || bugs.Active("ack-before-commit") {
		return nil
	}
	for p.next < len(p.committed) {
		e := p.committed[p.next]
		if e.GetIndex() > p.bound || e.GetType() != pb.EntryNormal {
			break
		}
		if e.GetIndex() > c.applied {
			if err := c.apply(h, e); err != nil {
				return err
			}
		}
		p.next++
	}
	return c.applyDurable(h)
}

// applyDurable runs while a sync is pending: on a leader, it applies the entries that commit
// meanwhile (a follower's acknowledgement stepped during the sync) if this member had synced them
// before the pending Ready. Raft will hand them out again in a later Ready; they are skipped then.
//
// Why this is safe: the entries are committed (raft's commit index) and durable here; the leader
// has led since the pending Ready was taken, in the same term, so its log only grew and the
// storage holds, up to the bound, exactly raft's entries. It stops at a conf change, which waits
// for the Ready that carries it.
func (c *Core) applyDurable(h Handler) error {
	p := c.pending
	if p.leaderTerm == 0 || bugs.Active("ack-before-commit") {
		return nil
	}
	bs := c.rn.BasicStatus()
	if bs.RaftState != raft.StateLeader || bs.GetTerm() != p.leaderTerm {
		return nil
	}
	hi := min(bs.GetCommit(), p.bound)
	if hi <= c.applied {
		return nil
	}
	ents, err := c.storage.Entries(c.applied+1, hi+1, math.MaxUint64)
	switch {
	case errors.Is(err, raft.ErrCompacted) || errors.Is(err, raft.ErrUnavailable):
		return nil // not expected; the Ready that carries them applies them
	case err != nil:
		c.fail(err)
		return c.err
	}
	for _, e := range ents {
		if e.GetType() != pb.EntryNormal {
			break
		}
		if err := c.apply(h, e); err != nil {
			return err
		}
	}
	return nil
}

func (c *Core) apply(h Handler, e *pb.Entry) error {
	var cc *pb.ConfChange
	switch e.GetType() {
	case pb.EntryConfChange:
		cc = new(pb.ConfChange)
		if err := proto.Unmarshal(e.GetData(), cc); err != nil {
			return fmt.Errorf("consensus: conf change at index %d: %w", e.GetIndex(), err)
		}
		c.confState = c.rn.ApplyConfChange(cc)
	case pb.EntryConfChangeV2:
		return fmt.Errorf("consensus: joint conf changes are not supported (index %d)", e.GetIndex())
	}
	if err := h.ApplyEntry(e, cc); err != nil {
		return err
	}
	c.applied = e.GetIndex()
	return nil
}
