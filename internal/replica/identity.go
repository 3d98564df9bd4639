package replica

import (
	"crypto/rand"
	"fmt"
	"io"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// The cluster's identity (wire.ClusterUUID): who draws it and when.
//
// A cluster's human name (--cluster-id, "tandem" by default) is shared by every cluster started
// with the defaults, so it cannot tell one cluster's data from another's. The identity can: 16
// random bytes, drawn once by a leader and committed in the log (wire.EntryClusterIdentity), so
// every member applies the same one and keeps it in its snapshots and its data directory's
// IDENTITY file; the transport checks it in every member handshake, and clients hear it when
// they attach.
//
// The leader proposes it from Tick, like a raise of the cluster version (versions.go): once the
// cluster version in force is 3 or more (older builds would stop at the entry), the applied state
// holds no identity, and it applied everything of its predecessors (so "holds no identity" is
// the state its term starts from, not a lag), with one proposal of its own in flight. Two
// leaders in turn may both propose one (the first was not yet committed when its leader lost
// office): the first applied wins on every member (container.ApplyClusterIdentity), a later one
// changes nothing.

// maybeProposeIdentity proposes the cluster's identity on a leader whose state holds none.
func (r *Replica) maybeProposeIdentity() {
	if r.identifying || r.raising || r.appliedTerm != r.core.State().Term ||
		r.ctr.ClusterVersion() < 3 || !r.ctr.ClusterUUID().IsZero() {
		return
	}
	var u wire.ClusterUUID
	src := r.cfg.Rand
	if src == nil {
		src = rand.Reader
	}
	if _, err := io.ReadFull(src, u[:]); err != nil || u.IsZero() {
		r.log.Warn("drawing the cluster's identity failed; will try again", "err", err)
		return
	}
	if err := r.core.Propose(wire.AppendClusterIdentity(nil, u)); err != nil {
		r.log.Warn("proposing the cluster's identity failed; will try again", "err", err)
		return
	}
	r.log.Info("the cluster has no identity yet: proposing one", "cluster_uuid", u.String())
	r.identifying = true
}

// applyIdentity applies an identity entry: the first one applied is the cluster's. One below
// cluster version 3 is never proposed: the member stops there (ErrCannotApply).
func (r *Replica) applyIdentity(ix uint64, data []byte) (bool, error) {
	u, err := wire.DecodeClusterIdentity(data)
	if err != nil {
		return false, fmt.Errorf("%w: the entry at index %d: %w", ErrCannotApply, ix, err)
	}
	r.identifying = false // this leader's, or another's: the state says anew whether one is needed
	due, recorded, err := r.ctr.ApplyClusterIdentity(ix, u)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrCannotApply, err)
	}
	if recorded {
		r.log.Info("cluster identity recorded", "cluster_uuid", u.String(), "index", ix)
		st := r.core.State()
		r.out.Changed(Change{Kind: ChangeClusterIdentity, Index: ix, Term: st.Term, Role: r.role,
			Leader: r.IDOf(st.Leader), ClusterUUID: u})
	}
	return due, nil
}
