package consensus

import (
	"sync/atomic"

	pb "go.etcd.io/raft/v3/raftpb"
)

// Failed proposals, counted as etcd's proposals_failed_total counts them: a proposal is an entry
// this member proposed as leader (Propose, ProposeConfChange), and it failed when it was not
// committed:
//
//   - refused at once: raft dropped it (no leader, a leadership transfer under way, the
//     uncommitted-bytes limit), the member had stopped, or another membership change was
//     pending: counted by Propose and ProposeConfChange;
//   - lost in a leader change: appended to this leader's log and never committed, because a
//     later leader's log replaced it. Learnt as this member applies: once it applies an entry
//     of a later term, the entries of that leadership term it did not apply never will be.
//
// Proposals whose fate a snapshot hides (this member installed the leader's snapshot past them)
// are not counted either way. Client requests refused before any proposal (too large, a full
// ingress queue) are not proposals, as in etcd.

// ownTermsMax bounds the leadership terms followed at once; a member that led more terms than
// this with none settled drops the oldest uncounted.
const ownTermsMax = 8

// ownProposals follows the entries this member proposed in each term it led, until their fate
// is known. Loop only, but failed, which any goroutine reads (ProposalsFailed).
type ownProposals struct {
	failed atomic.Int64
	// terms: oldest first. Invariant: terms are increasing, and applied <= proposed in each.
	terms []ownTerm
}

type ownTerm struct{ term, proposed, applied uint64 }

// proposed notes an entry proposed (and appended) as leader of term.
func (o *ownProposals) proposed(term uint64) {
	if n := len(o.terms); n > 0 && o.terms[n-1].term == term {
		o.terms[n-1].proposed++
		return
	}
	if len(o.terms) == ownTermsMax {
		o.terms = o.terms[1:]
	}
	o.terms = append(o.terms, ownTerm{term: term, proposed: 1})
}

// applied notes an applied entry. An entry of a later term settles the terms before it; one of
// the oldest followed term that carries data is one of its proposals (raft's own entries of a
// term, its leader's first and the automatic leave of a joint configuration, carry none).
func (o *ownProposals) applied(e *pb.Entry) {
	for len(o.terms) > 0 && o.terms[0].term < e.GetTerm() {
		t := o.terms[0]
		o.failed.Add(int64(t.proposed - t.applied))
		o.terms = o.terms[1:]
	}
	if len(o.terms) > 0 && o.terms[0].term == e.GetTerm() && len(e.GetData()) > 0 && o.terms[0].applied < o.terms[0].proposed {
		o.terms[0].applied++
	}
}

// installed forgets the terms a snapshot of term covers: what it holds of them is not known.
func (o *ownProposals) installed(term uint64) {
	for len(o.terms) > 0 && o.terms[0].term <= term {
		o.terms = o.terms[1:]
	}
}

// ProposalsFailed returns how many proposals of this member failed (proposals.go says which).
// Safe from any goroutine.
func (c *Core) ProposalsFailed() int64 { return c.own.failed.Load() }
