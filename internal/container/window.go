package container

import "github.com/tandem-cluster/tandem/internal/wire"

// window is a session's response window: the recorded replies of the numbers floor … floor+span-1,
// in a ring indexed by number (the slot of seq is ring[(head + seq-floor) & (len(ring)-1)]; a
// nil slot holds no reply: recorded replies are never nil). A client numbers its commands one
// by one and keeps at most its window's worth unacknowledged, so the numbers in use are dense,
// and a ring answers "is this a retry?" and "record this reply" without hashing: on the members'
// hot path the map it replaced was about a third of the CPU per command (replica.LeaderPath).
//
// Invariants: len(ring) is 0 or a power of two, span <= len(ring) <= maxWindowSpan (rounded up
// to a power of two), count is the number of non-nil slots, and every slot outside the span is
// nil. The ring doubles as the span grows and halves (down to 8 slots) when the span is at most a
// quarter of it, so it holds at most max(8, 4 × span) slots: the byte budget charges the span
// (container.slotBytes), and an idle session keeps no big ring.
type window struct {
	floor wire.Seq // every number below it was acknowledged to the client
	ring  [][]byte
	head  int
	span  int
	count int
}

// maxWindowSpan bounds the numbers a window spans (and so Config.ResponseWindowMax), so that a
// ring never grows beyond a few megabytes whatever a snapshot or a client says.
const maxWindowSpan = 1 << 20

// get returns the reply recorded for seq, if any.
func (w *window) get(seq wire.Seq) ([]byte, bool) {
	if seq < w.floor || uint64(seq-w.floor) >= uint64(w.span) {
		return nil, false
	}
	r := w.ring[(w.head+int(seq-w.floor))&(len(w.ring)-1)]
	return r, r != nil
}

// put records reply (not nil) for seq, which must be at or above the floor, less than
// maxWindowSpan above it, and not recorded yet.
func (w *window) put(seq wire.Seq, reply []byte) {
	d := int(seq - w.floor)
	if d >= len(w.ring) {
		w.grow(d + 1)
	}
	w.ring[(w.head+d)&(len(w.ring)-1)] = reply
	w.span = max(w.span, d+1)
	w.count++
}

// grow makes room for n numbers from the floor, keeping the slots in order.
func (w *window) grow(n int) {
	size := max(len(w.ring), minRing)
	for size < n {
		size *= 2
	}
	w.resize(size)
}

// minRing is the smallest ring a window keeps once it has one.
const minRing = 8

// shrink halves the ring while the span fills at most a quarter of it.
func (w *window) shrink() {
	size := len(w.ring)
	for size > minRing && w.span <= size/4 {
		size /= 2
	}
	if size < len(w.ring) {
		w.resize(size)
	}
}

// resize moves the span's slots, in order, to a new ring of size slots (at least the span).
func (w *window) resize(size int) {
	ring := make([][]byte, size)
	for i := range w.span {
		ring[i] = w.ring[(w.head+i)&(len(w.ring)-1)]
	}
	w.ring, w.head = ring, 0
}

// advance moves the floor up to floor, handing each reply it drops to evicted. Amortised O(1) per
// number passed: each slot is cleared once.
func (w *window) advance(floor wire.Seq, evicted func([]byte)) {
	if floor <= w.floor {
		return
	}
	if uint64(floor-w.floor) >= uint64(w.span) {
		w.each(func(_ wire.Seq, r []byte) { evicted(r) })
		clear(w.ring)
		w.floor, w.head, w.span, w.count = floor, 0, 0, 0
		w.shrink()
		return
	}
	for w.floor < floor {
		if r := w.ring[w.head]; r != nil {
			evicted(r)
			w.ring[w.head] = nil
			w.count--
		}
		w.head = (w.head + 1) & (len(w.ring) - 1)
		w.span--
		w.floor++
	}
	w.shrink()
}

// each calls fn for every recorded reply, in increasing order of number.
func (w *window) each(fn func(seq wire.Seq, reply []byte)) {
	for i := range w.span {
		if r := w.ring[(w.head+i)&(len(w.ring)-1)]; r != nil {
			fn(w.floor+wire.Seq(i), r)
		}
	}
}
