package client

import (
	"testing"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// The ring hands out numbers in order, finds each unanswered call, moves the lowest
// unacknowledged number only past answered ones, and its span (what MaxInFlight bounds) counts
// the gaps left by answers out of order.
func TestCallsRing(t *testing.T) {
	cs := newCalls(5) // a ring of 8
	if len(cs.ring) != 8 || cs.low != 1 || cs.next != 1 {
		t.Fatalf("new ring: %d slots, low %d next %d", len(cs.ring), cs.low, cs.next)
	}
	open := map[wire.Seq]*call{}
	for round := range 400 {
		for cs.span() < 5 {
			cl := &call{}
			cs.add(cl)
			open[cl.seq] = cl
		}
		// Answer one out of order now and then, the lowest otherwise.
		seq := cs.low
		if round%3 == 0 {
			seq = cs.next - 2
		}
		if _, ok := cs.get(seq); !ok {
			continue // already answered out of order
		}
		cs.remove(seq)
		delete(open, seq)
		lowest := cs.next
		for s := range open {
			lowest = min(lowest, s)
		}
		if cs.low != lowest || cs.n != len(open) {
			t.Fatalf("round %d: low %d n %d, want %d and %d", round, cs.low, cs.n, lowest, len(open))
		}
		var order []wire.Seq
		cs.each(func(cl *call) { order = append(order, cl.seq) })
		for i := range order {
			if open[order[i]] == nil || (i > 0 && order[i] <= order[i-1]) {
				t.Fatalf("round %d: each visited %v", round, order)
			}
		}
		if len(order) != len(open) {
			t.Fatalf("round %d: each visited %d calls, %d open", round, len(order), len(open))
		}
	}
	if _, ok := cs.get(cs.next); ok {
		t.Fatal("a number not handed out yet was found")
	}
	cs.clear()
	if cs.span() != 0 || cs.n != 0 {
		t.Fatalf("after clear: span %d n %d", cs.span(), cs.n)
	}
}
