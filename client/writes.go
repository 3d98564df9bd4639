package client

import (
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/tandem-cluster/tandem/internal/clientcore"
	"github.com/tandem-cluster/tandem/internal/tlsconf"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// conn is one connection to a member: its socket and the frames queued to be written on it.
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
	cn.pending = wire.AppendClientFrame(cn.pending, m, m.Version) // (the core sets the connection's)
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
			tlsconf.CloseSocket(cn.nc)
		}
	}
	cn.flushing = false
	cn.wmu.Unlock()
}

// maxSpareBytes bounds the write buffer a connection keeps between writes.
const maxSpareBytes = 1 << 20
