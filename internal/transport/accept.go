package transport

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/tandem-cluster/tandem/internal/ratelog"
)

// Accept loops back off after a failed accept as net/http's Server.Serve does: 5 ms, doubling up
// to 1 s. A failed accept is almost always a passing shortage — "too many open files" under a
// connection flood, no buffer space — and a loop that returned on it would leave the member
// running deaf on that port for good.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	// acceptLogEvery: a failing accept, and a connection refused over the limit, are logged at
	// most once per this (with how many were not), so a flood does not flood the log as well.
	acceptLogEvery = 5 * time.Second
)

// accepter accepts the connections of one port for its server's accept loop: it retries failed
// accepts with a backoff, and closes at once a connection that would exceed the port's limit.
type accepter struct {
	port     string // "member" or "client", for the log
	l        net.Listener
	connsMax int
	log      *slog.Logger
	// done is closed when the server stops: only then does a closed listener end the loop.
	done <-chan struct{}
	// freed is signalled when one of the port's connections closes: a descriptor is free again,
	// so an accept that failed for want of one is retried at once rather than after its backoff.
	freed chan struct{}

	// errs and refusals follow failed accepts and connections refused over the limit: each is
	// logged when it starts, at most once per acceptLogEvery while it goes on (with how many
	// were not), and when it stops — an accept succeeds, a connection is served again.
	errs, refusals  ratelog.Outage
	refused, failed atomic.Int64
}

func newAccepter(port string, l net.Listener, connsMax int, log *slog.Logger, done <-chan struct{}) *accepter {
	return &accepter{port: port, l: l, connsMax: connsMax, log: log, done: done, freed: make(chan struct{}, 1),
		errs: ratelog.Outage{Every: acceptLogEvery}, refusals: ratelog.Outage{Every: acceptLogEvery}}
}

// next returns the next connection to serve, or nil once the server stopped. open reports how
// many of the port's connections are being served (only the accept loop adds to them, so the
// count cannot grow between the check and the caller's registering of the connection).
func (a *accepter) next(open func() int) net.Conn {
	delay := time.Duration(0)
	for {
		conn, err := a.l.Accept()
		if err != nil {
			select {
			case <-a.done:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				// Nothing but Stop closes the listener; if something else did, no retry can
				// help, and the member is deaf on this port: say so loudly.
				a.log.Error(a.port+" port: the listener was closed; no more connections are accepted", "err", err)
				return nil
			}
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			a.failed.Add(1)
			if r, ok := a.errs.Fail(time.Now()); ok {
				a.log.Error(a.port+" port: accept failed; retrying", "err", err, "retry_in", delay,
					"failing_for", r.For, "failures_not_logged", r.Held)
			}
			if !a.sleep(delay) {
				return nil
			}
			continue
		}
		delay = 0
		if r, ok := a.errs.Recover(time.Now()); ok {
			a.log.Info(a.port+" port: accepting again", "failed_for", r.For, "last_failure_ago", r.LastAgo,
				"failed_accepts", r.Count)
		}
		if open() >= a.connsMax {
			_ = conn.Close()
			n := a.refused.Add(1)
			if r, ok := a.refusals.Fail(time.Now()); ok {
				a.log.Warn(a.port+" port: connection refused: the port's connection limit is reached",
					"limit", a.connsMax, "remote", conn.RemoteAddr().String(), "refused_total", n,
					"refusing_for", r.For, "refusals_not_logged", r.Held)
			}
			continue
		}
		if r, ok := a.refusals.Recover(time.Now()); ok {
			a.log.Info(a.port+" port: serving connections again: under the connection limit", "limit", a.connsMax,
				"refused_for", r.For, "last_refusal_ago", r.LastAgo, "refused", r.Count)
		}
		return conn
	}
}

// sleep waits for d, or less if a connection closes meanwhile; false if the server stopped.
func (a *accepter) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a.done:
		return false
	case <-a.freed:
	case <-t.C:
	}
	return true
}

// connClosed tells a backing-off accept loop that a descriptor was freed.
func (a *accepter) connClosed() {
	select {
	case a.freed <- struct{}{}:
	default:
	}
}
