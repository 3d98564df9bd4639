// Package ratelog limits how often a repeated condition is logged: a member under a flood (of
// connections, of messages, of accept errors) must say so without its log becoming the next
// flood. A Limiter lets one line through per interval and counts what it held back, so the next
// line can say how many occurrences it stands for.
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
