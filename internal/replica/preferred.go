package replica

import (
	"slices"
	"time"

	"go.etcd.io/raft/v3/tracker"

	"github.com/tandem-cluster/tandem/internal/container"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// The preferred leader (RocketMQ DLedger's preferredLeaderIds; ARCHITECTURE decision 19).
//
// The preference is replicated state (container.Preferred): member ids, most preferred first,
// set by tandem cluster set-preferred-leader, or at founding by the members' --preferred-leader
// (a leader proposes its configured value once, if the cluster never had one). The leader yields
// to the first preferred member, ranked above itself, that is ready: a voter it heard from within
// an election timeout, replicating (raft's StateReplicate) and within preferLagMax entries of the
// leader's log. Hysteresis, so that a flapping member cannot make leadership flap:
//
//   - the leader looks once a second, and yields only after preferStableChecks looks in a row
//     found the same member ready: a member that is up, or caught up, for less than about five
//     seconds at a time never gets leadership by preference;
//   - a leader yields no sooner than preferTenure after it took office, so every change of
//     leader is followed by that much calm;
//   - nothing is yielded while a membership change, a shutdown or a transfer is under way.
//
// A transfer that fails (the member did not take over within an election timeout: raft gives up)
// costs nothing but the wait: the leader keeps leading, and its next looks start from zero.

const (
	preferCheckEvery   = time.Second
	preferStableChecks = 5
	preferTenure       = 5 * time.Second
	preferLagMax       = 1000
)

// ticksOf converts a duration into ticks (at least one).
func (r *Replica) ticksOf(d time.Duration) int {
	return max(1, int(d/r.cfg.TickInterval))
}

// maybeProposePreferred proposes the founding preference on a leader, once: the cluster version
// allows, the state never had one, and this leader applied everything of its predecessors.
func (r *Replica) maybeProposePreferred() {
	if len(r.cfg.PreferredLeaders) == 0 || r.preferring || r.appliedTerm != r.core.State().Term ||
		r.ctr.ClusterVersion() < container.ClusterVersionControl {
		return
	}
	cur, set := r.ctr.Preferred()
	if set {
		if !r.prefWarned && !slices.Equal(cur, r.cfg.PreferredLeaders) {
			r.prefWarned = true
			r.log.Warn("--preferred-leader is only the founding value: the cluster's preference, set since, rules "+
				"(tandem cluster set-preferred-leader changes it)", "configured", r.cfg.PreferredLeaders, "cluster", cur)
		}
		return
	}
	ctl := wire.Control{Op: wire.ControlPreferred, Preferred: r.cfg.PreferredLeaders}
	if err := r.core.Propose(wire.AppendControl(nil, &ctl)); err != nil {
		r.log.Warn("proposing the founding preferred leaders failed; will try again", "err", err)
		return
	}
	r.log.Info("proposing the founding preferred leaders", "preferred", ctl.Preferred)
	r.preferring = true
}

// preferredReady returns the raft id of the first preferred member (ranked above this leader,
// if above) that is ready to lead.
func (r *Replica) preferredReady(above bool) (uint64, bool) {
	prefs, _ := r.ctr.Preferred()
	rank := slices.Index(prefs, r.cfg.MemberID)
	if rank < 0 || !above {
		rank = len(prefs)
	}
	prs := r.core.Progress()
	last := r.core.LastIndex()
	for _, id := range prefs[:rank] {
		m, ok := r.member(id)
		if !ok || m.Learner || m.RaftID == r.self {
			continue
		}
		pr, ok := prs[m.RaftID]
		at, heard := r.heard[m.RaftID]
		if ok && heard && r.ticks-at <= r.cfg.ElectionTicks && pr.State == tracker.StateReplicate &&
			pr.Match > 0 && pr.Match+preferLagMax >= last {
			return m.RaftID, true
		}
	}
	return 0, false
}

// maybeYieldToPreferred, on the leader, hands leadership to the preferred member that is ready,
// with the hysteresis above.
func (r *Replica) maybeYieldToPreferred() {
	if r.ticks%r.ticksOf(preferCheckEvery) != 0 {
		return
	}
	to, ok := r.preferredReady(true)
	if !ok || r.appliedTerm != r.core.State().Term || r.core.ConfChangePending() || len(r.changes) > 0 || len(r.controls) > 0 ||
		r.core.Status().LeadTransferee != 0 {
		r.prefCand, r.prefStreak = 0, 0
		return
	}
	if to != r.prefCand {
		r.prefCand, r.prefStreak = to, 0
	}
	r.prefStreak++
	if r.prefStreak < preferStableChecks || r.ticks-r.leaderSince < r.ticksOf(preferTenure) {
		return
	}
	r.prefCand, r.prefStreak = 0, 0
	r.log.Info("handing leadership to a preferred member that is ready", "member", r.IDOf(to))
	r.core.TransferLeadership(to)
}

// PreferredTarget returns the raft id of the member a leader stopped with Ctrl+C should hand
// leadership to: the first preferred member that is ready, else the most caught-up voter.
func (r *Replica) PreferredTarget() (uint64, bool) {
	if to, ok := r.preferredReady(false); ok {
		return to, true
	}
	return r.core.BestFollower()
}
