// Package ratelog limits how often a repeated condition is logged: a member under a flood (of
// connections, of messages, of accept errors) must say so without its log becoming the next
// flood. A Limiter lets one line through per interval and counts what it held back, so the next
// line can say how many occurrences it stands for. An Outage does the same for a condition that
// ends (a peer out of reach, accepts failing), and also says when it ended: how long it lasted,
// and how many occurrences it had.
package ratelog

import (
	"sync"
	"time"
)

// Limiter lets one occurrence per Every be logged. The zero value with Every set is ready; it is
// safe for concurrent use.
type Limiter struct {
	Every time.Duration

	mu   sync.Mutex
	next time.Time // no line before this
	// held counts the occurrences not logged since the last line.
	held int
}

// Allow reports whether an occurrence at now may be logged and, if so, how many occurrences were
// held back since the last line that was.
func (l *Limiter) Allow(now time.Time) (ok bool, held int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.held++
		return false, 0
	}
	held, l.held = l.held, 0
	l.next = now.Add(l.Every)
	return true, held
}

// Outage follows a condition that starts, repeats and stops — a peer that cannot be reached, a
// port whose accepts fail — so that its log says when it began, that it goes on, and when it
// ended: its first occurrence is logged, then at most one line per Every (saying how many
// occurrences there were meanwhile), and its end, saying how long it lasted and how many
// occurrences it had. A condition that keeps failing for an hour is 1 + 3600 s/Every + 1 lines.
// The zero value with Every set is ready; it is safe for concurrent use.
type Outage struct {
	Every time.Duration

	mu sync.Mutex
	// since is when the outage began (zero: none under way); last its latest occurrence; next is
	// when the next repeat line may be logged.
	since, last, next time.Time
	// count counts the occurrences since the outage began; held those since the last line.
	count, held int
}

// Report is what a line about an outage says.
type Report struct {
	// First: the outage begins with this occurrence.
	First bool
	// For is how long the outage has lasted: from its first occurrence to this one; on its end
	// (Recover), to its last occurrence, so that the quiet time before the end was noticed (the
	// next accepted connection may come hours later) is not counted as outage.
	For time.Duration
	// LastAgo, on the end (Recover), is how long before it the last occurrence was.
	LastAgo time.Duration
	// Count is the occurrences since the outage began, this one included; Held those since the
	// last line that was logged (this one excluded on a repeat, none on the first).
	Count, Held int
}

// Fail records an occurrence at now and reports whether to log it: the first of an outage, or
// the first after Every since the last line.
func (o *Outage) Fail(now time.Time) (Report, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.count++
	o.last = now
	if o.since.IsZero() {
		o.since, o.next, o.held = now, now.Add(o.Every), 0
		return Report{First: true, Count: o.count}, true
	}
	if now.Before(o.next) {
		o.held++
		return Report{}, false
	}
	r := Report{For: now.Sub(o.since), Count: o.count, Held: o.held}
	o.next, o.held = now.Add(o.Every), 0
	return r, true
}

// Recover ends the outage under way at now, and reports it (For: from its first occurrence to
// its last; LastAgo: since its last; Count: its occurrences); false if none is under way.
func (o *Outage) Recover(now time.Time) (Report, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return Report{}, false
	}
	r := Report{For: o.last.Sub(o.since), LastAgo: now.Sub(o.last), Count: o.count, Held: o.held}
	o.since, o.last, o.next, o.count, o.held = time.Time{}, time.Time{}, time.Time{}, 0, 0
	return r, true
}
