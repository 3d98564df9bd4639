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
	"sync"
	"time"

	"github.com/tandem-cluster/tandem/internal/clientcore"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// Errors callers branch on with errors.Is.
var (
	// ErrSessionExpired: the cluster closed this client's session (it was idle past the session
	// timeout, or the service closed it). The client is finished; Dial a new one.
	ErrSessionExpired = clientcore.ErrSessionExpired
	// ErrSessionRefused: the cluster refused to open the session: its session limit or its
	// response byte budget is reached. Dial returns it at once, with the cluster's reason
	// (nothing was applied, and the client does not retry: try later, or raise the limit).
	ErrSessionRefused = clientcore.ErrSessionRefused
	// ErrOutcomeUnknown: the command may or may not have been applied (the caller gave up
	// waiting, or the session ended with the command unanswered, after it was sent). It is
	// never resent.
	ErrOutcomeUnknown = clientcore.ErrOutcomeUnknown
	// ErrNotApplied: the command was not applied: it was never sent, or the cluster refused it
	// (a limit was hit, a malformed request; or it said "unavailable" to every attempt until the
	// caller gave up). The error carries the cluster's reason. Safe to retry.
	ErrNotApplied = clientcore.ErrNotApplied
	// ErrTooLarge is wrapped, with ErrNotApplied, in the error for a command or query larger
	// than the cluster accepts: the member announces its limit when the session attaches, and
	// the client refuses a larger payload before sending it. The message names the limit.
	ErrTooLarge = clientcore.ErrTooLarge
	// ErrClosed: the client was closed.
	ErrClosed = clientcore.ErrClosed
	// ErrNoLeader (the client's "not leader" error: it follows redirects itself) is returned by
	// Dial when its context ends before any member answered as the leader; the error says what
	// the client could reach.
	ErrNoLeader = errors.New("tandem: no leader reachable")
	// ErrTimeout is wrapped (with context.DeadlineExceeded or context.Canceled) in every error
	// returned because the caller's context ended, or Config.AsyncTimeout passed:
	// errors.Is(err, ErrTimeout).
	ErrTimeout = clientcore.ErrTimeout
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
	// (a paused process) is abandoned after it. Default 2 s (about an election timeout). The
	// client's timers run every AttemptTimeout/8 (or BackoffMax if shorter): that is their
	// resolution.
	AttemptTimeout time.Duration
	// KeepAliveInterval: a client that has sent no command for this long sends a keep-alive
	// (default 2 s; the default session timeout is 10 s). Queries do not name the session, so
	// a client that only queries keeps its session alive with keep-alives.
	KeepAliveInterval time.Duration
	// BackoffMin/Max bound the reconnect backoff, with jitter (default 20 ms and 250 ms: an
	// election takes about 1 s, and a client should notice the new leader soon after). A
	// command or query the cluster answered "unavailable" (no quorum yet, an overloaded
	// leader) is resent after the same backoff.
	BackoffMin, BackoffMax time.Duration
	// MaxRedirects caps consecutive redirect hops before backing off (default 8).
	MaxRedirects int
	// MaxInFlight bounds the commands in flight on the session, counted as the cluster counts
	// its response window: the numbers from the lowest unanswered command to the newest, gaps
	// included (commands answered out of order still count until the ones before them are).
	// Send blocks beyond it, SendAsync refuses. The cluster announces its window when the
	// session attaches, and a smaller window lowers it. Default 512.
	MaxInFlight int
	// AsyncTimeout bounds how long a SendAsync or QueryAsync call waits for its answer (to
	// within a tick of the timers, see AttemptTimeout): then its callback gets an error wrapping
	// ErrTimeout and context.DeadlineExceeded — for a command, with ErrNotApplied if it was never
	// sent or the cluster refused every attempt, with ErrOutcomeUnknown otherwise. The command is
	// not sent again, and no longer holds a place in MaxInFlight. Default 30 s; negative: no
	// bound (the callback waits for an answer, the end of the session or Close). Send and Query
	// are bounded by their context instead.
	AsyncTimeout time.Duration
	Logger       *slog.Logger
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
	if c.AsyncTimeout == 0 {
		c.AsyncTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// tick is the interval of the client's timers: their resolution. A silent member is noticed
// within an eighth of AttemptTimeout late, a refused command is resent within BackoffMax of its
// backoff.
func (c *Config) tick() time.Duration {
	return max(min(c.AttemptTimeout/8, c.BackoffMax), time.Millisecond)
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("Endpoints is empty"))
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"AttemptTimeout", c.AttemptTimeout}, {"KeepAliveInterval", c.KeepAliveInterval}, {"BackoffMin", c.BackoffMin}, {"BackoffMax", c.BackoffMax}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s (%s) must not be negative", f.name, f.d))
		}
	}
	if c.BackoffMax < c.BackoffMin {
		errs = append(errs, fmt.Errorf("BackoffMax (%s) must not be below BackoffMin (%s)", c.BackoffMax, c.BackoffMin))
	}
	if c.MaxRedirects < 0 {
		errs = append(errs, fmt.Errorf("MaxRedirects (%d) must not be negative", c.MaxRedirects))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("MaxInFlight (%d) must not be negative", c.MaxInFlight))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tandem: invalid client configuration: %w", err)
	}
	return nil
}

type result struct {
	reply []byte
	err   error
}

// callback is an asynchronous completion waiting to be run once c.mu is released.
type callback struct {
	f func([]byte, error)
	r result
}

// Client is a session with a Tandem cluster. It is safe for concurrent use: many goroutines may
// Send and Query at once; their commands are pipelined on the one session and answered by
// number.
//
// The protocol (numbering, failover, retries, completions) is internal/clientcore's state
// machine, which the simulator drives too; the Client is its driver: the lock, the goroutines
// (one dials and reads, one runs the timers), the socket and the coalescing of writes.
type Client struct {
	cfg  Config
	log  *slog.Logger
	base time.Time // the origin of the core's clock (a monotonic reading)

	mu   sync.Mutex
	cond *sync.Cond // signalled when in-flight room frees up or the client ends
	core *clientcore.Core
	// now is the core's clock (nanoseconds since base), read once per read from the network
	// and per tick, not per command: a clock read costs about as much as the rest of queueing a
	// command. Commands submitted meanwhile are stamped with it.
	now int64
	cur *conn // the connection the core uses, nil while there is none
	// dial is the core's latest Dial not yet taken by run; dialing/dialCancel the one under way.
	dial       *dialRequest
	dialing    clientcore.ConnID
	dialCancel context.CancelFunc
	// What the core's outputs leave for unlock: a connection with frames to flush, whether a
	// completion freed room (wake Send), and the callbacks of SendAsync/QueryAsync to run.
	flushConn *conn
	freed     bool
	cbs       []callback

	dialWake  chan struct{} // 1-buffered: run has a dial to look at
	closed    chan struct{} // closed by Close (once: closeOnce), which ends run and timers
	closeOnce sync.Once
	wg        sync.WaitGroup
}

type dialRequest struct {
	id       clientcore.ConnID
	endpoint string
	after    time.Duration
}

type conn struct {
	id       clientcore.ConnID
	nc       net.Conn
	endpoint string
	// Outgoing frames are combined: a writer appends its frame to pending and, unless another
	// goroutine is already writing, becomes the one that writes pending until it is empty. A
	// single command costs one write and no hand-off; under load one write carries many frames.
	wmu      sync.Mutex
	pending  []byte
	spare    []byte
	flushing bool
	held     int  // holders (the reader in a burst of answers, Batch callers): see holdWrites
	broken   bool // a write failed: the connection is closed, frames are dropped (resent on reattach)
}

// Dial opens a session with the cluster and returns once the session is open, or when ctx ends.
// The client keeps the session open (keep-alives) and follows the leader until Close. If the
// cluster refuses the session (its session limit), Dial returns ErrSessionRefused at once.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger,
		base:     time.Now(),
		dialWake: make(chan struct{}, 1),
		closed:   make(chan struct{}),
	}
	c.cond = sync.NewCond(&c.mu)
	var session wire.SessionID
	if _, err := rand.Read(session[:]); err != nil {
		return nil, err
	}
	c.core = clientcore.New(clientcore.Config{
		Endpoints:         cfg.Endpoints,
		AttemptTimeout:    cfg.AttemptTimeout,
		KeepAliveInterval: cfg.KeepAliveInterval,
		BackoffMin:        cfg.BackoffMin,
		BackoffMax:        cfg.BackoffMax,
		MaxRedirects:      cfg.MaxRedirects,
		MaxInFlight:       cfg.MaxInFlight,
		Jitter:            mrand.Int64N,
	}, session, (*output)(c))
	c.wg.Add(2)
	go c.run()
	go c.timers()
	c.mu.Lock()
	c.core.Start(c.clock())
	c.unlock()
	// Wait for the first attach.
	for {
		c.mu.Lock()
		opened, err := c.core.Opened(), c.core.Err()
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
func (c *Client) SessionID() string {
	id := c.core.Session()
	return fmt.Sprintf("%x", id[:])
}

// Waiting describes what the client waits for while it has no leader, e.g.
// "reachable 1 of 3, need 2"; "" while attached.
func (c *Client) Waiting() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.core.Waiting()
}

// Close ends the client. Unanswered commands fail: with ErrOutcomeUnknown if an attempt may have
// been applied, ErrNotApplied if none was (never sent, or refused each time; both wrapping
// ErrClosed). The session is not closed on the cluster: it expires there after the session
// timeout. Close may be called more than once, from any goroutine but one running a SendAsync or
// QueryAsync callback (it waits for the client's goroutines, which run those).
func (c *Client) Close() error {
	c.mu.Lock()
	c.core.Close(ErrClosed)
	c.unlock()
	c.closeOnce.Do(func() { close(c.closed) })
	c.wg.Wait()
	return nil
}

// clock reads the clock into c.now; c.mu held.
func (c *Client) clock() int64 {
	c.now = max(c.now, int64(time.Since(c.base)))
	return c.now
}

// Send sends a command through the log and returns the service's reply. It is applied exactly
// once: across failovers the client resends it under the same number and the cluster answers a
// resend from its record; a command the cluster answered "unavailable" is resent after a
// backoff. If ctx ends first, the error wraps ctx.Err() and ErrOutcomeUnknown, or ErrNotApplied
// if the command was never sent or the cluster refused every attempt.
func (c *Client) Send(ctx context.Context, payload []byte) ([]byte, error) {
	c.mu.Lock()
	if err := c.core.Check("command", len(payload)); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	for c.core.Err() == nil && !c.core.Room() {
		if ctx.Err() != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: %w", ErrNotApplied, ctxErr(ctx))
		}
		c.waitCond(ctx)
	}
	done := make(chan result, 1)
	seq, err := c.core.Submit(c.now, slices.Clone(payload), done, 0)
	c.unlock()
	if err != nil {
		return nil, err
	}
	return c.await(ctx, done, func(cause error) { c.core.Cancel(c.now, seq, cause) })
}

// await returns the outcome sent on done, or, if ctx ends first, gives up on the call with
// giveUp (c.mu held), which completes it unless it was answered meanwhile, and returns that.
func (c *Client) await(ctx context.Context, done chan result, giveUp func(cause error)) ([]byte, error) {
	select {
	case r := <-done:
		return r.reply, r.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	giveUp(ctxErr(ctx))
	c.unlock()
	r := <-done
	return r.reply, r.err
}

// asyncDeadline is the deadline of an asynchronous call submitted now (0: none); c.mu held.
func (c *Client) asyncDeadline() int64 {
	if c.cfg.AsyncTimeout > 0 {
		return c.now + int64(c.cfg.AsyncTimeout)
	}
	return 0
}

// ErrInFlightFull is returned (wrapped in ErrNotApplied) by SendAsync when MaxInFlight commands
// are already in flight (see Config.MaxInFlight).
var ErrInFlightFull = clientcore.ErrInFlightFull

// SendAsync sends a command through the log like Send, without waiting: done is called exactly
// once with the service's reply or an error (as for Send; ErrClosed and ErrSessionExpired wrapped
// as for Send when the client ends first), within Config.AsyncTimeout, unless SendAsync itself
// returns an error, in which case the command was not sent and done is never called. It never
// blocks: with MaxInFlight commands outstanding it returns an error wrapping ErrNotApplied and
// ErrInFlightFull.
//
// done runs on one of the client's goroutines — the one reading answers, or the one running its
// timers when Config.AsyncTimeout passes — or, when the client ends, on the goroutine that ended
// it; always after the client's lock is released: it may call SendAsync again, which is how a
// caller keeps a window of commands in flight without a goroutine each. It must not block for
// long (answers to the session wait while it runs) nor call Close. Completions arrive in the
// order the cluster answers, which is the order the commands were sent, except around a
// failover (resent commands are answered from the record of the new leader), when a bound
// passes or when the session ends.
func (c *Client) SendAsync(payload []byte, done func(reply []byte, err error)) error {
	c.mu.Lock()
	_, err := c.core.Submit(c.now, slices.Clone(payload), done, c.asyncDeadline())
	c.unlock()
	return err
}

// Batch runs fn and writes the commands and queries that fn starts with SendAsync and QueryAsync
// together once it returns: one write instead of one per command, which is most of a command's
// cost on the client when a goroutine starts several at once (a burst of due work, a replay).
// fn must not wait for answers (no Send or Query inside it, and no waiting on a callback): they
// are not written before fn returns. If the connection changes during fn, what was started on
// the new one goes out at once.
func (c *Client) Batch(fn func()) {
	c.mu.Lock()
	cn := c.cur
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
// reply or an error, within Config.AsyncTimeout, unless QueryAsync returns an error (the client
// is finished, or the query is too large). done runs as for SendAsync.
func (c *Client) QueryAsync(payload []byte, done func(reply []byte, err error)) error {
	c.mu.Lock()
	_, err := c.core.Query(c.now, slices.Clone(payload), done, c.asyncDeadline())
	c.unlock()
	return err
}

// Query runs a read-only request linearizably: the leader confirms its leadership (ReadIndex)
// and the service's OnQuery answers once everything committed before the query is applied. It
// needs no session and is retried on another member freely (it changes nothing).
func (c *Client) Query(ctx context.Context, payload []byte) ([]byte, error) {
	c.mu.Lock()
	done := make(chan result, 1)
	id, err := c.core.Query(c.now, slices.Clone(payload), done, 0)
	c.unlock()
	if err != nil {
		return nil, err
	}
	return c.await(ctx, done, func(cause error) { c.core.CancelQuery(c.now, id, cause) })
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

// unlock releases c.mu after a call into the core, then does what the core's outputs left to
// do without the lock: flush the frames it queued, and run the callbacks it completed (they may
// call the client again).
func (c *Client) unlock() {
	cn := c.flushConn
	c.flushConn = nil
	if c.freed {
		c.freed = false
		c.cond.Broadcast()
	}
	cbs := c.cbs
	c.cbs = nil
	c.mu.Unlock()
	if cn != nil {
		c.flush(cn)
	}
	for _, cb := range cbs {
		cb.f(cb.r.reply, cb.r.err)
	}
}

// ---- the core's outputs (called with c.mu held) ----

// output is the Client as the core's clientcore.Output (kept off the Client's exported methods).
type output Client

func (o *output) Dial(id clientcore.ConnID, endpoint string, after time.Duration) {
	c := (*Client)(o)
	c.dial = &dialRequest{id: id, endpoint: endpoint, after: after}
	select {
	case c.dialWake <- struct{}{}:
	default:
	}
}

func (o *output) Write(id clientcore.ConnID, m *wire.ClientMsg) {
	c := (*Client)(o)
	if cn := c.cur; cn != nil && cn.id == id && c.queue(cn, m) {
		c.flushConn = cn
	}
}

func (o *output) Hangup(id clientcore.ConnID) {
	c := (*Client)(o)
	if c.dial != nil && c.dial.id == id {
		c.dial = nil
	}
	if c.dialing == id && c.dialCancel != nil {
		c.dialCancel()
	}
	if cn := c.cur; cn != nil && cn.id == id {
		c.cur = nil
		_ = cn.nc.Close() // the reader ends
	}
}

func (o *output) Complete(ref any, reply []byte, err error) {
	c := (*Client)(o)
	r := result{reply: reply, err: err}
	switch ref := ref.(type) {
	case func([]byte, error):
		c.cbs = append(c.cbs, callback{f: ref, r: r})
	case chan result:
		ref <- r // buffered: the waiting Send or Query takes it
	}
	c.freed = true
}

// ---- writing ----

// queue appends m to what cn has to write, and reports whether the caller must then call
// flush: no flush is under way or held to carry it. The core writes a command in the same
// critical section (c.mu) that numbers it (or, on a new connection, with the resends before
// it), so commands reach the cluster in the order of their numbers: the cluster answers in the
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
// flushing, it returns with cn.wmu released. A failed write closes the connection: the reader
// notices, and the core resends what is unanswered on the next attach.
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

// ---- connections and timers ----

// run makes the connections the core asks for, one at a time, and reads each until it ends.
func (c *Client) run() {
	defer c.wg.Done()
	for {
		select {
		case <-c.closed:
			return
		case <-c.dialWake:
		}
		c.mu.Lock()
		req := c.dial
		c.dial = nil
		if req == nil {
			c.mu.Unlock()
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		c.dialing, c.dialCancel = req.id, cancel
		c.mu.Unlock()
		nc, err := c.connect(ctx, req)
		c.mu.Lock()
		c.dialing, c.dialCancel = 0, nil
		cancel()
		if err != nil {
			c.log.Debug("tandem client: connecting failed", "endpoint", req.endpoint, "err", err)
			c.core.Failed(req.id, c.clock())
			c.unlock()
			continue
		}
		cn := &conn{id: req.id, nc: nc, endpoint: req.endpoint}
		c.cur = cn
		c.core.Connected(req.id, c.clock())
		ok := c.cur == cn // (the core may have given up on it meanwhile: then it is closed)
		c.unlock()
		if !ok {
			continue
		}
		err = c.read(cn)
		c.log.Debug("tandem client: connection ended", "endpoint", req.endpoint, "err", err)
		_ = nc.Close()
		c.mu.Lock()
		if c.cur == cn {
			c.cur = nil
		}
		c.core.Failed(cn.id, c.clock()) // (ignored if the core hung up itself)
		c.unlock()
	}
}

// connect waits req.after, then connects; ctx is cancelled if the core gives up on it first.
func (c *Client) connect(ctx context.Context, req *dialRequest) (net.Conn, error) {
	if req.after > 0 {
		t := time.NewTimer(req.after)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-c.closed:
			t.Stop()
			return nil, ErrClosed
		}
	}
	d := net.Dialer{Timeout: c.cfg.AttemptTimeout}
	nc, err := d.DialContext(ctx, "tcp", req.endpoint)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return nc, nil
}

// timers ticks the core.
func (c *Client) timers() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.tick())
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		c.mu.Lock()
		c.core.Tick(c.clock())
		c.unlock()
	}
}

// answerFrameBytesMax bounds a frame from a member: an answer carries at most
// wire.MaxPayloadBytes of reply; the rest is a generous margin, so a member with other limits
// is not cut off, while a broken or hostile one cannot make the client allocate without bound.
const answerFrameBytesMax = 4 << 20

// read hands what arrives on cn to the core until the connection ends or the core leaves it.
func (c *Client) read(cn *conn) error {
	r := bufio.NewReaderSize(cn.nc, 64<<10)
	var buf []byte
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
		kind, body, nb, err := wire.ReadFrame(r, answerFrameBytesMax, buf)
		buf = nb
		if err != nil {
			return err
		}
		if kind != wire.FrameClient {
			return fmt.Errorf("unexpected frame kind %d from %s", kind, cn.endpoint)
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			return fmt.Errorf("bad message from %s: %w", cn.endpoint, err)
		}
		if !held && (m.Kind == wire.CResponse || m.Kind == wire.CQueryResponse) {
			c.holdWrites(cn)
			held = true
		}
		m.Payload = slices.Clone(m.Payload)
		c.mu.Lock()
		if waited {
			// (What is written during a burst waits for a later read to count as answered.)
			c.core.Heard(cn.id, c.clock())
		}
		c.core.Received(cn.id, &m)
		left := c.cur != cn
		c.unlock()
		if left {
			return nil // the core hung up (a redirect, the session's end)
		}
	}
}
