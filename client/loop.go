package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/tandem-cluster/tandem/internal/clientcore"
	"github.com/tandem-cluster/tandem/internal/tlsconf"
)

// dialRequest is a Dial of the core that run has yet to carry out.
type dialRequest struct {
	id       clientcore.ConnID
	endpoint string
	after    time.Duration
}

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
			if why := tlsconf.Untrusted(err); why != "" {
				c.core.Untrusted(req.id, fmt.Sprintf("%s: %s", req.endpoint, why))
			} else if why := tlsconf.Refusal(err); why != "" {
				c.core.Unauthenticated(req.id, fmt.Sprintf("%s: %s", req.endpoint, why))
			} else {
				c.core.Failed(req.id, c.clock())
			}
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
		tlsconf.CloseSocket(nc)
		c.mu.Lock()
		if c.cur == cn {
			c.cur = nil
		}
		if why := tlsconf.Refusal(err); why != "" {
			c.core.Unauthenticated(cn.id, fmt.Sprintf("%s: %s", req.endpoint, why))
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
	if c.cfg.TLS != nil {
		td := tls.Dialer{NetDialer: &d, Config: c.cfg.TLS} // (the server name comes from the endpoint)
		nc, err := td.DialContext(ctx, "tcp", req.endpoint)
		if err != nil {
			return nil, err
		}
		if tc, ok := nc.(*tls.Conn).NetConn().(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		return nc, nil
	}
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
