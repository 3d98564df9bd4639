package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// Config configures a client.
type Config struct {
	// Endpoints are client addresses of cluster members (host:port). Any one reachable member
	// is enough to find the leader; from it, the client learns the current members' addresses
	// (and keeps these as its fallback: see "Failover" in the package documentation).
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
	// Send blocks beyond it, SendAsync refuses. The cluster announces its window each time the
	// session attaches (a new leader may announce another): the limit is the smaller of the two.
	// Default 512.
	MaxInFlight int
	// AsyncTimeout bounds how long a SendAsync or QueryAsync call waits for its answer (to
	// within a tick of the timers, see AttemptTimeout): then its callback gets an error wrapping
	// ErrTimeout and context.DeadlineExceeded — for a command, with ErrNotApplied if it was never
	// sent or the cluster refused every attempt, with ErrOutcomeUnknown otherwise. The command is
	// not sent again, and no longer holds a place in MaxInFlight. Default 30 s; negative: no
	// bound (the callback waits for an answer, the end of the session or Close). Send and Query
	// are bounded by their context instead.
	AsyncTimeout time.Duration
	// CloseTimeout bounds how long Close waits for the cluster to confirm that it closed the
	// session (see CloseContext). Default 2 s: a healthy cluster confirms within a commit; one
	// in the middle of an election may not, and the session then expires on its own.
	CloseTimeout time.Duration
	// OnPush, if set, receives what the service pushes to this session with Session.Offer, in
	// the order the member sent it. It runs as SendAsync's callbacks do: on the goroutine that
	// reads the connection, after the client's lock is released, in order with those callbacks;
	// it may call SendAsync or QueryAsync, and must not block for long (answers wait while it
	// runs), nor wait for an answer (Send, Query), nor call Close. payload is its to keep. It
	// may be called before Dial returns (a push from the service's OnSessionOpen); a push that
	// arrives once Close has begun is dropped.
	//
	// A push is best effort, at most once: it is not part of the log, so only the member the
	// session is attached to (the leader) sends it, and only while the session is attached
	// there; a follower drops it, and nothing is resent after a failover or a reconnect, so a
	// push offered meanwhile is lost. A service that needs a message delivered puts it in a
	// reply, or keeps it in its state for the client to query.
	OnPush func(payload []byte)
	// TLS, if set, connects to the members over TLS with it (the server name is each endpoint's
	// host; set Certificates to authenticate with a client certificate). RootCAs verifies the
	// members' certificates (nil: the system's roots).
	TLS *tls.Config
	// Token, if set, authenticates the client with a token the members' token file lists (sent
	// first on every connection; use TLS too, or the token crosses the network in the clear).
	Token string
	// Logger receives the client's debug records (connections made and lost). Default: none.
	Logger *slog.Logger

	// protocol narrows the client protocol versions the client speaks (zero: this build's,
	// wire.ClientProtocol): for this package's tests of mixed versions only.
	protocol wire.Range
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
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 2 * time.Second
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
	}{{"AttemptTimeout", c.AttemptTimeout}, {"KeepAliveInterval", c.KeepAliveInterval}, {"BackoffMin", c.BackoffMin}, {"BackoffMax", c.BackoffMax}, {"CloseTimeout", c.CloseTimeout}} {
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
	if c.Token != "" && c.protocol.OrDefault(wire.ClientProtocol).Max < 5 {
		errs = append(errs, fmt.Errorf("Token needs client protocol 5 (this client speaks %s)", c.protocol))
	}
	if len(c.Token) > wire.MaxTokenBytes {
		errs = append(errs, fmt.Errorf("Token is %d bytes; at most %d", len(c.Token), wire.MaxTokenBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tandem: invalid client configuration: %w", err)
	}
	return nil
}
