// Package admin is the operator's side of the admin channel: wire.AdminRequest sent on a
// member's client port (client protocol 4 on), as tandem cluster sends it.
//
// Call sends one request and returns the answer. "status" and "errors" go to one member, which
// answers for itself (the caller asks each member it wants to hear from). The other operations are
// the leader's: Call tries the endpoints in order, follows redirects to the leader, and tries
// again, after a short backoff, while the leader answers "not now" (StatusUnavailable: another
// change in progress, a hand-over, a learner not caught up), until its context ends.
//
// Each call dials its own connections and closes them before it returns.
package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tandem-cluster/tandem/internal/tlsconf"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Version is the first client protocol version with the admin channel: a CAdmin is written in
// it, with the range [Version, wire.ClientProtocolMax].
const Version uint16 = 4

// Errors. With any of them, check the error before the answer: the Result (or response and
// status) then holds the last answer if there was one, and is zero otherwise.
var (
	// ErrUnreachable: no member could be reached (each endpoint refused the connection, timed
	// out, was not a Tandem client port, or closed the connection without answering a request
	// that changes nothing). The error names each endpoint and why.
	ErrUnreachable = errors.New("could not reach any member")
	// ErrOutcomeUnknown: a change was sent and no answer said whether it was made: the
	// connection ended, or the context did, before the answer; or the leader changed while the
	// change was under way. The membership (list-members) tells.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrNoAdmin: the member runs a build from before the admin channel (it speaks client
	// protocol 3 or older). Nothing was done.
	ErrNoAdmin = errors.New("the member does not speak the admin channel (client protocol 4 on): its build is older than this one's admin requests")
	// ErrUnauthenticated: a member refused the credential (a token, a client certificate), or
	// needs one and none was given, or its certificate is not trusted. Final: nothing was done.
	ErrUnauthenticated = errors.New("not authenticated")
	// ErrNoLeader: the members reached redirected the request without a leader to send it to
	// (an election under way, no quorum) until the context ended. Nothing was done.
	ErrNoLeader = errors.New("no leader answered")
)

// Options tune a call. The zero value is usable.
type Options struct {
	// DialTimeout bounds each connection attempt (within the context's deadline); 0 means 3 s.
	DialTimeout time.Duration
	// AttemptTimeout bounds the wait for one member's answer (within the context's deadline); 0
	// means 2 s. A member that does not answer in time (stopped, hung, or not serving its client
	// port yet) is passed over for the next; a change left unanswered so is asked again (the
	// leader's answers are idempotent: a join answered already is answered with the same raft id,
	// a removal made already is answered as made), and ends in ErrOutcomeUnknown only if no answer
	// comes at all.
	AttemptTimeout time.Duration
	// Avoid lists addresses never to send to, even when a member names one as the leader's: a
	// joining member's own client address (it serves nothing there until it has joined, and the
	// others may still name it as their leader if it was one before it was rebuilt).
	Avoid []string
	// Logger, if set, hears of each attempt, redirect and retry (at Debug level).
	Logger *slog.Logger
	// TLS, if set, connects over TLS with it (the server name is each endpoint's host); Token,
	// if set, authenticates each connection (CAuth, before the request).
	TLS   *tls.Config
	Token string
}

// Result is an answer and where it came from.
type Result struct {
	Response wire.AdminResponse
	Status   wire.Status
	// Raw is the answer's JSON as the member sent it (fields this build does not know
	// included), for a caller that prints it.
	Raw []byte
	// Endpoint is the address of the member that answered.
	Endpoint string
}

const (
	// maxHops bounds the redirects followed in a row; then Call backs off before going on.
	maxHops = 10
	// retryMin and retryMax bound the backoff between tries of a request the leader answered
	// "not now", or that went round the members without finding a leader.
	retryMin = 100 * time.Millisecond
	retryMax = time.Second
	// defaultDialTimeout is Options.DialTimeout's default, defaultAttemptTimeout
	// Options.AttemptTimeout's.
	defaultDialTimeout    = 3 * time.Second
	defaultAttemptTimeout = 2 * time.Second
	// maxAnswerBytes bounds an answer's frame body.
	maxAnswerBytes = wire.MaxPayloadBytes + 1024
	// outcomeUnknownText is what a leader's answer says when it lost leadership while the change
	// was under way (StatusUnavailable): trying again could not tell what became of it.
	outcomeUnknownText = "outcome unknown"
)

// requestIDs numbers the requests of this process.
var requestIDs atomic.Uint64

// Call sends req and returns the answer and its status. "status" and "errors" are sent to
// endpoints[0] only, and neither redirected nor tried again; any other operation is tried on the
// endpoints in order until a member answers, following redirects to the leader, and tried again
// while the leader answers StatusUnavailable, until ctx ends: then the last answer is returned with
// its status, and a nil error. The errors are ErrUnreachable, ErrOutcomeUnknown, ErrNoAdmin and
// ErrNoLeader (wrapped, with the details); "list-members", which changes nothing, never ends in
// ErrOutcomeUnknown (no answer is ErrUnreachable).
func Call(ctx context.Context, endpoints []string, req wire.AdminRequest, opts Options) (wire.AdminResponse, wire.Status, error) {
	r, err := Do(ctx, endpoints, req, opts)
	return r.Response, r.Status, err
}

// Do is Call that returns the answer's raw JSON and its endpoint too.
func Do(ctx context.Context, endpoints []string, req wire.AdminRequest, opts Options) (Result, error) {
	if len(endpoints) == 0 {
		return Result{}, fmt.Errorf("%w: no endpoints given", ErrUnreachable)
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = defaultDialTimeout
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = defaultAttemptTimeout
	}
	endpoints = slices.DeleteFunc(slices.Clone(endpoints), func(ep string) bool { return slices.Contains(opts.Avoid, ep) })
	if len(endpoints) == 0 {
		return Result{}, fmt.Errorf("%w: no endpoints given but those to avoid", ErrUnreachable)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &caller{opts: opts, log: log, op: req.Op, body: wire.EncodeAdmin(req),
		changes: req.Op != wire.AdminStatus && req.Op != wire.AdminListMembers && req.Op != wire.AdminErrors}
	if req.Op == wire.AdminStatus || req.Op == wire.AdminErrors { // each member answers for itself
		return c.status(ctx, endpoints[0])
	}
	return c.call(ctx, endpoints)
}

type caller struct {
	opts    Options
	log     *slog.Logger
	op      string
	body    []byte
	changes bool // the operation changes the membership: an unanswered one's outcome is unknown
}

// status asks one member for its own status (or its own recent errors).
func (c *caller) status(ctx context.Context, ep string) (Result, error) {
	a := c.send(ctx, ep)
	switch a.kind {
	case gotAnswer:
		return c.result(ep, a.msg)
	case gotRedirect:
		return Result{}, fmt.Errorf("%s redirected a %s request, which every member answers itself", ep, c.op)
	case gotRefusal:
		return Result{}, noAdmin(ep, a.text)
	case gotUnauthenticated:
		return Result{}, fmt.Errorf("%w: %s: %s", ErrUnauthenticated, ep, a.text)
	case gotClosed:
		if old, why := c.probe(ctx, ep); old {
			return Result{}, noAdmin(ep, why)
		}
	}
	return Result{}, fmt.Errorf("%w: %s: %s", ErrUnreachable, ep, a.text)
}

// call sends a request only the leader serves.
func (c *caller) call(ctx context.Context, endpoints []string) (Result, error) {
	var (
		down     []string // endpoints not reached, in the order first tried
		why      = map[string]string{}
		refusals = map[string]string{} // endpoints that do not speak the admin channel
		last     *Result               // the last StatusUnavailable answer
		noLeader error                 // the last redirect, as ErrNoLeader
		lastWas  attemptKind           // what the last try met: an answer, a redirect, neither (gotDown), or nothing
		hint     string                // the leader's address, from a redirect
		next     int                   // the next endpoint to try, with no hint
		hops     int                   // redirects followed in a row
		downs    int                   // tries in a row that reached no member
		reached  bool                  // some member answered or redirected
		slow     string                // a change sent to a member that did not answer in time
		wait     = retryMin
	)
	backoff := func() bool {
		t := time.NewTimer(wait)
		defer t.Stop()
		wait = min(2*wait, retryMax)
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	notReached := func(ep, reason string) {
		if _, ok := why[ep]; !ok {
			down = append(down, ep)
		}
		why[ep] = reason
		downs++
		lastWas = gotDown
	}
	for ctx.Err() == nil {
		ep, followed := hint, hint != ""
		hint = ""
		if ep == "" {
			ep = endpoints[next%len(endpoints)]
			next++
		}
		c.log.Debug("admin request", "op", c.op, "endpoint", ep)
		sent := time.Now()
		a := c.send(ctx, ep)
		rtt := time.Since(sent)
		if a.kind == gotClosed {
			// A build from before the admin channel closes the connection on a CAdmin; so does a
			// member that stops, or that has too many connections open.
			if old, text := c.probe(ctx, ep); old {
				a = attempt{kind: gotRefusal, text: text}
			}
		}
		switch a.kind {
		case gotUnauthenticated:
			// Final: every member takes the same credentials.
			return Result{}, fmt.Errorf("%w: %s: %s", ErrUnauthenticated, ep, a.text)
		case gotAnswer:
			reached, downs, hops = true, 0, 0
			res, err := c.result(ep, a.msg)
			if err != nil || res.Status != wire.StatusUnavailable {
				return res, err
			}
			if c.changes && strings.Contains(res.Response.Error, outcomeUnknownText) {
				return res, fmt.Errorf("%w: %s", ErrOutcomeUnknown, res.Response.Error)
			}
			last, lastWas = &res, gotAnswer
			c.log.Debug("not now: trying again", "endpoint", ep, "why", res.Response.Error, "after", wait)
			hint = ep // the leader answered: ask it again (if it handed over, it redirects)
			if !backoff() || !timeFor(ctx, rtt) {
				// Not tried again so close to the end that its answer could not come back in
				// time: a change sent and not answered would be "outcome unknown", where this
				// answer says it was not made.
				return *last, nil
			}
			continue
		case gotRedirect:
			reached, downs, lastWas = true, 0, gotRedirect
			hops++
			m := a.msg
			noLeader = fmt.Errorf("%w: %s redirected the request without a leader's address (leader %s)", ErrNoLeader, ep, leaderName(m.LeaderID))
			if m.LeaderAddr != "" && m.LeaderAddr != ep && !slices.Contains(c.opts.Avoid, m.LeaderAddr) {
				hint = m.LeaderAddr
				noLeader = fmt.Errorf("%w: %s redirected the request to member %d at %s", ErrNoLeader, ep, m.LeaderID, m.LeaderAddr)
			}
			c.log.Debug("redirected", "endpoint", ep, "leader", m.LeaderID, "leader_addr", m.LeaderAddr, "hops", hops)
			if hops > maxHops {
				hops, hint = 0, ""
				if !backoff() {
					return Result{}, noLeader
				}
			}
			continue
		case gotRefusal:
			refusals[ep] = a.text
			if followed {
				// The leader itself does not speak it: no member can serve the request.
				return Result{}, noAdmin(ep, a.text+" (the leader)")
			}
			notReached(ep, "no admin channel: "+a.text)
			if len(refusals) >= len(endpoints) {
				return Result{}, noAdmin(ep, a.text)
			}
		case gotDown:
			notReached(ep, a.text)
		case gotClosed:
			if c.changes {
				return Result{}, fmt.Errorf("%w: %s closed the connection after the request was sent, before it answered", ErrOutcomeUnknown, ep)
			}
			notReached(ep, a.text)
		case gotNoAnswer:
			if c.changes {
				res := Result{}
				if last != nil {
					res = *last
				}
				return res, fmt.Errorf("%w: %s had not answered when the time was up", ErrOutcomeUnknown, ep)
			}
			notReached(ep, a.text)
		case gotSlow:
			// Passed over: the next member is asked (a change again: its answers are idempotent).
			if c.changes {
				slow = ep
			}
			notReached(ep, a.text)
		}
		if downs >= len(endpoints) {
			downs = 0
			if !reached {
				if len(refusals) > 0 {
					return Result{}, fmt.Errorf("%w (%s)", ErrNoAdmin, joinWhy(down, why))
				}
				return Result{}, fmt.Errorf("%w: %s", ErrUnreachable, joinWhy(down, why))
			}
			if !backoff() {
				break
			}
		}
	}
	// The context ended between tries: report what the last one met.
	res := Result{}
	if last != nil {
		res = *last
	}
	if slow != "" && lastWas != gotAnswer {
		return res, fmt.Errorf("%w: %s did not answer the change in time, and no member answered since", ErrOutcomeUnknown, slow)
	}
	switch {
	case lastWas == gotAnswer:
		return res, nil
	case lastWas == gotRedirect:
		return res, noLeader
	case noLeader != nil:
		// A member answered, with no leader to name (no quorum, an election): that is the
		// news, not that the last member tried was down.
		return res, fmt.Errorf("%w; not reached: %s", noLeader, joinWhy(down, why))
	case len(down) == 0:
		return res, fmt.Errorf("%w: %v", ErrUnreachable, ctx.Err())
	}
	return res, fmt.Errorf("%w: %s", ErrUnreachable, joinWhy(down, why))
}

// timeFor reports whether ctx leaves time for another try that takes about as long as the last:
// a few of its round trips, and retryMin/2 at least.
func timeFor(ctx context.Context, rtt time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > max(4*rtt, retryMin/2)
}

func leaderName(id int) string {
	if id < 0 {
		return "unknown"
	}
	return fmt.Sprintf("member %d", id)
}

func joinWhy(eps []string, why map[string]string) string {
	parts := make([]string, 0, len(eps))
	for _, ep := range eps {
		parts = append(parts, ep+": "+why[ep])
	}
	return strings.Join(parts, "; ")
}

func noAdmin(ep, text string) error {
	return fmt.Errorf("%w: %s: %s", ErrNoAdmin, ep, text)
}

// result decodes an answer.
func (c *caller) result(ep string, m wire.ClientMsg) (Result, error) {
	resp, err := wire.DecodeAdminResponse(m.Payload)
	if err != nil {
		err = fmt.Errorf("%s answered what this build cannot read: %w", ep, err)
		if c.changes {
			err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		return Result{}, err
	}
	return Result{Response: resp, Status: m.Status, Raw: m.Payload, Endpoint: ep}, nil
}

// attemptKind is what one request on one connection met.
type attemptKind uint8

const (
	gotNothing         attemptKind = iota // nothing tried yet
	gotAnswer                             // a CAdminResponse
	gotRedirect                           // a CRedirect: the member is not the leader
	gotRefusal                            // a CVersionRefused, or (probe) a build without the admin channel
	gotDown                               // not reached: the request was not delivered (dial or write failed, not a Tandem port)
	gotClosed                             // the connection ended after the request was written, without an answer
	gotNoAnswer                           // the context ended after the request was written, before an answer
	gotSlow                               // the member did not answer within Options.AttemptTimeout
	gotUnauthenticated                    // the credential was refused (or the member's certificate not trusted)
)

type attempt struct {
	kind attemptKind
	msg  wire.ClientMsg
	text string // why, for the kinds other than an answer or a redirect
}

// send sends the request to ep on a connection of its own and waits for its answer.
func (c *caller) send(ctx context.Context, ep string) attempt {
	id := requestIDs.Add(1)
	req := wire.ClientMsg{Kind: wire.CAdmin, RequestID: id, Protocol: wire.Range{Min: Version, Max: max(Version, wire.ClientProtocolMax)},
		Payload: c.body}
	m, a := c.exchange(ctx, ep, &req, Version, func(m *wire.ClientMsg) bool {
		switch m.Kind {
		case wire.CAdminResponse, wire.CRedirect:
			return m.RequestID == id
		case wire.CVersionRefused:
			return true
		}
		return false
	})
	if a.kind != gotAnswer {
		return a
	}
	switch m.Kind {
	case wire.CRedirect:
		return attempt{kind: gotRedirect, msg: m}
	case wire.CVersionRefused:
		return attempt{kind: gotRefusal, text: refusalText(m)}
	}
	return attempt{kind: gotAnswer, msg: m}
}

func refusalText(m wire.ClientMsg) string {
	if len(m.Payload) > 0 {
		return fmt.Sprintf("it speaks client protocol %s (%s)", m.Protocol, m.Payload)
	}
	return fmt.Sprintf("it speaks client protocol %s", m.Protocol)
}

// probe tells whether ep, which closed the connection on an admin request without an answer,
// runs a build from before the admin channel: it sends an attach of a fresh session, which every
// build reads and answers without changing anything (a follower redirects; a leader says the
// session is not open), with the client's whole range, and reads the version of the answer.
func (c *caller) probe(ctx context.Context, ep string) (old bool, text string) {
	var s wire.SessionID
	_, _ = rand.Read(s[:])
	req := wire.ClientMsg{Kind: wire.CAttach, Session: s, Protocol: wire.Range{Min: wire.ClientProtocolMin, Max: max(Version, wire.ClientProtocolMax)}}
	m, a := c.exchange(ctx, ep, &req, wire.ClientProtocolMin, func(*wire.ClientMsg) bool { return true })
	switch {
	case a.kind != gotAnswer:
		return false, ""
	case m.Kind == wire.CVersionRefused:
		return m.Protocol.Max < Version, refusalText(m)
	case m.Version != 0 && m.Version < Version:
		return true, fmt.Sprintf("it closed the connection on the admin request, and speaks client protocol %d to a client that speaks %d", m.Version, Version)
	}
	return false, ""
}

// exchange writes out (in version ver) on a new connection to ep and reads until a message want
// accepts, which it returns (gotAnswer), its payload the caller's.
func (c *caller) exchange(ctx context.Context, ep string, out *wire.ClientMsg, ver uint16, want func(*wire.ClientMsg) bool) (wire.ClientMsg, attempt) {
	d := net.Dialer{Timeout: c.opts.DialTimeout}
	var conn net.Conn
	var err error
	if c.opts.TLS != nil {
		conn, err = (&tls.Dialer{NetDialer: &d, Config: c.opts.TLS}).DialContext(ctx, "tcp", ep)
	} else {
		conn, err = d.DialContext(ctx, "tcp", ep)
	}
	if err != nil {
		if why := tlsconf.Refusal(err); why != "" {
			return wire.ClientMsg{}, attempt{kind: gotUnauthenticated, text: why}
		}
		return wire.ClientMsg{}, attempt{kind: gotDown, text: netReason(err)}
	}
	defer tlsconf.CloseSocket(conn) // (no close_notify behind a request cut short by its deadline)
	attemptEnd := time.Now().Add(c.opts.AttemptTimeout)
	dl, ok := ctx.Deadline()
	if !ok || dl.After(attemptEnd) {
		dl = attemptEnd
	}
	_ = conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var frames []byte
	if c.opts.Token != "" {
		// The credential first, in the version that carries it (the member fixes the
		// connection's version from its range).
		frames = wire.AppendClientFrame(frames, &wire.ClientMsg{Kind: wire.CAuth, Payload: []byte(c.opts.Token),
			Protocol: wire.Range{Min: wire.ClientProtocolMin, Max: wire.ClientProtocolMax}}, max(ver, 5))
	}
	if _, err := conn.Write(wire.AppendClientFrame(frames, out, ver)); err != nil {
		// A frame written in part is never read as a request.
		return wire.ClientMsg{}, attempt{kind: gotDown, text: netReason(err)}
	}
	r := bufio.NewReader(conn)
	var buf []byte
	for {
		kind, body, nb, err := wire.ReadFrame(r, maxAnswerBytes, buf)
		buf = nb
		switch {
		case err == nil:
		case ctx.Err() == nil && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(attemptEnd):
			return wire.ClientMsg{}, attempt{kind: gotSlow, text: fmt.Sprintf("sent, and no answer within %s", c.opts.AttemptTimeout)}
		case ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded):
			return wire.ClientMsg{}, attempt{kind: gotNoAnswer, text: "sent, and no answer before the time was up"}
		case errors.Is(err, wire.ErrMalformed), errors.Is(err, wire.ErrVersion):
			return wire.ClientMsg{}, attempt{kind: gotDown, text: "not a Tandem client port: " + err.Error()}
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return wire.ClientMsg{}, attempt{kind: gotClosed, text: "closed the connection without answering"}
		case tlsconf.Refusal(err) != "":
			return wire.ClientMsg{}, attempt{kind: gotUnauthenticated, text: tlsconf.Refusal(err)}
		default:
			return wire.ClientMsg{}, attempt{kind: gotClosed, text: "the connection failed before an answer: " + netReason(err)}
		}
		if kind != wire.FrameClient {
			return wire.ClientMsg{}, attempt{kind: gotDown, text: fmt.Sprintf("not a Tandem client port: frame kind %d", kind)}
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			return wire.ClientMsg{}, attempt{kind: gotDown, text: "not a Tandem client port: " + err.Error()}
		}
		if m.Kind == wire.CAuthRefused {
			return wire.ClientMsg{}, attempt{kind: gotUnauthenticated, text: string(m.Payload)}
		}
		if want(&m) {
			m.Payload = bytes.Clone(m.Payload)
			return m, attempt{kind: gotAnswer}
		}
	}
}

// netReason is a network error without the address the caller names already.
func netReason(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Op + ": " + op.Err.Error()
	}
	return err.Error()
}
