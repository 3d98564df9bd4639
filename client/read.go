package client

import (
	"bufio"
	"fmt"
	"slices"

	"github.com/tandem-cluster/tandem/internal/wire"
)

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
		// per read from the network, not once per answer (a clock read costs about as much as
		// decoding the answer: docs/PERFORMANCE.md).
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
