package client

import (
	"context"
	"fmt"
)

// Close closes the session on the cluster and ends the client: CloseContext bounded by
// Config.CloseTimeout.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.CloseTimeout)
	defer cancel()
	return c.CloseContext(ctx)
}

// CloseContext closes the session on the cluster and ends the client. At once, unanswered
// commands fail — with ErrOutcomeUnknown if an attempt may have been applied, ErrNotApplied if
// none was (never sent, or refused each time), both wrapping ErrClosed — and so do unanswered
// queries; every later call returns ErrClosed. Then the client asks the leader to close the
// session (following failovers as for commands) and waits until the cluster confirms, or ctx
// ends. The service sees OnSessionClose with service.CloseClient. A command given up on here may
// still be applied before the close, as its error says.
//
// It returns nil once the cluster confirmed that the session is closed (or found it expired, or
// the session had ended already). If ctx ends first, the client ends all the same and the error
// says so: the session stays open on the cluster until it expires after the session timeout;
// the error wraps ctx's as a call's would (ErrTimeout and context.DeadlineExceeded past a
// deadline, context.Canceled when cancelled). A ctx already done ends the client without
// waiting: the close is only written if the session is attached.
//
// CloseContext and Close may be called more than once, from any goroutine but one running a
// SendAsync, QueryAsync or OnPush callback (they wait for the client's goroutines, which run
// those): the first call does the work, later ones wait for it and return its result.
func (c *Client) CloseContext(ctx context.Context) error {
	c.closeOnce.Do(func() { c.closeErr = c.shutdown(ctx) })
	return c.closeErr
}

// shutdown closes the session on the cluster, waiting for the cluster's word until ctx ends, then
// stops the client's goroutines.
func (c *Client) shutdown(ctx context.Context) error {
	c.mu.Lock()
	var confirmed chan struct{}
	if c.core.CloseSession(c.clock(), ErrClosed) {
		confirmed = make(chan struct{})
		c.closeWait = confirmed
	}
	c.unlock()
	var err error
	if confirmed != nil {
		select {
		case <-confirmed:
		case <-ctx.Done():
		}
		c.mu.Lock()
		if !c.core.Closed() {
			err = fmt.Errorf("tandem: the session was not closed on the cluster (%s); it expires there after the session timeout: %w", c.core.Waiting(), ctxErr(ctx))
			c.core.Close(ErrClosed) // stop asking
		}
		c.unlock()
	}
	close(c.closed)
	c.wg.Wait()
	return err
}
