package clientcore

// ring holds a session's unanswered commands (or queries) by number: the numbers from low (the
// lowest unanswered one) to next-1, the slot of number n being slots[n & (len(slots)-1)] (unused
// once answered). Numbers are handed out one by one, so a ring answers "which call is this
// answer for?" without hashing, and keeps the calls in order for a resend. Its span — next-low,
// gaps included — is what Config.MaxInFlight bounds, as the cluster bounds a session's response
// window by the same span. A ring grows when its span fills it (the calls' never does: the
// core refuses a command beyond MaxInFlight; queries have no such bound).
//
// Invariants: 1 <= low <= next, next-low <= len(slots) (a power of two), the slot of low is used
// unless low == next, and n counts the used slots.
type ring[T any] struct {
	slots     []slot[T]
	low, next uint64
	n         int
}

type slot[T any] struct {
	v    T
	used bool
}

func newRing[T any](size int) ring[T] {
	n := 1
	for n < size {
		n *= 2
	}
	return ring[T]{slots: make([]slot[T], n), low: 1, next: 1}
}

func (r *ring[T]) mask() uint64 { return uint64(len(r.slots) - 1) }

// span is how many numbers are in flight, from the lowest unanswered to the newest.
func (r *ring[T]) span() int { return int(r.next - r.low) }

// add hands out the next number and returns it with its (zeroed) slot, valid until the next add.
func (r *ring[T]) add() (uint64, *T) {
	if r.span() == len(r.slots) {
		r.grow()
	}
	id := r.next
	sl := &r.slots[id&r.mask()]
	sl.used = true
	r.next++
	r.n++
	return id, &sl.v
}

// get returns the unanswered call numbered id (valid until the next add), or nil.
func (r *ring[T]) get(id uint64) *T {
	if id < r.low || id >= r.next {
		return nil
	}
	sl := &r.slots[id&r.mask()]
	if !sl.used {
		return nil
	}
	return &sl.v
}

// remove forgets the call numbered id and moves low past the numbers no longer outstanding
// (amortised O(1): each slot is passed once).
func (r *ring[T]) remove(id uint64) {
	if r.get(id) == nil {
		return
	}
	r.slots[id&r.mask()] = slot[T]{}
	r.n--
	for r.low < r.next && !r.slots[r.low&r.mask()].used {
		r.low++
	}
}

// each calls fn for every unanswered call, in increasing order of number. fn may remove calls
// (any of them), not add.
func (r *ring[T]) each(fn func(id uint64, v *T)) {
	for id := r.low; id < r.next; id++ {
		if sl := &r.slots[id&r.mask()]; sl.used {
			fn(id, &sl.v)
		}
	}
}

func (r *ring[T]) grow() {
	old, oldMask := r.slots, r.mask()
	r.slots = make([]slot[T], 2*len(old))
	for id := r.low; id < r.next; id++ {
		r.slots[id&r.mask()] = old[id&oldMask]
	}
}
