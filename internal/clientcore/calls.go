package clientcore

import (
	"fmt"
	"strings"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// call is an unanswered command.
type call struct {
	payload  []byte
	ref      any
	deadline int64  // give up at this time; 0: never
	retryAt  int64  // resend on this connection at this time (after a refusal); 0: not due
	refusal  string // the cluster's latest refusal of it
	refusals int    // consecutive refusals: the exponent of the resend's backoff
	// live counts attempts written on the current connection and not answered yet.
	live int
	sent bool // written at least once
	// lost: an attempt went unanswered on a connection that ended, so the cluster may have
	// applied it. Only a call never sent, or refused each time, is known not to be applied.
	lost bool
}

// query is an unanswered query.
type query struct {
	payload           []byte
	ref               any
	deadline, retryAt int64
	refusals          int
}

// Room reports whether a command may be submitted now: the span in flight is below MaxInFlight
// and the window the cluster announced.
func (s *Core) Room() bool { return s.calls.span() < s.inFlightMax() }

// Unanswered returns how many commands and queries wait for an answer.
func (s *Core) Unanswered() (commands, queries int) { return s.calls.n, s.queries.n }

// Outstanding returns the numbers of the unanswered commands, ascending.
func (s *Core) Outstanding() []wire.Seq {
	out := make([]wire.Seq, 0, s.calls.n)
	s.calls.each(func(id uint64, _ *call) { out = append(out, wire.Seq(id)) })
	return out
}

func (s *Core) inFlightMax() int {
	if s.windowMax > 0 && s.windowMax < s.cfg.MaxInFlight {
		return s.windowMax
	}
	return s.cfg.MaxInFlight
}

func (s *Core) payloadMax() int {
	if s.commandBytesMax > 0 {
		return s.commandBytesMax
	}
	return wire.MaxPayloadBytes
}

// Check returns the error Submit and Query give a payload of n bytes: nil if the cluster
// accepts it (the limit it announced, wire.MaxPayloadBytes before), else an error wrapping
// ErrNotApplied and ErrTooLarge that names the limit.
func (s *Core) Check(what string, n int) error {
	if n <= s.payloadMax() {
		return nil
	}
	return fmt.Errorf("%w: %w: a %s of %d bytes, the cluster accepts at most %d", ErrNotApplied, ErrTooLarge, what, n, s.payloadMax())
}

// Submit numbers a command and writes it if a connection is up (behind the open or attach if
// that is not answered yet), else on the next connection. payload is kept until the command completes; ref is handed back to
// Output.Complete; deadline (0: none) is when to give up on it. An error means the command was
// not taken (it wraps ErrNotApplied, or is the terminal error) and Complete will not be called.
func (s *Core) Submit(now int64, payload []byte, ref any, deadline int64) (wire.Seq, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.advance(now)
	if len(payload) > s.payloadMax() {
		return 0, s.Check("command", len(payload))
	}
	if !s.Room() {
		return 0, fmt.Errorf("%w: %w", ErrNotApplied, ErrInFlightFull)
	}
	id, cl := s.calls.add()
	cl.payload, cl.ref, cl.deadline = payload, ref, deadline
	if s.state >= connected { // (behind the open or attach, if it is not answered yet)
		s.writeCommand(wire.Seq(id), cl)
	}
	return wire.Seq(id), nil
}

// Query sends a read-only query (it needs no session: it goes out on any connection). As for
// Submit, an error means it was not taken.
func (s *Core) Query(now int64, payload []byte, ref any, deadline int64) (uint64, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.advance(now)
	if len(payload) > s.payloadMax() {
		return 0, s.Check("query", len(payload))
	}
	id, q := s.queries.add()
	q.payload, q.ref, q.deadline = payload, ref, deadline
	if s.state == connected || s.state == attached {
		s.writeQuery(id, q)
	}
	return id, nil
}

// Cancel gives up on command seq (the caller stopped waiting) and completes it with an error
// wrapping cause: ErrNotApplied if it was never sent or the cluster refused every attempt,
// ErrOutcomeUnknown otherwise. It is never sent again, and the lowest unacknowledged number
// moves past it: a copy still on its way is applied once at most (once a later command has
// carried the new number, the cluster answers it as evicted). It reports whether seq was
// unanswered.
func (s *Core) Cancel(now int64, seq wire.Seq, cause error) bool {
	cl := s.calls.get(uint64(seq))
	if cl == nil {
		return false
	}
	s.advance(now)
	s.giveUp(seq, cl, cause, true)
	return true
}

// CancelQuery gives up on query id and completes it with an error wrapping cause.
func (s *Core) CancelQuery(now int64, id uint64, cause error) bool {
	q := s.queries.get(id)
	if q == nil {
		return false
	}
	s.advance(now)
	s.out.Complete(q.ref, nil, fmt.Errorf("tandem: query%s: %w", s.waitingSuffix(), cause))
	s.queries.remove(id)
	return true
}

func (s *Core) writeCommand(seq wire.Seq, cl *call) {
	s.msg = wire.ClientMsg{Kind: wire.CCommand, Session: s.session, Seq: seq,
		LowestUnacked: wire.Seq(s.calls.low), Payload: cl.payload}
	s.send(true)
	cl.sent, cl.retryAt = true, 0
	cl.live++
}

func (s *Core) writeQuery(id uint64, q *query) {
	s.msg = wire.ClientMsg{Kind: wire.CQuery, RequestID: id, Payload: q.payload}
	s.send(false)
	q.retryAt = 0
}

// renumberSent is the planted bug resend-fresh-number: the commands sent on an earlier
// connection are resent under fresh numbers, so one that the cluster applied is applied again.
func (s *Core) renumberSent() {
	var sent []call
	s.calls.each(func(id uint64, cl *call) {
		if cl.sent {
			sent = append(sent, *cl)
			s.calls.remove(id)
		}
	})
	for _, cl := range sent {
		_, slot := s.calls.add()
		*slot = cl
	}
}

func (s *Core) onResponse(m *wire.ClientMsg) {
	cl := s.calls.get(uint64(m.Seq))
	if cl == nil {
		if m.Seq == 0 && m.Status != wire.StatusOK && s.state == connected {
			// The open or attach was refused for now: ask again after a backoff.
			s.openRetryAt = max(1, s.now+int64(s.backoff(&s.openRefusals)))
		}
		return
	}
	switch m.Status {
	case wire.StatusOK:
		s.finish(m.Seq, cl, m.Payload, nil)
	case wire.StatusSessionExpired:
		s.terminate(ErrSessionExpired)
	case wire.StatusEvicted:
		s.finish(m.Seq, cl, nil, fmt.Errorf("%w: the answer was already acknowledged and evicted", ErrOutcomeUnknown))
	case wire.StatusUnavailable, wire.StatusNotLeader:
		s.refused(m, cl, true)
	case wire.StatusDenied:
		// Final, whatever an earlier attempt did: the principal may not send commands (an
		// earlier attempt was refused alike, or was sent before its rights were withdrawn).
		err := fmt.Errorf("%w: %w: %s", ErrNotApplied, ErrDenied, reason(m))
		if cl.lost {
			err = fmt.Errorf("%w: %w: %s", ErrOutcomeUnknown, ErrDenied, reason(m))
		}
		s.finish(m.Seq, cl, nil, err)
	default: // rejected (a limit), bad request
		s.refused(m, cl, false)
	}
}

// refused handles a "not applied" answer to one attempt of a command. A lasting refusal (a
// limit, a bad request) of a command no other attempt of which may have been applied completes
// it as not applied. Otherwise it is resent after a backoff: the refusal may pass (no quorum
// yet, a limit that frees up), and a resend of a command that an earlier attempt applied is
// answered from the cluster's record, which tells what happened.
func (s *Core) refused(m *wire.ClientMsg, cl *call, passing bool) {
	cl.live = max(cl.live-1, 0)
	cl.refusal = reason(m)
	if cl.live > 0 {
		return // another attempt is under way on this connection: its answer decides
	}
	if !passing && !cl.lost {
		s.finish(m.Seq, cl, nil, fmt.Errorf("%w: %s", ErrNotApplied, cl.refusal))
		return
	}
	cl.retryAt = max(1, s.now+int64(s.backoff(&cl.refusals)))
}

func (s *Core) onQueryResponse(m *wire.ClientMsg) {
	q := s.queries.get(m.RequestID)
	if q == nil {
		return
	}
	switch m.Status {
	case wire.StatusOK:
		s.out.Complete(q.ref, m.Payload, nil)
	case wire.StatusUnavailable, wire.StatusNotLeader:
		q.retryAt = max(1, s.now+int64(s.backoff(&q.refusals)))
		return
	case wire.StatusDenied:
		s.out.Complete(q.ref, nil, fmt.Errorf("%w: %w: %s", ErrNotApplied, ErrDenied, reason(m)))
	default:
		s.out.Complete(q.ref, nil, fmt.Errorf("%w: %s", ErrNotApplied, reason(m)))
	}
	s.queries.remove(m.RequestID)
}

// giveUp completes a command the core stops waiting for, saying whether it may have been
// applied.
func (s *Core) giveUp(seq wire.Seq, cl *call, cause error, waiting bool) {
	suffix := ""
	if waiting {
		suffix = s.waitingSuffix()
	}
	var err error
	switch {
	case !cl.sent:
		err = fmt.Errorf("%w%s: %w", ErrNotApplied, suffix, cause)
	case cl.lost || cl.live > 0:
		err = fmt.Errorf("%w%s: %w", ErrOutcomeUnknown, suffix, cause)
	default: // every attempt was refused
		err = fmt.Errorf("%w: refused (%s)%s: %w", ErrNotApplied, cl.refusal, suffix, cause)
	}
	s.finish(seq, cl, nil, err)
}

func (s *Core) finish(seq wire.Seq, cl *call, reply []byte, err error) {
	s.out.Complete(cl.ref, reply, err)
	s.calls.remove(uint64(seq))
}

// reason is the text of a refusal: the cluster's, else the status.
func reason(m *wire.ClientMsg) string {
	if r := strings.TrimSpace(string(m.Payload)); r != "" {
		return r
	}
	switch m.Status {
	case wire.StatusRejected:
		return "rejected (a limit)"
	case wire.StatusUnavailable:
		return "unavailable"
	case wire.StatusNotLeader:
		return "not the leader"
	case wire.StatusBadRequest:
		return "bad request"
	case wire.StatusDenied:
		return "permission denied"
	}
	return fmt.Sprintf("status %d", m.Status)
}
