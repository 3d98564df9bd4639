package clientcore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/internal/bugs"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Errors. The client package exports them under the same names and documents them there.
var (
	ErrSessionExpired = errors.New("tandem: session expired")
	ErrSessionRefused = errors.New("tandem: session refused")
	ErrOutcomeUnknown = errors.New("tandem: outcome unknown")
	ErrNotApplied     = errors.New("tandem: not applied")
	ErrClosed         = errors.New("tandem: client closed")
	ErrTimeout        = errors.New("tandem: timed out")
	ErrInFlightFull   = errors.New("tandem: MaxInFlight commands already outstanding")
	ErrTooLarge       = errors.New("tandem: too large")
	// ErrDeadline is the cause given to a call that reached its deadline.
	ErrDeadline = fmt.Errorf("%w: %w", ErrTimeout, context.DeadlineExceeded)
)

// ConnID names one connection attempt; the core hands out a new one for every Dial.
type ConnID uint64

// Output receives the core's decisions. It is called synchronously from the core's methods and
// must not call the core back.
type Output interface {
	// Dial: wait after, then connect to endpoint; report with Connected or Failed under conn.
	Dial(conn ConnID, endpoint string, after time.Duration)
	// Write queues m on connection conn (the current one; frames in the order written). m is
	// valid only during the call: encode it.
	Write(conn ConnID, m *wire.ClientMsg)
	// Hangup closes conn (connected or still dialing). The core has forgotten it: what the
	// driver reports for it later is ignored.
	Hangup(conn ConnID)
	// Complete delivers the outcome of the command or query submitted with ref: the reply, or
	// an error. Exactly once per call.
	Complete(ref any, reply []byte, err error)
}

// Config configures a core. Every duration and count must be positive (the client package
// fills in defaults).
type Config struct {
	// Endpoints are the members' client addresses, tried in turn when no leader is known.
	Endpoints []string
	// AttemptTimeout bounds one attempt on one member: connecting, attaching, or waiting for
	// any answer while requests are outstanding.
	AttemptTimeout time.Duration
	// KeepAliveInterval: an attached session that sent nothing naming it for this long sends a
	// keep-alive.
	KeepAliveInterval time.Duration
	// BackoffMin/Max bound the wait before the next attempt after a failed one, and before a
	// refused command or query is resent; with jitter.
	BackoffMin, BackoffMax time.Duration
	// MaxRedirects caps consecutive redirect hops before backing off.
	MaxRedirects int
	// MaxInFlight bounds the span of numbers in flight (as the cluster's window counts it); the
	// window the cluster announces lowers it further.
	MaxInFlight int
	// Jitter returns a random number in [0, n).
	Jitter func(n int64) int64
}

type connState uint8

const (
	idle      connState = iota // no connection: not started, or finished
	dialing                    // Dial issued, not connected yet
	connected                  // connected, open or attach sent, not answered yet
	attached                   // the session is attached on this connection
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

// Stats counts failover steps.
type Stats struct {
	Redirects int // redirects followed
	Timeouts  int // attempts abandoned for silence
}

// Core is the protocol state machine of one client session. It is not safe for concurrent use:
// the driver serialises every call (the client holds its lock).
type Core struct {
	cfg     Config
	out     Output
	session wire.SessionID
	now     int64 // the latest time given: times never go back

	err     error // terminal: ErrSessionExpired, ErrSessionRefused or the cause given to Close
	started bool
	opened  bool // the cluster confirmed the session once: reattach, never reopen

	calls   ring[call] // calls.low is the lowest unacknowledged number the client reports
	queries ring[query]
	// The limits the cluster announced when the session attached (0: not yet).
	windowMax, commandBytesMax int

	// The connection. Invariant: conn != 0 exactly when state != idle.
	conn     ConnID
	nextConn ConnID
	state    connState
	endpoint string
	// lastHeard is when the member last spoke (or when the attempt began); awaitSince, while
	// awaiting, is when the core first wrote something no answer has followed yet; sessionSent
	// is when the core last wrote something naming the session (queries do not).
	lastHeard, awaitSince, sessionSent int64
	awaiting                           bool
	// openRetryAt (0: not due) is when to send the open or attach again, which the member
	// refused for now (no quorum, a full ingress queue); openRefusals counts the refusals.
	openRetryAt  int64
	openRefusals int

	// Failover.
	attempt int    // consecutive failed attempts: the exponent of the backoff
	hops    int    // consecutive redirects followed
	hint    string // the leader's endpoint from the newest redirect, to try next
	term    uint64 // the newest term a redirect came from: older hints are ignored
	next    int    // the next configured endpoint to try
	reach   []bool // per configured endpoint: reachable on its latest attempt

	stats Stats
	msg   wire.ClientMsg // what Write is handed (one per core: no allocation per frame)
}

// New returns the core of a session; Start begins connecting.
func New(cfg Config, session wire.SessionID, out Output) *Core {
	return &Core{cfg: cfg, out: out, session: session, calls: newRing[call](cfg.MaxInFlight),
		queries: newRing[query](16), reach: make([]bool, len(cfg.Endpoints))}
}

// Session returns the session id.
func (s *Core) Session() wire.SessionID { return s.session }

// Err returns the terminal error, nil while the session lives.
func (s *Core) Err() error { return s.err }

// Opened reports whether the cluster confirmed the session.
func (s *Core) Opened() bool { return s.opened }

// Attached reports whether the session is attached on the current connection.
func (s *Core) Attached() bool { return s.state == attached }

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

// Stats returns the failover counts.
func (s *Core) Stats() Stats { return s.stats }

// Waiting describes what the core waits for while not attached, e.g. "reachable 1 of 3, need
// 2"; "" while attached.
func (s *Core) Waiting() string {
	if s.state == attached {
		return ""
	}
	n := 0
	for _, r := range s.reach {
		if r {
			n++
		}
	}
	total := len(s.cfg.Endpoints)
	return fmt.Sprintf("reachable %d of %d, need %d", n, total, total/2+1)
}

func (s *Core) waitingSuffix() string {
	if w := s.Waiting(); w != "" {
		return " (" + w + ")"
	}
	return ""
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

func (s *Core) advance(now int64) { s.now = max(s.now, now) }

// ---- inputs from the caller ----

// Start begins connecting (the first Dial).
func (s *Core) Start(now int64) {
	if s.started || s.err != nil {
		return
	}
	s.advance(now)
	s.started = true
	s.dial(0)
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

// Close ends the session for good (the cluster is not told: the session expires there):
// unanswered calls complete with errors wrapping cause, and the connection is hung up.
func (s *Core) Close(cause error) { s.terminate(cause) }

// ---- inputs from the connection ----

// Connected reports that conn is established.
func (s *Core) Connected(conn ConnID, now int64) {
	if conn != s.conn || s.state != dialing {
		s.out.Hangup(conn) // an attempt the core gave up on
		return
	}
	s.advance(now)
	s.state, s.lastHeard = connected, s.now
	s.setReach(s.endpoint, true)
	// The unanswered commands ride with the open or attach, in order (the member keeps it): a
	// round trip saved after a failover. A member that is not the leader answers each with a
	// redirect, and the core leaves at the first.
	s.sendOpen()
	if bugs.Active("resend-fresh-number") {
		s.renumberSent()
	}
	s.calls.each(func(id uint64, cl *call) { s.writeCommand(wire.Seq(id), cl) })
	s.queries.each(s.writeQuery)
}

// Failed reports that conn could not be established, or ended (a read or write failed, the
// member closed it).
func (s *Core) Failed(conn ConnID, now int64) {
	if conn != s.conn || s.state == idle {
		return
	}
	s.advance(now)
	s.setReach(s.endpoint, false)
	s.drop()
	s.dial(s.backoff(&s.attempt))
}

// Heard reports that conn delivered data at now: call it before the messages of each read
// from the network (messages read together may share one Heard).
func (s *Core) Heard(conn ConnID, now int64) {
	if conn != s.conn || s.state < connected {
		return
	}
	s.advance(now)
	s.lastHeard, s.awaiting = s.now, false
}

// Received handles a message read from conn. m (and its payload, handed to Complete as a
// reply) is the caller's, not retained by the core.
func (s *Core) Received(conn ConnID, m *wire.ClientMsg) {
	if conn != s.conn || s.state < connected {
		return // from a connection the core left
	}
	switch m.Kind {
	case wire.CAttached:
		s.onAttached(m)
	case wire.CResponse:
		s.onResponse(m)
	case wire.CQueryResponse:
		s.onQueryResponse(m)
	case wire.CRedirect:
		s.stats.Redirects++
		if m.Term >= s.term && m.LeaderAddr != "" {
			s.term, s.hint = m.Term, m.LeaderAddr
		}
		s.hangup()
		s.hops++
		if s.hops <= s.cfg.MaxRedirects {
			s.dial(0) // follow the hint at once
		} else {
			s.dial(s.backoff(&s.attempt))
		}
	case wire.CSessionEvent:
		switch {
		case m.Status == wire.StatusRejected && !s.opened:
			s.terminate(fmt.Errorf("%w: %s", ErrSessionRefused, reason(m)))
		case m.Status == wire.StatusSessionExpired || m.Reason != 0:
			s.terminate(ErrSessionExpired)
		}
	case wire.CKeepAliveAck:
		if m.Status == wire.StatusSessionExpired {
			s.terminate(ErrSessionExpired)
		}
	case wire.CPush:
		// Unsolicited pushes are not surfaced yet.
	}
}

// Tick runs the timers: gives up on calls past their deadline, abandons a silent member, sends
// a keep-alive when idle and resends what was refused once its backoff passed. Call it
// periodically (the resolution of every timer).
func (s *Core) Tick(now int64) {
	s.advance(now)
	if s.err != nil || !s.started {
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
	waiting := s.state != attached || s.calls.n > 0 || s.queries.n > 0
	if (s.awaiting && s.now-s.awaitSince > int64(s.cfg.AttemptTimeout)) ||
		(waiting && s.now-s.lastHeard > int64(s.cfg.AttemptTimeout)) {
		// A member that accepts but never answers (a paused process, a half-open connection).
		s.stats.Timeouts++
		s.setReach(s.endpoint, false)
		s.hangup()
		s.dial(s.backoff(&s.attempt))
		return
	}
	if s.state == attached && s.now-s.sessionSent > int64(s.cfg.KeepAliveInterval) {
		s.msg = wire.ClientMsg{Kind: wire.CKeepAlive, Session: s.session}
		s.send(true)
	}
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

// ---- what the core does ----

// dial starts the next attempt, after a wait: on the leader a fresh redirect named, else on the
// next configured endpoint. Redirects are followed at once up to MaxRedirects hops in a row
// (with or without a hint: a member that knows no leader sends the client on to the next); then
// the core backs off, and counts hops anew.
func (s *Core) dial(after time.Duration) {
	endpoint := s.hint
	s.hint = ""
	if s.hops > s.cfg.MaxRedirects {
		endpoint, s.hops = "", 0
	}
	if endpoint == "" {
		endpoint = s.cfg.Endpoints[s.next%len(s.cfg.Endpoints)]
		s.next++
	}
	s.nextConn++
	s.conn, s.state, s.endpoint = s.nextConn, dialing, endpoint
	s.lastHeard, s.awaiting = s.now+int64(after), false
	s.out.Dial(s.conn, endpoint, after)
}

// hangup closes the current connection.
func (s *Core) hangup() {
	s.out.Hangup(s.conn)
	s.drop()
}

// drop forgets the current connection: what was written on it and not answered may have been
// applied (lost), and resends wait for the next attach.
func (s *Core) drop() {
	s.calls.each(func(_ uint64, cl *call) {
		if cl.live > 0 {
			cl.lost, cl.live = true, 0
		}
		cl.retryAt = 0
	})
	s.queries.each(func(_ uint64, q *query) { q.retryAt = 0 })
	s.conn, s.state, s.awaiting, s.openRetryAt = 0, idle, false, 0
}

// backoff returns the next wait of an exponential backoff with jitter, and counts the step.
func (s *Core) backoff(step *int) time.Duration {
	d := min(s.cfg.BackoffMin<<min(*step, 16), s.cfg.BackoffMax)
	*step++
	return d/2 + time.Duration(s.cfg.Jitter(int64(d/2)+1))
}

// send writes s.msg on the current connection.
func (s *Core) send(namesSession bool) {
	s.out.Write(s.conn, &s.msg)
	if !s.awaiting {
		s.awaiting, s.awaitSince = true, s.now
	}
	if namesSession {
		s.sessionSent = s.now
	}
}

// sendOpen asks the member to attach the session: open it if it never was (CAttach never opens,
// so that a session the cluster expired is not opened afresh under the same id).
func (s *Core) sendOpen() {
	s.msg = wire.ClientMsg{Kind: wire.CAttach, Session: s.session}
	if !s.opened {
		s.msg.Kind = wire.COpen
	}
	s.send(true)
	s.openRetryAt = 0
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

func (s *Core) setReach(endpoint string, ok bool) {
	for i, e := range s.cfg.Endpoints {
		if e == endpoint {
			s.reach[i] = ok
		}
	}
}

// onAttached makes the connection the session's and sends every unanswered command not written
// on it since (refused meanwhile), in order, under its original number.
func (s *Core) onAttached(m *wire.ClientMsg) {
	if s.state == attached {
		return
	}
	s.state, s.opened = attached, true
	s.attempt, s.hops, s.openRefusals, s.openRetryAt = 0, 0, 0, 0
	if m.WindowMax > 0 {
		s.windowMax = m.WindowMax
	}
	if m.CommandBytesMax > 0 {
		s.commandBytesMax = m.CommandBytesMax
	}
	s.calls.each(func(id uint64, cl *call) {
		if cl.live == 0 {
			s.writeCommand(wire.Seq(id), cl)
		}
	})
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

// terminate ends the session: every unanswered call completes with an error wrapping err.
func (s *Core) terminate(err error) {
	if s.err != nil {
		return
	}
	s.err = err
	if s.state != idle {
		s.hangup()
	}
	s.calls.each(func(id uint64, cl *call) { s.giveUp(wire.Seq(id), cl, err, false) })
	s.queries.each(func(id uint64, q *query) {
		s.out.Complete(q.ref, nil, err)
		s.queries.remove(id)
	})
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
	}
	return fmt.Sprintf("status %d", m.Status)
}
