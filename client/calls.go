package client

import "github.com/tandem-cluster/tandem/internal/wire"

// calls holds a session's unanswered commands by number, in a ring: the numbers from low (the
// lowest unanswered one) to next-1, the slot of seq being ring[seq & (len(ring)-1)] (nil once
// answered). Numbers are handed out one by one, so a ring answers "which call is this answer
// for?" without hashing, and keeps them in order for a resend. Its span — next-low, gaps
// included — is what Config.MaxInFlight bounds, as the cluster bounds a session's response
// window by the same span.
//
// Invariants: low <= next, next-low <= len(ring) (a power of two), the slot of low holds a call
// unless low == next, and n counts the non-nil slots.
type calls struct {
	ring      []*call
	low, next wire.Seq
	n         int
}

func newCalls(maxInFlight int) calls {
	size := 1
	for size < maxInFlight {
		size *= 2
	}
	return calls{ring: make([]*call, size), low: 1, next: 1}
}

// span is how many numbers are in flight, from the lowest unanswered to the newest.
func (cs *calls) span() int { return int(cs.next - cs.low) }

// add gives cl the next number and records it. The caller has checked span() < MaxInFlight.
func (cs *calls) add(cl *call) {
	cl.seq = cs.next
	cs.ring[uint64(cs.next)&uint64(len(cs.ring)-1)] = cl
	cs.next++
	cs.n++
}

// get returns the unanswered call numbered seq, if any.
func (cs *calls) get(seq wire.Seq) (*call, bool) {
	if seq < cs.low || seq >= cs.next {
		return nil, false
	}
	cl := cs.ring[uint64(seq)&uint64(len(cs.ring)-1)]
	return cl, cl != nil
}

// remove forgets the call numbered seq and moves low past the numbers no longer outstanding
// (amortised O(1): each slot is passed once).
func (cs *calls) remove(seq wire.Seq) {
	if _, ok := cs.get(seq); !ok {
		return
	}
	cs.ring[uint64(seq)&uint64(len(cs.ring)-1)] = nil
	cs.n--
	for cs.low < cs.next && cs.ring[uint64(cs.low)&uint64(len(cs.ring)-1)] == nil {
		cs.low++
	}
}

// each calls fn for every unanswered call, in increasing order of number.
func (cs *calls) each(fn func(cl *call)) {
	for seq := cs.low; seq < cs.next; seq++ {
		if cl := cs.ring[uint64(seq)&uint64(len(cs.ring)-1)]; cl != nil {
			fn(cl)
		}
	}
}

// clear forgets every call: nothing is outstanding, low == next.
func (cs *calls) clear() {
	clear(cs.ring)
	cs.low, cs.n = cs.next, 0
}
