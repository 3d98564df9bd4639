package ratelog

import (
	"sync"
	"time"
)

// Keyed is a Limiter per key (a remote host, say): each key's lines are limited on their own,
// so one noisy remote does not hide another's first line. It holds at most KeysMax keys (default
// keyedKeysMax): when it is full, keys whose interval has passed are forgotten (their next line
// would be let through anyway), and if none has, the new key shares one overflow limiter, so a
// flood from ever new addresses costs bounded memory and still logs once per Every. The zero
// value with Every set is ready; it is safe for concurrent use.
type Keyed struct {
	Every   time.Duration
	KeysMax int

	mu       sync.Mutex
	keys     map[string]*Limiter
	overflow Limiter
}

// keyedKeysMax is Keyed.KeysMax's default.
const keyedKeysMax = 1024

// Allow is Limiter.Allow for key.
func (k *Keyed) Allow(key string, now time.Time) (ok bool, held int) {
	k.mu.Lock()
	l := k.limiterLocked(key, now)
	k.mu.Unlock()
	return l.Allow(now)
}

func (k *Keyed) limiterLocked(key string, now time.Time) *Limiter {
	if k.keys == nil {
		k.keys = map[string]*Limiter{}
	}
	if l, ok := k.keys[key]; ok {
		return l
	}
	keysMax := k.KeysMax
	if keysMax <= 0 {
		keysMax = keyedKeysMax
	}
	if len(k.keys) >= keysMax {
		for key, l := range k.keys {
			if l.quiet(now) {
				delete(k.keys, key)
			}
		}
	}
	if len(k.keys) >= keysMax {
		k.overflow.Every = k.Every
		return &k.overflow
	}
	l := &Limiter{Every: k.Every}
	k.keys[key] = l
	return l
}

// quiet reports whether the limiter would let a line through at now and holds nothing back: it
// can be forgotten without losing a count.
func (l *Limiter) quiet(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !now.Before(l.next) && l.held == 0
}
