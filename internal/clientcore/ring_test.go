package clientcore

import "testing"

// The ring hands out numbers in order, finds each unanswered call, moves the lowest
// unacknowledged number only past answered ones, and its span (what MaxInFlight bounds) counts
// the gaps left by answers out of order; it grows without losing a call.
func TestRing(t *testing.T) {
	r := newRing[int](5) // 8 slots
	if len(r.slots) != 8 || r.low != 1 || r.next != 1 {
		t.Fatalf("new ring: %d slots, low %d next %d", len(r.slots), r.low, r.next)
	}
	open := map[uint64]int{}
	for round := range 400 {
		limit := 5
		if round > 300 {
			limit = 40 // the ring grows
		}
		for r.span() < limit {
			id, v := r.add()
			*v = int(id) * 3
			open[id] = int(id) * 3
		}
		// Answer one out of order now and then, the lowest otherwise.
		id := r.low
		if round%3 == 0 {
			id = r.next - 2
		}
		if r.get(id) == nil {
			continue // already answered out of order
		}
		r.remove(id)
		delete(open, id)
		lowest := r.next
		for s := range open {
			lowest = min(lowest, s)
		}
		if r.low != lowest || r.n != len(open) {
			t.Fatalf("round %d: low %d n %d, want %d and %d", round, r.low, r.n, lowest, len(open))
		}
		var order []uint64
		r.each(func(id uint64, v *int) {
			if *v != open[id] {
				t.Fatalf("round %d: call %d holds %d, want %d", round, id, *v, open[id])
			}
			order = append(order, id)
		})
		for i := range order {
			if _, ok := open[order[i]]; !ok || (i > 0 && order[i] <= order[i-1]) {
				t.Fatalf("round %d: each visited %v", round, order)
			}
		}
		if len(order) != len(open) {
			t.Fatalf("round %d: each visited %d calls, %d open", round, len(order), len(open))
		}
	}
	if len(r.slots) < 40 {
		t.Fatalf("the ring did not grow: %d slots", len(r.slots))
	}
	if r.get(r.next) != nil {
		t.Fatal("a number not handed out yet was found")
	}
	// Removing every call while visiting them leaves an empty ring.
	r.each(func(id uint64, _ *int) { r.remove(id) })
	if r.span() != 0 || r.n != 0 {
		t.Fatalf("after removing all: span %d n %d", r.span(), r.n)
	}
}
