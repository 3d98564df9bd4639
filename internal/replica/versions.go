package replica

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// The cluster version (container's versions.go says what it decides): who raises it and when.
//
// The leader raises it, automatically, to the highest version every member of the applied
// configuration (voters and learners) can apply, once each has said so in its member handshake
// (PeerClusterVersion) — never on its own word for a member it has not heard. Automatically,
// because this is what an upgrade is for, and because it is safe: a member that cannot apply
// the new version holds it back by what it reports. An operator who wants to keep the option of
// going back to the older build holds the version with node.Config.MaxClusterVersion on any one
// member. (etcd does the same: its leader sets the cluster version to the lowest server version
// among the members, automatically.)
//
// A report can be stale: a member that reported 2 may have been restarted on an older build just
// as the raise was proposed. That member then stops at the raise with a ClusterVersionError
// (loudly, never skipping the entry), and starts again once it runs a build that can apply it.
// So the rule for operators: downgrade only before the version was raised (docs/COMPATIBILITY.md).

// ErrCannotApply: a committed entry (or snapshot) holds what this member cannot apply — an entry
// that does not decode, of a kind this build does not know, or a cluster version above what it
// applies. The member stops at that index; it never skips the entry, which the others applied.
var ErrCannotApply = errors.New("replica: a committed entry this member cannot apply")

// cannotApply wraps err with ErrCannotApply when it says that a snapshot needs what this member
// does not apply (a cluster version above its own, or a newer build's format).
func cannotApply(err error) error {
	if errors.Is(err, container.ErrClusterVersion) || errors.Is(err, container.ErrNewerFormat) {
		return fmt.Errorf("%w: %w", ErrCannotApply, err)
	}
	return err
}

// PeerClusterVersion reports the highest cluster version a member can apply, as it said in its
// member handshake (the transport learns it on every connection, in both directions). The
// latest report wins.
func (r *Replica) PeerClusterVersion(id uint64, max uint16) {
	if r.peerClusterMax == nil {
		r.peerClusterMax = make(map[uint64]uint16)
	}
	r.peerClusterMax[id] = max
}

// clusterVersionTarget returns the highest cluster version every member of the applied
// configuration can apply, or 0 while a member has not reported.
func (r *Replica) clusterVersionTarget() uint16 {
	target := r.ctr.ClusterVersionMax()
	if bugs.Active(bugs.RaiseUnreported) {
		return target // planted bug: this leader's word for every member
	}
	cs := r.core.ConfState()
	for _, id := range slices.Concat(cs.GetVoters(), cs.GetLearners()) {
		if id == r.self {
			continue
		}
		v, ok := r.peerClusterMax[id]
		if !ok {
			return 0
		}
		target = min(target, v)
	}
	return target
}

// maybeRaiseClusterVersion proposes a raise on the leader, once it applied everything of its
// predecessors (so the version it sees is the one in force) and no raise of its own is under way.
func (r *Replica) maybeRaiseClusterVersion() {
	if r.raising || r.appliedTerm != r.core.State().Term {
		return
	}
	cur := r.ctr.ClusterVersion()
	target := r.clusterVersionTarget()
	if target <= cur {
		return
	}
	if err := r.core.Propose(wire.AppendClusterVersion(nil, target)); err != nil {
		r.log.Warn("proposing a raise of the cluster version failed; will try again", "from", cur, "to", target, "err", err)
		return
	}
	r.log.Info("every member applies a newer cluster version: raising it", "from", cur, "to", target)
	r.raising = true
}
