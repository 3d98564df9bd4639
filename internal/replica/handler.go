package replica

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tandem-cluster/tandem/internal/consensus"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
	"github.com/tandem-cluster/tandem/service"
)

// The consensus.Handler side: what the core calls back during Process (send, install a snapshot,
// apply an entry, read states, role changes), the step-down that follows a lost leadership, and
// the egress of what the container answers.

// Send implements consensus.Handler.
func (r *Replica) Send(msgs []*pb.Message) { r.out.SendRaft(msgs) }

// InstallSnapshot implements consensus.Handler.
func (r *Replica) InstallSnapshot(snap *pb.Snapshot) error {
	ix := snap.GetMetadata().GetIndex()
	r.appliedTerm = snap.GetMetadata().GetTerm()
	before, uuidBefore := r.ctr.ClusterVersion(), r.ctr.ClusterUUID()
	if err := r.ctr.Start(snap.GetData(), ix); err != nil {
		return cannotApply(fmt.Errorf("replica: installing snapshot at index %d: %w", ix, err))
	}
	r.lastSnap = ix
	r.stopAtSnapshot(ix, snap.GetMetadata().GetTerm())
	st := r.core.State()
	r.out.Changed(Change{Kind: ChangeSnapshotInstalled, Index: ix, Term: st.Term, Role: r.role, Leader: r.IDOf(st.Leader)})
	// The snapshot's membership replaces what this member had applied.
	r.out.Changed(Change{Kind: ChangeMembers, Index: ix, Term: st.Term, Role: r.role, Leader: r.IDOf(st.Leader)})
	if after := r.ctr.ClusterVersion(); after != before {
		// The raise came inside the snapshot: said as if the entry had been applied here.
		r.out.Changed(Change{Kind: ChangeClusterVersion, Index: ix, Term: st.Term, Role: r.role,
			Leader: r.IDOf(st.Leader), ClusterVersion: after})
	}
	if after := r.ctr.ClusterUUID(); after != uuidBefore {
		r.out.Changed(Change{Kind: ChangeClusterIdentity, Index: ix, Term: st.Term, Role: r.role,
			Leader: r.IDOf(st.Leader), ClusterUUID: after})
	}
	return nil
}

// ApplyEntry implements consensus.Handler.
func (r *Replica) ApplyEntry(e *pb.Entry, cc *pb.ConfChangeV2) error {
	ix := e.GetIndex()
	r.appliedTerm = e.GetTerm()
	var due bool
	switch {
	case e.GetType() != pb.EntryNormal:
		var added bool
		due, added = r.applyConfChange(e, cc)
		r.snapOwed = r.snapOwed || added
	case len(e.GetData()) == 0:
		due = r.ctr.ApplyEmpty(ix)
	default:
		var err error
		if due, err = r.applyData(ix, e.GetTerm(), e.GetData()); err != nil {
			return err
		}
	}
	forced := r.snapForced
	r.snapForced = false
	if (due || r.snapOwed) && !r.snapWriting || forced {
		r.snapOwed = false
		data, err := r.ctr.TakeSnapshot()
		if err != nil {
			return fmt.Errorf("replica: snapshot at index %d: %w", ix, err)
		}
		// The membership as of ix: the core applied this entry's change, if it is one, and
		// nothing after it yet.
		conf := proto.Clone(r.core.ConfState()).(*pb.ConfState)
		if r.snapWriting {
			// An operator's snapshot at this index, while another is written: it follows.
			r.snapQueued = &queuedSnapshot{data: data, ix: ix, conf: conf}
		} else {
			r.snapDue, r.snapDueIx, r.snapDueConf = data, ix, conf
		}
	}
	return nil
}

// applyData applies a committed entry's data. An entry that does not decode, or of a kind this
// build does not know, cannot be skipped (the others applied it): the member stops at its index
// (ErrCannotApply).
func (r *Replica) applyData(ix, term uint64, data []byte) (bool, error) {
	kind, err := wire.EntryKindOf(data)
	if err != nil {
		return false, fmt.Errorf("%w: the entry at index %d: %w", ErrCannotApply, ix, err)
	}
	switch kind {
	case wire.EntryBatch:
		b, err := wire.DecodeBatch(data)
		if err != nil {
			return false, fmt.Errorf("%w: the entry at index %d: %w", ErrCannotApply, ix, err)
		}
		due, err := r.ctr.ApplyBatch(ix, &b)
		if errors.Is(err, container.ErrPrincipalBeforeVersion) {
			return false, fmt.Errorf("%w: %w", ErrCannotApply, err)
		}
		if err != nil {
			return false, fmt.Errorf("replica: applying entry %d: %w", ix, err)
		}
		r.meterApplied(term)
		return due, nil
	case wire.EntryClusterVersion:
		v, err := wire.DecodeClusterVersion(data)
		if err != nil {
			return false, fmt.Errorf("%w: the entry at index %d: %w", ErrCannotApply, ix, err)
		}
		before := r.ctr.ClusterVersion()
		r.raising = false // this leader's raise, or another's: the version in force is known anew
		due, err := r.ctr.ApplyClusterVersion(ix, v)
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrCannotApply, err)
		}
		if after := r.ctr.ClusterVersion(); after != before {
			r.log.Info("cluster version raised", "from", before, "to", after, "index", ix)
			st := r.core.State()
			r.out.Changed(Change{Kind: ChangeClusterVersion, Index: ix, Term: st.Term, Role: r.role,
				Leader: r.IDOf(st.Leader), ClusterVersion: after})
		}
		return due, nil
	case wire.EntryClusterIdentity:
		return r.applyIdentity(ix, data)
	case wire.EntryControl:
		return r.applyControl(ix, term, data)
	}
	return false, fmt.Errorf("%w: the entry at index %d is of %v, which this build does not know (a newer build wrote it)",
		ErrCannotApply, ix, kind)
}

// ReadReady implements consensus.Handler.
func (r *Replica) ReadReady(id uint64, index uint64) {
	reads, ok := r.readWaits[id]
	if !ok {
		return
	}
	delete(r.readWaits, id)
	r.readyReads = append(r.readyReads, readyRead{index: index, reads: reads})
}

// ReadFailed implements consensus.Handler.
func (r *Replica) ReadFailed(id uint64, err error) {
	reads, ok := r.readWaits[id]
	if !ok {
		return
	}
	delete(r.readWaits, id)
	r.failReads(reads, err)
}

// StateChanged implements consensus.Handler.
func (r *Replica) StateChanged(st consensus.State) {
	role := roleOf(st.Role)
	wasLeader := r.isLeader()
	r.role = role
	r.ctr.SetRole(role)
	if role == service.Leader && !wasLeader {
		r.leaderSince = r.ticks
		// A member that applied a current shutdown and leads now (its leader handed over, or
		// crashed, during the wait) proposes nothing more either: it too stops there.
		r.shutdownProposed = r.stop != nil
		// A new term restarts every session's idle clock: the new leader cannot know when the
		// clients last spoke to the old one.
		now := r.clock.Now()
		clear(r.lastActivity)
		for _, id := range r.ctr.SessionIDs() {
			r.lastActivity[id] = now
		}
	}
	if wasLeader && role != service.Leader {
		r.stepDown()
	}
	r.transferProgress()
	r.out.Changed(Change{Kind: ChangeRole, Role: role, Leader: r.IDOf(st.Leader), Term: st.Term})
}

// stepDown drops the leader-only state and sends every attached client to the new leader; their
// in-flight commands are retried there under the same numbers, and dedup answers them once.
func (r *Replica) stepDown() {
	for _, it := range r.pending {
		if conn, ok := r.attached[it.Session]; ok {
			r.redirect(conn, &wire.ClientMsg{Session: it.Session, Seq: it.Seq})
		}
	}
	r.pending, r.pendingBytes, r.raising, r.identifying, r.preferring = nil, 0, false, false, false
	r.meterReset()
	r.failChanges()
	r.failControls()
	st := r.core.State()
	r.failReads(r.newReads, &consensus.NotLeaderError{Leader: st.Leader, Term: st.Term})
	r.newReads = nil
	for _, rr := range r.readyReads {
		r.failReads(rr.reads, &consensus.NotLeaderError{Leader: st.Leader, Term: st.Term})
	}
	r.readyReads = nil
	ids := make([]wire.SessionID, 0, len(r.attached))
	for id := range r.attached {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b wire.SessionID) int { return strings.Compare(string(a[:]), string(b[:])) })
	for _, id := range ids {
		r.redirect(r.attached[id], &wire.ClientMsg{Session: id})
		delete(r.attached, id)
	}
	clear(r.opening)
	clear(r.closing)
	clear(r.lastActivity)
}

// egress routes what the container emits: to the client if it is attached here, else nowhere
// (followers compute the same replies and drop them; so does replay after a restart).
func (r *Replica) egress(m *wire.ClientMsg) {
	switch m.Kind {
	case wire.CAttached:
		delete(r.opening, m.Session)
	case wire.CSessionEvent:
		delete(r.opening, m.Session)
		delete(r.closing, m.Session)
		delete(r.lastActivity, m.Session)
	}
	conn, ok := r.attached[m.Session]
	if !ok {
		return
	}
	switch m.Kind {
	case wire.CSessionEvent:
		delete(r.attached, m.Session)
	case wire.CAttached:
		m = r.attached1(m.Session) // with the limits, which the container does not know
	}
	r.out.SendClient(conn, m)
}
