package client

import (
	"context"
	"fmt"
	"slices"
)

type result struct {
	reply []byte
	err   error
}

// callback is an asynchronous completion waiting to be run once c.mu is released.
type callback struct {
	f func([]byte, error)
	r result
}

// Send sends a command through the log and returns the service's reply. It is applied exactly
// once: across failovers the client resends it under the same number and the cluster answers a
// resend from its record; a command the cluster answered "unavailable" is resent after a
// backoff. While MaxInFlight commands are in flight it waits for room. If ctx ends first, the
// error wraps ctx's (ErrTimeout and context.DeadlineExceeded past a deadline, context.Canceled
// when cancelled) and ErrOutcomeUnknown, or ErrNotApplied if the command was never sent or the
// cluster refused every attempt.
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
// needs no session and is retried on another member freely (it changes nothing). If ctx ends
// first, the error wraps ctx's, as for Send.
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
