package replica

import (
	"maps"
	"slices"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// A member that rejoins on a log lacking what this leader believes it holds — its data
// directory was wiped, and it starts unverified (consensus/verify.go) — cannot be repaired by
// this leader: raft's progress never lowers what a follower is believed to hold, so the leader
// would go on probing past the end of the member's log, and the member, refusing its heartbeats,
// would stop for lost data (consensus.LostDataError). The leader hands leadership over instead,
// to its most caught-up other voter: a new leader's progress starts from what the member has, and
// repairs it. It learns of such a member from the member's handshake (unverified, and a log that
// ends before the leader's match index: PeerStanding), and tries again every election timeout
// while it still leads in that term (a transfer raft abandoned, or no other voter to take over).

// noteRejoined records a member's standing on the leader, and hands leadership over when the
// member rejoined on a log that lacks what this leader counts it as holding.
func (r *Replica) noteRejoined(id uint64, s wire.Standing) {
	if !s.Unverified || !r.isLeader() {
		return
	}
	match, ok := r.core.Match(id)
	if !ok || match <= s.Last {
		return
	}
	if r.rejoined == nil {
		r.rejoined = make(map[uint64]rejoined)
	}
	term := r.core.State().Term
	if rj, ok := r.rejoined[id]; ok && rj.term == term {
		r.handOverFor(id) // said once a term: each reconnection would say it again
		return
	}
	r.rejoined[id] = rejoined{term: term}
	r.log.Warn("a member rejoined on a log that lacks what it had acknowledged (a wiped data directory?): "+
		"handing leadership over, so that a new leader repairs it", "member", r.IDOf(id), "raft_id", id, "its_last_index", s.Last,
		"acknowledged", match)
	r.handOverFor(id)
}

// rejoined is what a leader keeps of a member that rejoined lacking what it acknowledged: the term
// the leader learnt it in, and how often it tried again to hand over.
type rejoined struct {
	term  uint64
	tries int
}

// rejoinTries bounds the retries of a hand-over in one term: each one stops the leader from taking
// commands while raft waits for the transfer (an election timeout, if it fails).
const rejoinTries = 3

// retryRejoined hands leadership over again, once an election timeout, at most rejoinTries times,
// while this member still leads in the term it learnt of a rejoined member in; it forgets them
// once it no longer leads.
func (r *Replica) retryRejoined() {
	if len(r.rejoined) == 0 {
		return
	}
	term := r.core.State().Term
	for _, id := range slices.Sorted(maps.Keys(r.rejoined)) { // in order: the simulator repeats runs
		rj := r.rejoined[id]
		switch {
		case !r.isLeader() || rj.term != term:
			delete(r.rejoined, id)
		case r.ticks%r.cfg.ElectionTicks == 0 && rj.tries < rejoinTries:
			rj.tries++
			r.rejoined[id] = rj
			r.handOverFor(id)
		}
	}
}

// handOverFor hands leadership to the most caught-up other voter this leader heard from lately;
// with none, it goes on leading (a transfer to a member that is down would only stop it from
// taking commands for an election timeout), and the rejoined member waits, or stops for lost
// data (consensus.LostDataError).
func (r *Replica) handOverFor(id uint64) {
	if r.shutdownProposed || r.stop != nil {
		return // a leader stopping for a shutdown hands nothing over: the members stop where they are
	}
	if to, ok := r.core.ActiveFollowerBut(id); ok {
		r.core.TransferLeadership(to)
	}
}
