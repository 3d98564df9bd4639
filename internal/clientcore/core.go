package clientcore

import (
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// ConnID names one connection attempt; the core hands out a new one for every Dial.
type ConnID uint64

// Output receives the core's decisions. It is called synchronously from the core's methods and
// must not call the core back.
type Output interface {
	// Dial: wait after, then connect to endpoint; report with Connected or Failed under conn.
	Dial(conn ConnID, endpoint string, after time.Duration)
	// Write queues m on connection conn (the current one; frames in the order written). m is
	// valid only during the call: encode it, in client protocol version m.Version (always set).
	Write(conn ConnID, m *wire.ClientMsg)
	// Hangup closes conn (connected or still dialing). The core has forgotten it: what the
	// driver reports for it later is ignored.
	Hangup(conn ConnID)
	// Complete delivers the outcome of the command or query submitted with ref: the reply, or
	// an error. Exactly once per call.
	Complete(ref any, reply []byte, err error)
	// Push delivers a message the service pushed to the session (Session.Offer), in the order
	// the connection delivered them; payload is that of the message handed to Received. Never
	// after the session ended or Close.
	Push(payload []byte)
}

// Config configures a core. Every duration and count must be positive (the client package
// fills in defaults).
type Config struct {
	// Endpoints are the members' client addresses, tried in turn when no leader is known (after
	// the addresses learned from the cluster, if any: members.go).
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
	// Protocol is the client protocol versions the core speaks (zero: this build's,
	// wire.ClientProtocol). Narrower only in tests of mixed versions.
	Protocol wire.Range
	// MembersInterval is how often the core asks the leader it is attached to for the
	// membership, on a connection of client protocol 4 on (members.go); zero: 10 s.
	MembersInterval time.Duration
	// Token, if set, is the credential the core sends first on every connection (CAuth, client
	// protocol 5: Protocol must reach 5). A connection authenticated by its TLS client
	// certificate needs none.
	Token []byte
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
	// closing: CloseSession asks the cluster to close the session and waits for its word (err is
	// set: nothing is submitted any more, but the connection and its failover carry on);
	// closed: the cluster said the session is closed. Invariant: not both.
	closing, closed bool

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
	// leader is the endpoint of the member last known as the leader: attached to, or named by
	// the newest redirect ("" before either). Reported by Waiting; may be out of date.
	leader string
	term   uint64 // the newest term a redirect came from: older hints are ignored
	// eps are the endpoints tried in turn when no leader is known: the members' client addresses
	// learned from the cluster, then the configured ones (members.go); next is the next to try.
	eps  []endpoint
	next int

	// version is the client protocol version of what the core writes on the current connection:
	// the lowest it speaks until the member's attached message says which it chose (doc.go).
	version uint16
	// speaks, per endpoint, is the range a member said it speaks when it refused the version the
	// core wrote its open in although the ranges meet; the next connection to it writes in the
	// common version.
	speaks map[string]wire.Range
	// cluster is the cluster identity of the first attached message that named one (zero until
	// then): a member whose attached message names another is refused (onWrongCluster).
	cluster wire.ClusterUUID

	// The membership request on the current connection (members.go): the request id of the
	// list-members asked and not answered yet (0: none), and when to ask next (0: not on this
	// connection). membersAsked counts the requests: each has a fresh id.
	membersID, membersAsked uint64
	membersAt               int64

	stats Stats
	msg   wire.ClientMsg // what Write is handed (one per core: no allocation per frame)
}

// New returns the core of a session; Start begins connecting.
func New(cfg Config, session wire.SessionID, out Output) *Core {
	cfg.Protocol = cfg.Protocol.OrDefault(wire.ClientProtocol)
	if cfg.MembersInterval <= 0 {
		cfg.MembersInterval = membersIntervalDefault
	}
	eps := make([]endpoint, len(cfg.Endpoints))
	for i, e := range cfg.Endpoints {
		eps[i] = endpoint{addr: e, configured: true}
	}
	return &Core{cfg: cfg, out: out, session: session, calls: newRing[call](cfg.MaxInFlight),
		queries: newRing[query](16), eps: eps}
}

// Session returns the session id.
func (s *Core) Session() wire.SessionID { return s.session }

// Err returns the terminal error, nil while the session lives.
func (s *Core) Err() error { return s.err }

// Opened reports whether the cluster confirmed the session.
func (s *Core) Opened() bool { return s.opened }

// Stats returns the failover counts.
func (s *Core) Stats() Stats { return s.stats }

func (s *Core) advance(now int64) { s.now = max(s.now, now) }

// Start begins connecting (the first Dial).
func (s *Core) Start(now int64) {
	if s.started || s.err != nil {
		return
	}
	s.advance(now)
	s.started = true
	s.dial(0)
}

// Close ends the session for good on this side, and the core with it (the cluster is not told,
// or, during a CloseSession, no longer waited for: the session expires there): unanswered calls
// complete with errors wrapping cause, and the connection is hung up.
func (s *Core) Close(cause error) {
	if s.closing {
		s.closing = false
		if s.state != idle {
			s.hangup()
		}
		return
	}
	s.terminate(cause)
}

// CloseSession closes the session on the cluster. At once, as Close does, unanswered calls
// complete with errors wrapping cause and nothing more can be submitted (Err returns cause); then
// the core asks the leader to close the session (on the attached connection, or on the next one
// once attached: it follows redirects and fails over as for commands) until the cluster says it
// is closed: Closing turns false and Closed true. A close is asked for after what was written
// before it, so a command given up on here may still be applied before the session closes. It
// returns false, and only ends the core as Close does, when there is no session to close: it
// ended already, or the cluster never confirmed it (an open the cluster may still apply expires
// there).
func (s *Core) CloseSession(now int64, cause error) bool {
	if s.err != nil || !s.opened {
		s.Close(cause)
		return false
	}
	s.advance(now)
	s.err, s.closing = cause, true
	s.giveUpAll(cause)
	if s.state == attached {
		s.writeClose()
	}
	return true
}

// Closing reports whether CloseSession waits for the cluster to close the session.
func (s *Core) Closing() bool { return s.closing }

// Closed reports whether the cluster said the session is closed after CloseSession (closed as
// asked, or found expired).
func (s *Core) Closed() bool { return s.closed }

func (s *Core) writeClose() {
	s.msg = wire.ClientMsg{Kind: wire.CClose, Session: s.session}
	s.send(true)
}

// terminate ends the session: every unanswered call completes with an error wrapping err. While
// closing, the cluster's word that the session ended is the close's confirmation.
func (s *Core) terminate(err error) {
	if s.closing {
		s.closing, s.closed = false, true
		s.hangup()
		return
	}
	if s.err != nil {
		return
	}
	s.err = err
	if s.state != idle {
		s.hangup()
	}
	s.giveUpAll(err)
}

// giveUpAll completes every unanswered call with an error wrapping err.
func (s *Core) giveUpAll(err error) {
	s.calls.each(func(id uint64, cl *call) { s.giveUp(wire.Seq(id), cl, err, false) })
	s.queries.each(func(id uint64, q *query) {
		s.out.Complete(q.ref, nil, err)
		s.queries.remove(id)
	})
}
