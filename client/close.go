package client

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
