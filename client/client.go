package client

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// Errors callers branch on with errors.Is.
var (
	// ErrSessionExpired: the cluster closed this client's session (it was idle past the session
	// timeout, or the service closed it). The client is finished; Dial a new one.
	ErrSessionExpired = errors.New("tandem: session expired")
	// ErrOutcomeUnknown: the command may or may not have been applied (the caller gave up
	// waiting, or the session expired with the command unanswered). It is never resent.
	ErrOutcomeUnknown = errors.New("tandem: outcome unknown")
	// ErrNotApplied: the cluster refused the command and did not apply it (a limit was hit, or a
	// malformed request). Safe to retry.
	ErrNotApplied = errors.New("tandem: not applied")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("tandem: client closed")
	// ErrNoLeader (the client's "not leader" error: it follows redirects itself) is returned by
	// Dial when its context ends before any member answered as the leader; the error says what
	// the client could reach.
	ErrNoLeader = errors.New("tandem: no leader reachable")
	// ErrTimeout is wrapped (with context.DeadlineExceeded or context.Canceled) in every error
	// returned because the caller's context ended: errors.Is(err, ErrTimeout).
	ErrTimeout = errors.New("tandem: timed out")
)

// ctxErr is the caller's context error, marked as ErrTimeout.
func ctxErr(ctx context.Context) error { return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err()) }

// Config configures a client.
type Config struct {
	// Endpoints are client addresses of cluster members (host:port). Any one reachable member
	// is enough to find the leader.
	Endpoints []string
	// AttemptTimeout bounds one attempt on one member: connecting, attaching, or waiting for any
	// answer while requests are outstanding. A member that accepts connections but never answers
	// (a paused process) is abandoned after it. Default 2 s (about an election timeout).
	AttemptTimeout time.Duration
	// KeepAliveInterval: a client that has sent no command for this long sends a keep-alive
	// (default 2 s; the default session timeout is 10 s). Queries do not name the session, so
	// a client that only queries keeps its session alive with keep-alives.
	KeepAliveInterval time.Duration
	// BackoffMin/Max bound the reconnect backoff, with jitter (default 20 ms and 250 ms: an
	// election takes about 1 s, and a client should notice the new leader soon after).
	BackoffMin, BackoffMax time.Duration
	// MaxRedirects caps consecutive redirect hops before backing off (default 8).
	MaxRedirects int
	// MaxInFlight bounds the commands in flight on the session, counted as the cluster counts
	// its response window: the numbers from the lowest unanswered command to the newest, gaps
	// included (commands answered out of order still count until the ones before them are).
	// Send blocks beyond it, SendAsync refuses. It must not exceed the cluster's response
	// window (default 1024). Default 512.
	MaxInFlight int
	Logger      *slog.Logger
}

func (c *Config) defaults() {
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = 2 * time.Second
	}
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = 2 * time.Second
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = 20 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 250 * time.Millisecond
	}
	if c.MaxRedirects == 0 {
		c.MaxRedirects = 8
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 512
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

type result struct {
	reply []byte
	err   error
}

type call struct {
	seq     wire.Seq
	payload []byte
	done    chan result
	cb      func([]byte, error) // SendAsync: called instead of done
	sent    bool
}

type query struct {
	id      uint64
	payload []byte
	done    chan result
	cb      func([]byte, error)
}

// callback is an asynchronous completion waiting to be run once c.mu is released.
type callback struct {
	f func([]byte, error)
	r result
}

// Client is a session with a Tandem cluster. It is safe for concurrent use: many goroutines may
// Send and Query at once; their commands are pipelined on the one session and answered by
// number.
type Client struct {
	cfg     Config
	log     *slog.Logger
	session wire.SessionID

	mu     sync.Mutex
	cond   *sync.Cond // signalled when in-flight room frees up or the client ends
	conn   *conn      // attached connection, nil while (re)connecting
	opened bool       // the cluster confirmed the session once
	// calls are the unanswered commands by number (calls.low is the lowest unacknowledged
	// number the client reports, calls.next the next number it hands out).
	calls     calls
	nextQuery uint64
	queries   map[uint64]*query
	err       error // terminal: ErrSessionExpired or ErrClosed
	leader    string
	term      uint64
	reach     map[string]bool // endpoint → reachable on the last attempt
	reconnect chan struct{}
	// cbs are completions of SendAsync/QueryAsync decided under mu, run by unlock.
	cbs []callback

	closed chan struct{}
	wg     sync.WaitGroup
}

type conn struct {
	nc       net.Conn
	endpoint string
	// Outgoing frames are combined: a writer appends its frame to pending and, unless another
	// goroutine is already writing, becomes the one that writes pending until it is empty. A
	// single command costs one write and no hand-off; under load one write carries many frames.
	wmu       sync.Mutex
	pending   []byte
	spare     []byte
	flushing  bool
	held      int  // holders (the reader in a burst of answers, Batch callers): see holdWrites
	broken    bool // a write failed: the connection is closed, frames are dropped (resent on reattach)
	lastHeard time.Time
	// sessionSent (Unix nanos) is when something naming the session was last written: queries
	// do not, so they do not keep the session alive on the cluster and do not delay keep-alives.
	sessionSent atomic.Int64
	// awaitSince is when the client first sent something not followed by any answer yet (zero
	// when every send was followed by an answer); guarded by Client.mu.
	awaitSince time.Time
}

// Dial opens a session with the cluster and returns once the session is open, or when ctx ends.
// The client keeps the session open (keep-alives) and follows the leader until Close.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg.defaults()
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("tandem: Config.Endpoints is empty")
	}
	c := &Client{
		cfg:       cfg,
		log:       cfg.Logger,
		calls:     newCalls(cfg.MaxInFlight),
		queries:   map[uint64]*query{},
		reach:     map[string]bool{},
		reconnect: make(chan struct{}, 1),
		closed:    make(chan struct{}),
	}
	c.cond = sync.NewCond(&c.mu)
	if _, err := rand.Read(c.session[:]); err != nil {
		return nil, err
	}
	c.wg.Add(1)
	go c.run()
	// Wait for the first attach.
	for {
		c.mu.Lock()
		opened, err := c.opened, c.err
		c.mu.Unlock()
		if opened {
			return c, nil
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			w := c.Waiting()
			c.Close()
			return nil, fmt.Errorf("%w (%s): %w", ErrNoLeader, w, ctxErr(ctx))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// SessionID returns the session id in hex.
func (c *Client) SessionID() string { return fmt.Sprintf("%x", c.session[:]) }

// Waiting describes what the client waits for while it has no leader, e.g.
// "reachable 1 of 3, need 2"; "" while attached.
func (c *Client) Waiting() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return ""
	}
	n := 0
	for _, e := range c.cfg.Endpoints {
		if c.reach[e] {
			n++
		}
	}
	total := len(c.cfg.Endpoints)
	return fmt.Sprintf("reachable %d of %d, need %d", n, total, total/2+1)
}

// Close ends the client. Unanswered commands fail with ErrOutcomeUnknown. The session is left
// to expire (Close does not close it on the cluster: see CloseSession).
func (c *Client) Close() error {
	c.mu.Lock()
	if c.err == nil {
		c.err = ErrClosed
	}
	c.failAll(ErrClosed)
	cn := c.conn
	c.unlock()
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	if cn != nil {
		_ = cn.nc.Close()
	}
	c.wg.Wait()
	return nil
}

// failAll fails every outstanding call; c.mu held.
func (c *Client) failAll(cause error) {
	c.calls.each(func(cl *call) {
		err := cause
		if cl.sent {
			err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, cause)
		}
		c.finish(cl.done, cl.cb, result{err: err})
	})
	c.calls.clear()
	for id, q := range c.queries {
		c.finish(q.done, q.cb, result{err: cause})
		delete(c.queries, id)
	}
	c.cond.Broadcast()
}

// Send sends a command through the log and returns the service's reply. It is applied exactly
// once: across failovers the client resends it under the same number and the cluster answers a
// resend from its record. If ctx ends first, the error wraps ErrOutcomeUnknown and ctx.Err().
func (c *Client) Send(ctx context.Context, payload []byte) ([]byte, error) {
	c.mu.Lock()
	for c.err == nil && c.calls.span() >= c.cfg.MaxInFlight {
		if ctx.Err() != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: %w", ErrNotApplied, ctxErr(ctx))
		}
		c.waitCond(ctx)
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	cl := &call{payload: slices.Clone(payload), done: make(chan result, 1)}
	c.calls.add(cl)
	cn := c.conn
	flush := false
	if cn != nil {
		cl.sent = true
		flush = c.queue(cn, &wire.ClientMsg{Kind: wire.CCommand, Session: c.session, Seq: cl.seq, LowestUnacked: c.lowestUnackedLocked(), Payload: cl.payload})
	}
	c.mu.Unlock()
	if flush {
		c.flush(cn)
	}
	select {
	case r := <-cl.done:
		return r.reply, r.err
	case <-ctx.Done():
		c.mu.Lock()
		_, still := c.calls.get(cl.seq)
		sent := cl.sent
		c.forget(cl.seq)
		c.cond.Broadcast()
		w := ""
		if c.conn == nil {
			w = " (" + c.waitingLocked() + ")"
		}
		c.mu.Unlock()
		if !still {
			r := <-cl.done
			return r.reply, r.err
		}
		if !sent {
			return nil, fmt.Errorf("%w%s: %w", ErrNotApplied, w, ctxErr(ctx))
		}
		return nil, fmt.Errorf("%w%s: %w", ErrOutcomeUnknown, w, ctxErr(ctx))
	}
}

// ErrInFlightFull is returned (wrapped in ErrNotApplied) by SendAsync when MaxInFlight commands
// are already in flight (see Config.MaxInFlight).
var ErrInFlightFull = errors.New("tandem: MaxInFlight commands already outstanding")

// SendAsync sends a command through the log like Send, without waiting: done is called exactly
// once with the service's reply or an error (ErrOutcomeUnknown and ErrSessionExpired as for Send,
// ErrClosed for a command never sent), unless SendAsync itself returns an error, in which case
// the command was not sent and done is never called. It never blocks: with MaxInFlight commands
// outstanding it returns an error wrapping ErrNotApplied and ErrInFlightFull.
//
// done runs on one of the client's goroutines (usually the one reading answers), after the
// client's lock is released, so it may call SendAsync again; it must be quick, or answers behind
// it wait. There is no per-command deadline: an unanswered command is resent across failovers
// until it is answered, the session expires or the client is closed.
func (c *Client) SendAsync(payload []byte, done func(reply []byte, err error)) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	if c.calls.span() >= c.cfg.MaxInFlight {
		c.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrNotApplied, ErrInFlightFull)
	}
	cl := &call{payload: slices.Clone(payload), cb: done}
	c.calls.add(cl)
	cn := c.conn
	cl.sent = cn != nil
	flush := cn != nil && c.queue(cn, &wire.ClientMsg{Kind: wire.CCommand, Session: c.session, Seq: cl.seq, LowestUnacked: c.lowestUnackedLocked(), Payload: cl.payload})
	c.mu.Unlock()
	if flush {
		c.flush(cn)
	}
	return nil
}

// Batch runs fn and writes the commands and queries that fn starts with SendAsync and QueryAsync
// together once it returns: one write instead of one per command, which is most of a command's
// cost on the client when a goroutine starts several at once (a burst of due work, a replay).
// fn must not wait for answers (no Send or Query inside it, and no waiting on a callback): they
// are not written before fn returns. If the connection changes during fn, what was started on
// the new one goes out at once.
func (c *Client) Batch(fn func()) {
	c.mu.Lock()
	cn := c.conn
	c.mu.Unlock()
	if cn == nil {
		fn()
		return
	}
	c.holdWrites(cn)
	defer c.releaseWrites(cn)
	fn()
}

// QueryAsync runs a query like Query, without waiting: done is called exactly once with the
// reply or an error, unless QueryAsync returns an error (the client is finished). done runs as
// for SendAsync.
func (c *Client) QueryAsync(payload []byte, done func(reply []byte, err error)) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.nextQuery++
	q := &query{id: c.nextQuery, payload: slices.Clone(payload), cb: done}
	c.queries[q.id] = q
	cn := c.conn
	c.mu.Unlock()
	if cn != nil {
		c.write(cn, &wire.ClientMsg{Kind: wire.CQuery, RequestID: q.id, Payload: q.payload})
	}
	return nil
}

// waitCond waits on the condition until signalled or ctx ends; c.mu held.
func (c *Client) waitCond(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	c.cond.Wait()
	stop()
}

func (c *Client) waitingLocked() string {
	n := 0
	for _, e := range c.cfg.Endpoints {
		if c.reach[e] {
			n++
		}
	}
	return fmt.Sprintf("reachable %d of %d, need %d", n, len(c.cfg.Endpoints), len(c.cfg.Endpoints)/2+1)
}

func (c *Client) lowestUnackedLocked() wire.Seq { return c.calls.low }

// forget removes a call (the lowest unacknowledged number moves past the numbers no longer
// outstanding); c.mu held.
func (c *Client) forget(seq wire.Seq) { c.calls.remove(seq) }

// Query runs a read-only request linearizably: the leader confirms its leadership (ReadIndex)
// and the service's OnQuery answers once everything committed before the query is applied. It
// needs no session and is retried on another member freely (it changes nothing).
func (c *Client) Query(ctx context.Context, payload []byte) ([]byte, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.nextQuery++
	q := &query{id: c.nextQuery, payload: slices.Clone(payload), done: make(chan result, 1)}
	c.queries[q.id] = q
	cn := c.conn
	c.mu.Unlock()
	if cn != nil {
		c.write(cn, &wire.ClientMsg{Kind: wire.CQuery, RequestID: q.id, Payload: q.payload})
	}
	select {
	case r := <-q.done:
		return r.reply, r.err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.queries, q.id)
		w := ""
		if c.conn == nil {
			w = " (" + c.waitingLocked() + ")"
		}
		c.mu.Unlock()
		return nil, fmt.Errorf("tandem: query%s: %w", w, ctxErr(ctx))
	}
}

// write sends m on cn. It returns once m is written or handed to the goroutine writing at the
// moment (which writes it before it returns). A failed write closes the connection: the reader
// notices, and unanswered commands are resent on the next attach.
func (c *Client) write(cn *conn, m *wire.ClientMsg) {
	if c.queue(cn, m) {
		c.flush(cn)
	}
}

// queue appends m to what cn has to write, and reports whether the caller must then call
// flush: no flush is under way or held to carry it. Commands are queued with c.mu held, in the
// same critical section that numbers them (or, on a new connection, with the resends before
// them), so they reach the cluster in the order of their numbers: the cluster answers in the
// order it receives, and an answer frees a slot of MaxInFlight only when it is the lowest
// unanswered one (a command written after a higher one would hold the whole span). It never
// writes to the network (c.mu must not wait on a socket). Lock order: c.mu, then cn.wmu.
func (c *Client) queue(cn *conn, m *wire.ClientMsg) bool {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	if cn.broken {
		return false
	}
	cn.pending = wire.AppendClientFrame(cn.pending, m)
	if m.Kind != wire.CQuery {
		cn.sessionSent.Store(time.Now().UnixNano())
	}
	return !cn.flushing && cn.held == 0
}

// flush writes what is queued on cn unless a flush is under way or held (which then writes it).
func (c *Client) flush(cn *conn) {
	cn.wmu.Lock()
	if cn.flushing || cn.held > 0 || len(cn.pending) == 0 || cn.broken {
		cn.wmu.Unlock()
		return
	}
	c.flushLocked(cn, true)
}

// holdWrites makes writes on cn queue without being written until releaseWrites: the reader
// holds them while it handles a burst of answers, so that the commands the answers' callbacks
// send go out together in one write.
func (c *Client) holdWrites(cn *conn) {
	cn.wmu.Lock()
	cn.held++
	cn.wmu.Unlock()
}

func (c *Client) releaseWrites(cn *conn) {
	cn.wmu.Lock()
	cn.held--
	if cn.held > 0 || cn.flushing || len(cn.pending) == 0 || cn.broken {
		cn.wmu.Unlock()
		return
	}
	c.flushLocked(cn, false)
}

// flushLocked writes what is pending on cn until nothing is; called with cn.wmu held and not
// flushing, it returns with cn.wmu released.
func (c *Client) flushLocked(cn *conn, yield bool) {
	cn.flushing = true
	if yield {
		cn.wmu.Unlock()
		// Let goroutines that are ready to send (typically woken together by a burst of
		// answers) add their frames first, so that one write carries them all. With nothing
		// else to run this returns at once.
		runtime.Gosched()
		cn.wmu.Lock()
	}
	for len(cn.pending) > 0 && !cn.broken {
		buf := cn.pending
		cn.pending, cn.spare = cn.spare[:0], nil
		cn.wmu.Unlock()
		_ = cn.nc.SetWriteDeadline(time.Now().Add(c.cfg.AttemptTimeout))
		_, err := cn.nc.Write(buf)
		c.mu.Lock()
		if cn.awaitSince.IsZero() {
			cn.awaitSince = time.Now()
		}
		c.mu.Unlock()
		cn.wmu.Lock()
		if cap(buf) <= maxSpareBytes {
			cn.spare = buf[:0]
		}
		if err != nil {
			cn.broken = true
			cn.pending = nil
			_ = cn.nc.Close()
		}
	}
	cn.flushing = false
	cn.wmu.Unlock()
}

// maxSpareBytes bounds the write buffer a connection keeps between writes.
const maxSpareBytes = 1 << 20

// ---- connection management ----

func (c *Client) backoff(attempt int) time.Duration {
	d := min(c.cfg.BackoffMin<<min(attempt, 16), c.cfg.BackoffMax)
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// run keeps the session attached to the leader for as long as the client lives.
func (c *Client) run() {
	defer c.wg.Done()
	next := 0
	attempt := 0
	hops := 0
	for {
		select {
		case <-c.closed:
			return
		default:
		}
		c.mu.Lock()
		endpoint := c.leader
		c.leader = ""
		c.mu.Unlock()
		if endpoint == "" || hops > c.cfg.MaxRedirects {
			endpoint = c.cfg.Endpoints[next%len(c.cfg.Endpoints)]
			next++
			hops = 0
		}
		redirected, err := c.session1(endpoint)
		if c.finished() {
			return
		}
		if redirected {
			hops++
			if hops <= c.cfg.MaxRedirects {
				continue // follow the hint at once
			}
		}
		if err != nil {
			c.log.Debug("tandem client: attempt failed", "endpoint", endpoint, "err", err)
		}
		select {
		case <-c.closed:
			return
		case <-time.After(c.backoff(attempt)):
		}
		attempt++
		if err == nil {
			attempt = 0
		}
	}
}

func (c *Client) finished() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil
}

// session1 connects to one member, attaches and serves the session until the connection ends.
// It reports whether it ended because of a redirect.
func (c *Client) session1(endpoint string) (redirected bool, err error) {
	d := net.Dialer{Timeout: c.cfg.AttemptTimeout}
	nc, err := d.Dial("tcp", endpoint)
	c.mu.Lock()
	c.reach[endpoint] = err == nil
	c.mu.Unlock()
	if err != nil {
		return false, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	cn := &conn{nc: nc, endpoint: endpoint, lastHeard: time.Now()}
	defer nc.Close()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.watch(cn, done) }()
	defer func() { close(done); wg.Wait() }()

	c.mu.Lock()
	kind := wire.CAttach
	if !c.opened {
		kind = wire.COpen
	}
	c.mu.Unlock()
	c.write(cn, &wire.ClientMsg{Kind: kind, Session: c.session})
	// Queries need no session: send them now.
	c.mu.Lock()
	qs := make([]*query, 0, len(c.queries))
	for _, q := range c.queries {
		qs = append(qs, q)
	}
	c.mu.Unlock()
	for _, q := range qs {
		c.write(cn, &wire.ClientMsg{Kind: wire.CQuery, RequestID: q.id, Payload: q.payload})
	}
	redirected, err = c.read(cn)
	if err != nil {
		c.mu.Lock()
		c.reach[endpoint] = false // it stopped answering: do not count it until it does again
		c.mu.Unlock()
	}
	return redirected, err
}

// watch closes a connection that stays silent while the client waits for an answer (a paused
// or half-open member), and sends keep-alives while idle.
func (c *Client) watch(cn *conn, done chan struct{}) {
	t := time.NewTicker(c.cfg.AttemptTimeout / 8)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-c.closed:
			_ = cn.nc.Close()
			return
		case <-t.C:
		}
		c.mu.Lock()
		attachedHere := c.conn == cn
		waiting := !attachedHere || c.calls.n > 0 || len(c.queries) > 0
		silent := time.Since(cn.lastHeard)
		idle := time.Since(time.Unix(0, cn.sessionSent.Load()))
		unanswered := !cn.awaitSince.IsZero() && time.Since(cn.awaitSince) > c.cfg.AttemptTimeout
		c.mu.Unlock()
		if unanswered || (waiting && silent > c.cfg.AttemptTimeout) {
			_ = cn.nc.Close()
			return
		}
		if attachedHere && idle > c.cfg.KeepAliveInterval {
			c.write(cn, &wire.ClientMsg{Kind: wire.CKeepAlive, Session: c.session})
		}
	}
}

func (c *Client) read(cn *conn) (redirected bool, err error) {
	r := bufio.NewReaderSize(cn.nc, 64<<10)
	var buf []byte
	defer func() {
		c.mu.Lock()
		if c.conn == cn {
			c.conn = nil
		}
		c.mu.Unlock()
	}()
	held := false
	defer func() {
		if held {
			c.releaseWrites(cn)
		}
	}()
	for {
		if held && !wire.FrameBuffered(r) {
			// The burst of answers is handled: send what their callbacks queued, in one write.
			c.releaseWrites(cn)
			held = false
		}
		// Frames already buffered arrived with the one read before them: the clock is read once
		// per read from the network, not once per answer (a clock read costs ~60 ns on the
		// project's virtual machines, about as much as decoding the answer).
		waited := !wire.FrameBuffered(r)
		kind, body, nb, err := wire.ReadFrame(r, 4<<20, buf)
		buf = nb
		if err != nil {
			return false, err
		}
		if kind != wire.FrameClient {
			return false, fmt.Errorf("unexpected frame kind %d from %s", kind, cn.endpoint)
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			return false, fmt.Errorf("bad message from %s: %w", cn.endpoint, err)
		}
		if !held && (m.Kind == wire.CResponse || m.Kind == wire.CQueryResponse) {
			c.holdWrites(cn)
			held = true
		}
		m.Payload = slices.Clone(m.Payload)
		if waited {
			c.mu.Lock()
			cn.lastHeard = time.Now()
			cn.awaitSince = time.Time{} // (what is written during a burst waits for a later read)
			c.mu.Unlock()
		}
		switch m.Kind {
		case wire.CAttached:
			c.attached(cn)
		case wire.CResponse:
			c.response(&m)
		case wire.CQueryResponse:
			c.queryResponse(&m)
		case wire.CRedirect:
			c.mu.Lock()
			if m.Term >= c.term && m.Endpoint != "" {
				c.term = m.Term
				c.leader = m.Endpoint
			}
			c.mu.Unlock()
			return true, nil
		case wire.CSessionEvent:
			if m.Status == wire.StatusSessionExpired || m.Reason != 0 {
				c.expire()
				return false, ErrSessionExpired
			}
		case wire.CKeepAliveAck:
			if m.Status == wire.StatusSessionExpired {
				c.expire()
				return false, ErrSessionExpired
			}
		case wire.CPush:
			// Unsolicited pushes are not surfaced yet; see the package documentation.
		}
	}
}

// attached makes cn the session's connection and resends every unanswered command, in order,
// under its original number.
func (c *Client) attached(cn *conn) {
	c.mu.Lock()
	c.opened = true
	c.conn = cn
	low := c.lowestUnackedLocked()
	flush := false
	c.calls.each(func(cl *call) {
		cl.sent = true
		flush = c.queue(cn, &wire.ClientMsg{Kind: wire.CCommand, Session: c.session, Seq: cl.seq, LowestUnacked: low, Payload: cl.payload}) || flush
	})
	c.mu.Unlock()
	if flush {
		c.flush(cn)
	}
}

// finish completes a command or query: a waiting Send/Query gets r on its channel; an
// asynchronous one's callback is queued and run by unlock. c.mu held.
func (c *Client) finish(done chan result, cb func([]byte, error), r result) {
	if cb != nil {
		c.cbs = append(c.cbs, callback{f: cb, r: r})
		return
	}
	done <- r
}

// unlock releases c.mu, then runs the callbacks completed while it was held (they may call the
// client again).
func (c *Client) unlock() {
	if len(c.cbs) == 0 {
		c.mu.Unlock()
		return
	}
	cbs := c.cbs
	c.cbs = nil
	c.mu.Unlock()
	for _, cb := range cbs {
		cb.f(cb.r.reply, cb.r.err)
	}
}

func (c *Client) response(m *wire.ClientMsg) {
	c.mu.Lock()
	defer c.unlock()
	cl, ok := c.calls.get(m.Seq)
	if !ok {
		return
	}
	switch m.Status {
	case wire.StatusOK:
		c.finish(cl.done, cl.cb, result{reply: m.Payload})
	case wire.StatusSessionExpired:
		c.expireLocked()
		return
	case wire.StatusUnavailable, wire.StatusNotLeader:
		return // not applied; resent after the next attach
	case wire.StatusEvicted:
		c.finish(cl.done, cl.cb, result{err: fmt.Errorf("%w: the answer was already acknowledged and evicted", ErrOutcomeUnknown)})
	default:
		c.finish(cl.done, cl.cb, result{err: fmt.Errorf("%w: %s", ErrNotApplied, strings.TrimSpace(string(m.Payload)))})
	}
	c.forget(m.Seq)
	c.cond.Broadcast()
}

func (c *Client) queryResponse(m *wire.ClientMsg) {
	c.mu.Lock()
	defer c.unlock()
	q, ok := c.queries[m.RequestID]
	if !ok {
		return
	}
	switch m.Status {
	case wire.StatusOK:
		c.finish(q.done, q.cb, result{reply: m.Payload})
	case wire.StatusUnavailable, wire.StatusNotLeader:
		return // retried on the next connection
	default:
		c.finish(q.done, q.cb, result{err: fmt.Errorf("%w: %s", ErrNotApplied, m.Payload)})
	}
	delete(c.queries, m.RequestID)
}

// expire ends the client: the cluster no longer knows the session.
func (c *Client) expire() {
	c.mu.Lock()
	defer c.unlock()
	c.expireLocked()
}

func (c *Client) expireLocked() {
	if c.err == nil {
		c.err = ErrSessionExpired
	}
	c.failAll(ErrSessionExpired)
}
