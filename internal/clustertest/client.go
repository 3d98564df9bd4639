package clustertest

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/tandem-cluster/tandem/internal/clientcore"
	"github.com/tandem-cluster/tandem/internal/replica"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Result is the outcome of one command or query of a simulated client.
type Result struct {
	Reply []byte
	// Err is nil for an answer; else the client library's error: it wraps
	// clientcore.ErrNotApplied when the command is known not to have been applied.
	Err error
	// At is the simulated time the outcome arrived.
	At int64
}

// Client is a simulated client: the client library's own protocol state machine
// (internal/clientcore: session, numbering, failover, retries, window, completions) driven over
// simulated connections, as the client package drives it over TCP. Messages on a connection go
// through the simulated network (loss, partitions, per-link order); connecting to a member that
// is down fails; a member that crashes goes silent; after a restart it resets the old
// connections.
type Client struct {
	c       *Cluster
	idx     int // the client's network id is clientBase+idx
	core    *clientcore.Core
	Session wire.SessionID
	started bool
	// stopped: the client is paused; what reaches it waits in backlog until Resume, unless the
	// pause breaks its connection (breaks, drawn at Stop): then what reaches it is lost (broken)
	// and the connection fails when it resumes.
	stopped, breaks, broken bool
	backlog                 []func()
	conn                    *simConn // the core's connection (dialing or established), nil when none

	// Grant is what the member's client port authenticated the client's connections as (set on
	// every request it sends, as the port does); nil: a port without authentication.
	Grant *wire.Grant

	Results      map[wire.Seq]Result
	QueryResults map[uint64]Result
	// OnResult, if set, sees each outcome as it is stored: in QueryResults under key if query,
	// else in Results under wire.Seq(key).
	OnResult func(query bool, key uint64, r Result)
	// onRaw, when set, sees every message that reaches the client on a connection SendRaw
	// opened (tests that drive the protocol by hand).
	onRaw func(m *wire.ClientMsg)
	raw   map[int]*simConn
}

// simConn is one connection of a simulated client to a member.
type simConn struct {
	id     replica.ConnID    // the member's name for it
	core   clientcore.ConnID // the core's (0 for a raw connection)
	cl     *Client
	member int
	gen    int  // the member's Starts when it accepted the connection (0: not yet)
	closed bool // the client closed it, or learnt it was reset
}

// The timing of simulated clients, shorter than the library's defaults (AttemptTimeout 2 s,
// keep-alives every 2 s, backoff 20–250 ms) so that a seed's 30 seconds stay productive: timers
// run every 50 ms, an idle session sends a keep-alive every second, and a member silent while
// the client waits is abandoned after 150 ms. That last one is short because the simulated
// network loses client messages (up to 15 %), which TCP never does on a live connection: a lost
// message leaves the client waiting until it gives up on the connection (the simulated client
// before the library's core drove it resent on the same connection after 250 ms instead). With
// these values the 1 000-seed run does as many operations as it did then.
const (
	clientTick         = 50 * time.Millisecond
	clientAttemptMax   = 150 * time.Millisecond
	clientKeepAlive    = time.Second
	clientInFlightMax  = 256
	clientBackoffMin   = 10 * time.Millisecond
	clientBackoffMax   = 100 * time.Millisecond
	clientRedirectsMax = 8
	clientAddrFirst    = 9000
)

func clientAddr(member int) string { return fmt.Sprintf("sim:%d", clientAddrFirst+member) }

// NewClient adds a simulated client. It opens its session on the first Submit or Query.
func (c *Cluster) NewClient() *Client {
	cl := &Client{
		c:            c,
		idx:          len(c.clients),
		Results:      map[wire.Seq]Result{},
		QueryResults: map[uint64]Result{},
		raw:          map[int]*simConn{},
	}
	binary.LittleEndian.PutUint64(cl.Session[:8], c.Rng.Uint64())
	binary.LittleEndian.PutUint64(cl.Session[8:], c.Rng.Uint64())
	// The first member dialled is drawn too, as a client's configuration would list them in
	// any order.
	first := c.Rng.IntN(len(c.Nodes))
	var eps []string
	for i := range c.Nodes {
		eps = append(eps, clientAddr((first+i)%len(c.Nodes)))
	}
	cl.core = clientcore.New(clientcore.Config{
		Endpoints:         eps,
		AttemptTimeout:    clientAttemptMax,
		KeepAliveInterval: clientKeepAlive,
		BackoffMin:        clientBackoffMin,
		BackoffMax:        clientBackoffMax,
		MaxRedirects:      clientRedirectsMax,
		MaxInFlight:       clientInFlightMax,
		Jitter:            c.Rng.Int64N,
	}, cl.Session, (*simOutput)(cl))
	c.clients = append(c.clients, cl)
	c.push(event{at: c.now + int64(clientTick), kind: evClientTick, cl: cl})
	return cl
}

// net is the client's id on the simulated network (for partitions).
func (cl *Client) net() int { return clientBase + cl.idx }

func (cl *Client) start() {
	if !cl.started {
		cl.started = true
		cl.core.Start(cl.c.now)
	}
}

// Stop pauses the client (a stopped process): it sends nothing. What reaches it meanwhile waits
// until Resume, as in a socket's buffer; or, for half the pauses (drawn here), the connection
// breaks during the pause (the member restarted, a middlebox dropped it): what reached it is lost
// and the client learns of the break when it resumes. Its session expires if the pause outlasts
// the session timeout.
func (cl *Client) Stop() {
	cl.stopped = true
	cl.breaks, cl.broken = cl.c.Rng.IntN(2) == 0, false
}

// Resume ends a pause: the client takes what reached it meanwhile, in order (or finds its
// connection broken), then runs its timers (abandoning a member that fell silent, sending a
// keep-alive).
func (cl *Client) Resume() {
	cl.stopped = false
	backlog := cl.backlog
	cl.backlog = nil
	for _, f := range backlog {
		f()
	}
	if cl.broken {
		cl.broken = false
		if sc := cl.conn; sc != nil {
			(*simOutput)(cl).Hangup(sc.core) // the member learns of the break too
			cl.core.Failed(sc.core, cl.c.now)
		}
	}
	cl.core.Tick(cl.c.now)
}

// input runs f now, or on Resume if the client is stopped (or drops it, if the pause breaks the
// connection).
func (cl *Client) input(f func()) {
	switch {
	case !cl.stopped:
		f()
	case cl.breaks:
		cl.broken = true
	default:
		cl.backlog = append(cl.backlog, f)
	}
}

// Submit sends a command and returns its sequence number (the key of its result in Results).
func (cl *Client) Submit(payload []byte) wire.Seq {
	seq, err := cl.TrySubmit(payload)
	if err != nil {
		cl.c.fatalf("client %d: submit: %v", cl.idx, err)
	}
	return seq
}

// TrySubmit is Submit, returning the client library's refusal (clientcore.ErrInFlightFull, a
// closed session) instead of failing the test.
func (cl *Client) TrySubmit(payload []byte) (wire.Seq, error) { return cl.TrySubmitBy(payload, 0) }

// TrySubmitBy is TrySubmit with a deadline (simulated Unix nanoseconds; 0: none), after which
// the client library gives the command up (clientcore.ErrDeadline).
func (cl *Client) TrySubmitBy(payload []byte, deadline int64) (wire.Seq, error) {
	cl.start()
	ref := new(wire.Seq)
	seq, err := cl.core.Submit(cl.c.now, slices.Clone(payload), ref, deadline)
	if err != nil {
		return 0, err
	}
	*ref = seq
	return seq, nil
}

// Query sends a query and returns its request id (the key of its result in QueryResults).
func (cl *Client) Query(payload []byte) uint64 {
	id, err := cl.TryQuery(payload)
	if err != nil {
		cl.c.fatalf("client %d: query: %v", cl.idx, err)
	}
	return id
}

// TryQuery is Query, returning the client library's refusal instead of failing the test.
func (cl *Client) TryQuery(payload []byte) (uint64, error) {
	cl.start()
	ref := new(queryRef)
	id, err := cl.core.Query(cl.c.now, slices.Clone(payload), ref, 0)
	if err != nil {
		return 0, err
	}
	*ref = queryRef(id)
	return id, nil
}

type queryRef uint64

// GiveUp gives up every unanswered command (clientcore.Core.Cancel): each completes as not
// applied if the cluster refused every attempt, else as of unknown outcome.
func (cl *Client) GiveUp(cause error) {
	for _, seq := range cl.core.Outstanding() {
		cl.core.Cancel(cl.c.now, seq, cause)
	}
}

// Outstanding returns the numbers of the commands not answered yet, ascending.
func (cl *Client) Outstanding() []wire.Seq { return cl.core.Outstanding() }

// Unanswered returns how many commands and queries wait for an answer.
func (cl *Client) Unanswered() int {
	n, q := cl.core.Unanswered()
	return n + q
}

// Expired reports whether the session ended (the cluster expired or refused it): its
// unanswered commands were completed (as of unknown outcome, or as not applied if no attempt
// may have been) and are never resent.
func (cl *Client) Expired() bool { return cl.core.Err() != nil }

// CloseSession closes the session on the cluster as the client's Close does: what is unanswered
// completes at once, then the core asks the leader to close the session until the cluster says
// it did (Closed).
func (cl *Client) CloseSession() { cl.core.CloseSession(cl.c.now, clientcore.ErrClosed) }

// Closed reports whether the cluster said the session is closed, after CloseSession.
func (cl *Client) Closed() bool { return cl.core.Closed() }

// Redirects counts redirects followed.
func (cl *Client) Redirects() int { return cl.core.Stats().Redirects }

// Timeouts counts members abandoned for silence.
func (cl *Client) Timeouts() int { return cl.core.Stats().Timeouts }

// SendRaw sends a hand-made message to member to on a connection of its own, bypassing the
// client library; answers go to onRaw (tests of retries with chosen numbers).
func (cl *Client) SendRaw(to int, m *wire.ClientMsg) {
	c := cl.c
	sc := cl.raw[to]
	if sc == nil || sc.closed || (c.Nodes[to].R != nil && sc.gen != c.Nodes[to].Starts) {
		sc = c.newConn(cl, to, 0)
		sc.gen = c.Nodes[to].Starts // connected at once: the test drives the protocol, not TCP
		cl.raw[to] = sc
	}
	c.sendToNode(sc, m)
}

// tick runs the client's timers.
func (cl *Client) tick() {
	if !cl.stopped {
		cl.core.Tick(cl.c.now)
	}
}

// receive takes a message a member sent on sc.
func (cl *Client) receive(sc *simConn, m *wire.ClientMsg) {
	if sc.closed {
		return
	}
	if sc.core == 0 {
		if cl.onRaw != nil {
			cl.onRaw(m)
		}
		return
	}
	cl.input(func() {
		// Each simulated message arrives on its own: a read from the network each.
		cl.core.Heard(sc.core, cl.c.now)
		cl.core.Received(sc.core, m)
	})
}

// ---- the core's outputs ----

type simOutput Client

func (o *simOutput) Dial(id clientcore.ConnID, addr string, after time.Duration) {
	cl := (*Client)(o)
	c := cl.c
	member := -1
	for i := range c.Nodes {
		if clientAddr(i) == addr {
			member = i
		}
	}
	if member < 0 {
		c.fatalf("client %d dials %q, which is no member's client address", cl.idx, addr)
		return
	}
	sc := c.newConn(cl, member, id)
	cl.conn = sc
	c.push(event{at: c.now + int64(after), kind: evClientDial, sc: sc})
}

func (o *simOutput) Write(id clientcore.ConnID, m *wire.ClientMsg) {
	cl := (*Client)(o)
	if sc := cl.conn; sc != nil && sc.core == id && sc.gen != 0 {
		cl.c.sendToNode(sc, m)
	}
}

func (o *simOutput) Hangup(id clientcore.ConnID) {
	cl := (*Client)(o)
	c := cl.c
	sc := cl.conn
	if sc == nil || sc.core != id {
		return
	}
	cl.conn = nil
	sc.closed = true
	delete(c.conns, sc.id)
	if sc.gen != 0 {
		// The close reaches the member after what was sent before it (TCP's FIN).
		c.push(event{at: c.arrival(cl.net(), sc.member), kind: evClientGone, sc: sc})
	}
}

func (o *simOutput) Complete(ref any, reply []byte, err error) {
	cl := (*Client)(o)
	r := Result{Reply: reply, Err: err, At: cl.c.now}
	switch ref := ref.(type) {
	case *wire.Seq:
		cl.Results[*ref] = r
		if cl.OnResult != nil {
			cl.OnResult(false, uint64(*ref), r)
		}
	case *queryRef:
		cl.QueryResults[uint64(*ref)] = r
		if cl.OnResult != nil {
			cl.OnResult(true, uint64(*ref), r)
		}
	}
}

// Push drops what a service pushes: the simulated services push nothing.
func (o *simOutput) Push([]byte) {}

// ---- connections on the simulated network ----

func (c *Cluster) newConn(cl *Client, member int, core clientcore.ConnID) *simConn {
	c.nextConn++
	sc := &simConn{id: c.nextConn, core: core, cl: cl, member: member}
	c.conns[sc.id] = sc
	return sc
}

// sendToNode sends m from the client on sc, unless the network loses it.
func (c *Cluster) sendToNode(sc *simConn, m *wire.ClientMsg) {
	if c.lost(sc.cl.net(), sc.member) {
		return
	}
	cp := *m
	cp.Payload = slices.Clone(m.Payload)
	c.push(event{at: c.arrival(sc.cl.net(), sc.member), kind: evToNode, node: sc.member, cm: &cp, sc: sc})
}

// toNode delivers a client's message to its member.
func (c *Cluster) toNode(sc *simConn, m *wire.ClientMsg) {
	n := c.Nodes[sc.member]
	switch {
	case n.R == nil:
		return // the member is down: nothing answers (the client times out)
	case n.Starts != sc.gen:
		// The member restarted since it accepted the connection: it resets it.
		c.push(event{at: c.now + c.latency(), kind: evClientFailed, sc: sc})
		return
	}
	if m.Kind == wire.CQuery {
		c.noteRead(n, sc.id, m)
	}
	m.Grant = sc.cl.Grant // the port's decision about the connection, on every request
	n.R.ClientRequest(sc.id, m)
	c.process(n)
}

// clientConnEvent moves a client connection along: connect, accept or refuse, establish, close.
func (c *Cluster) clientConnEvent(ev event) {
	sc := ev.sc
	cl := sc.cl
	switch ev.kind {
	case evClientDial:
		if sc.closed {
			return // the core gave up on it before it left
		}
		if c.cut[[2]int{cl.net(), sc.member}] {
			return // the connect is lost: the client times out
		}
		c.push(event{at: c.now + c.latency(), kind: evClientSyn, sc: sc})
	case evClientSyn:
		n := c.Nodes[sc.member]
		back := c.now + c.latency()
		if c.cut[[2]int{sc.member, cl.net()}] {
			return // the answer is lost: the client times out
		}
		if n.R == nil {
			c.push(event{at: back, kind: evClientFailed, sc: sc}) // refused: nothing listens
			return
		}
		sc.gen = n.Starts
		c.push(event{at: back, kind: evClientConnected, sc: sc})
	case evClientConnected:
		if sc.closed {
			return
		}
		cl.input(func() { cl.core.Connected(sc.core, c.now) })
	case evClientFailed:
		if sc.closed {
			return
		}
		sc.closed = true
		delete(c.conns, sc.id)
		if sc.core != 0 {
			cl.input(func() { cl.core.Failed(sc.core, c.now) })
		}
	case evClientGone:
		if n := c.Nodes[sc.member]; n.R != nil && n.Starts == sc.gen {
			n.R.ClientGone(sc.id)
			c.process(n)
		}
	}
}

// resetConns resets the established connections of member id's clients (the member's process
// ended: its system answers their next packets with a reset).
func (c *Cluster) resetConns(id int) {
	for _, cl := range c.clients { // in order: map order must not reach the simulation
		if sc := cl.conn; sc != nil && sc.member == id && sc.gen != 0 && !sc.closed {
			c.push(event{at: c.now + c.latency(), kind: evClientFailed, sc: sc})
		}
	}
}
