package client

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/tandem-cluster/tandem/internal/clientcore"
	"github.com/tandem-cluster/tandem/internal/tlsconf"
	"github.com/tandem-cluster/tandem/internal/wire"
)

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
	// completion freed room (wake Send), and the callbacks of SendAsync/QueryAsync and OnPush to
	// run.
	flushConn *conn
	freed     bool
	cbs       []callback
	pushCB    func([]byte, error) // Config.OnPush as a callback (nil: pushes are dropped)

	// closeWait, while Close waits for the cluster to close the session, is closed by unlock
	// once the core no longer waits (the cluster's word, or Close giving up).
	closeWait chan struct{}

	dialWake  chan struct{} // 1-buffered: run has a dial to look at
	closed    chan struct{} // closed by Close (once: closeOnce), which ends run and timers
	closeOnce sync.Once
	closeErr  error // what Close returns, set under closeOnce
	wg        sync.WaitGroup
}

// Dial opens a session with the cluster and returns once the session is open, or when ctx ends.
// The client keeps the session open (keep-alives) and follows the leader until Close. If the
// cluster refuses the session (its session limit), Dial returns ErrSessionRefused at once; if
// every configured member refuses the client's protocol versions, ErrProtocolVersion.
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
	if cfg.OnPush != nil {
		c.pushCB = func(payload []byte, _ error) { cfg.OnPush(payload) }
	}
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
		Protocol:          cfg.protocol,
		Token:             tokenBytes(cfg.Token),
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

// Waiting is the client's view of its way to the cluster: whether its session is attached to
// the leader, and if not, how many members it can reach. Its String is what the client's errors
// quote while it waits, e.g. "reachable 1 of 3, need 2".
type Waiting struct {
	// Attached: the session is attached on a connection to the leader; commands flow.
	Attached bool
	// Leader is the client address of the member last known as the leader: the one attached to,
	// or the one the newest redirect named; "" before either. While not attached it may be out of
	// date.
	Leader string
	// Reachable counts the members (see Members) that accepted a connection on their latest
	// attempt (a member that accepts but never answers counts as unreachable once abandoned).
	Reachable int
	// Members is the number of voters the client learned from the cluster (see Endpoints), or,
	// before it learned them, the number of configured endpoints (Config.Endpoints).
	Members int
	// Need is a majority of Members: how many must be up for the cluster to elect a leader
	// (before the client learned the voters: if Config.Endpoints lists every member).
	Need int
}

// String says what the client waits for, e.g. "reachable 1 of 3, need 2", or "attached to
// host:port" while attached.
func (w Waiting) String() string { return clientcore.Waiting(w).String() }

// Waiting says what the client waits for: while it has no leader, how many members it can reach
// and how many it needs.
func (c *Client) Waiting() Waiting {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Waiting(c.core.Waiting())
}

// Endpoints returns the addresses the client tries, in turn, when it looks for the leader: the
// members' client addresses it learned from the cluster (voters, then learners), then the
// configured endpoints the cluster did not list. See "Failover" in the package documentation.
func (c *Client) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.core.Endpoints()
}

// clock reads the clock into c.now; c.mu held.
func (c *Client) clock() int64 {
	c.now = max(c.now, int64(time.Since(c.base)))
	return c.now
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
	if c.closeWait != nil && !c.core.Closing() {
		close(c.closeWait)
		c.closeWait = nil
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

func tokenBytes(t string) []byte {
	if t == "" {
		return nil
	}
	return []byte(t)
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
		tlsconf.CloseSocket(cn.nc) // the reader ends
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

func (o *output) Push(payload []byte) {
	c := (*Client)(o)
	if c.pushCB != nil {
		c.cbs = append(c.cbs, callback{f: c.pushCB, r: result{reply: payload}})
	}
}
