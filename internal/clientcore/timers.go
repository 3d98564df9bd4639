package clientcore

import (
	"fmt"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// Tick runs the timers: gives up on calls past their deadline, abandons a silent member, sends
// a keep-alive when idle and resends what was refused once its backoff passed. Call it
// periodically (the resolution of every timer).
func (s *Core) Tick(now int64) {
	s.advance(now)
	if (s.err != nil && !s.closing) || !s.started {
		return
	}
	s.calls.each(func(id uint64, cl *call) {
		if cl.deadline != 0 && cl.deadline <= s.now {
			s.giveUp(wire.Seq(id), cl, ErrDeadline, true)
		}
	})
	s.queries.each(func(id uint64, q *query) {
		if q.deadline != 0 && q.deadline <= s.now {
			s.out.Complete(q.ref, nil, fmt.Errorf("tandem: query%s: %w", s.waitingSuffix(), ErrDeadline))
			s.queries.remove(id)
		}
	})
	if s.state == idle {
		return
	}
	waiting := s.state != attached || s.calls.n > 0 || s.queries.n > 0 || s.closing
	if (s.awaiting && s.now-s.awaitSince > int64(s.cfg.AttemptTimeout)) ||
		(waiting && s.now-s.lastHeard > int64(s.cfg.AttemptTimeout)) {
		// A member that accepts but never answers (a paused process, a half-open connection).
		s.stats.Timeouts++
		s.setReach(s.endpoint, false)
		s.hangup()
		s.dial(s.backoff(&s.attempt))
		return
	}
	if s.state == attached && !s.closing && s.now-s.sessionSent > int64(s.cfg.KeepAliveInterval) {
		s.msg = wire.ClientMsg{Kind: wire.CKeepAlive, Session: s.session}
		s.send(true)
	}
	s.tickMembers()
	if s.state == connected && s.openRetryAt != 0 && s.openRetryAt <= s.now {
		s.sendOpen()
	}
	if s.state == attached {
		s.calls.each(func(id uint64, cl *call) {
			if cl.retryAt != 0 && cl.retryAt <= s.now && cl.live == 0 {
				s.writeCommand(wire.Seq(id), cl)
			}
		})
	}
	if s.state >= connected {
		s.queries.each(func(id uint64, q *query) {
			if q.retryAt != 0 && q.retryAt <= s.now {
				s.writeQuery(id, q)
			}
		})
	}
}
