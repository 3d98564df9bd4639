package transport

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// outq is the outbound byte queue of one connection, written through. The member's loop appends
// frames and calls flush; when no write is under way, flush hands the bytes to the socket at
// once with one non-blocking write system call, on the loop's own goroutine. Only what the socket
// does not take — because the receiver is slow, or a write is already under way — is left to the
// connection's writer goroutine, which writes it blocking, under a deadline.
//
// Why: a hand-off to a writer goroutine costs a thread wake-up, and on the 2-core virtual machines
// this project measures on that was the largest single delay of a command, several times the
// loopback hop itself (docs/PERFORMANCE.md, "Where a command's time goes"). The loop still never
// blocks on a socket.
//
// Appending and flush are for one goroutine only (the member's loop); drain is for the writer.
// Invariant: bytes reach the socket in the order they were appended, because only the holder
// of writing writes, and always from the head of buf.
type outq struct {
	mu      sync.Mutex
	buf     []byte // appended, not yet written
	spare   []byte // a drained buffer, reused for the next appends
	writing bool   // a write (the loop's attempt or the writer's) is under way
	// raw is the connection's descriptor for non-blocking writes (nil: while there is no
	// connection, or it offers none; the writer then writes everything).
	raw syscall.RawConn
	// gen counts attach/reset: a direct write that straddles one must not put its
	// remainder back (it belongs to a connection that is gone).
	gen  uint64
	wake chan struct{} // 1-buffered: the writer has something to look at
	// sent, if set, counts the bytes written to the connection (a peer's sent bytes, stats.go):
	// one atomic add per write, on whichever goroutine wrote.
	sent *atomic.Int64
}

func newOutq() *outq { return &outq{wake: make(chan struct{}, 1)} }

// appendFrames appends with fn under the lock and returns the queued length after it.
func (q *outq) appendFrames(fn func([]byte) []byte) int {
	q.mu.Lock()
	q.buf = fn(q.buf)
	n := len(q.buf)
	q.mu.Unlock()
	return n
}

// flush writes what is queued, if no write is under way: as much as the socket takes without
// blocking; the writer goroutine is woken for the rest. It returns how many bytes it wrote.
// Loop only.
func (q *outq) flush() (written int) {
	q.mu.Lock()
	if q.writing || len(q.buf) == 0 {
		q.mu.Unlock()
		return 0
	}
	raw, gen, b := q.raw, q.gen, q.buf
	if raw == nil {
		q.mu.Unlock()
		q.signal()
		return 0
	}
	q.writing = true
	q.mu.Unlock()
	n := tryWrite(raw, b)
	if q.sent != nil {
		q.sent.Add(int64(n))
	}
	q.mu.Lock()
	q.writing = false
	rest := false
	if q.gen == gen {
		// Nobody appended meanwhile (appending is the loop's, and the loop is here): buf is
		// still b. Keep the part the socket did not take.
		q.buf = b[:copy(b, b[n:])]
		rest = len(q.buf) > 0
	}
	q.mu.Unlock()
	if rest {
		q.signal()
	}
	return n
}

// drain writes everything queued with write (blocking, under the caller's deadline) until the
// queue is empty or a direct write is under way (its remainder wakes the writer again). Writer
// only.
func (q *outq) drain(write func([]byte) error) error {
	for {
		q.mu.Lock()
		if q.writing || len(q.buf) == 0 {
			q.mu.Unlock()
			return nil
		}
		b := q.buf
		q.buf, q.spare = q.spare[:0], nil
		q.writing = true
		q.mu.Unlock()
		err := write(b)
		q.mu.Lock()
		q.writing = false
		if cap(b) <= maxSpareBytes {
			q.spare = b[:0]
		}
		q.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// drainTo drains the queue to conn (drain), each write under a deadline of timeout, and then
// clears the deadline: the loop's direct writes (flush) go through the same socket, and a
// deadline left to expire would make each of them fail with a timeout and fall back to the
// writer goroutine from then on. Writer only.
func (q *outq) drainTo(conn net.Conn, timeout time.Duration) error {
	err := q.drain(func(b []byte) error {
		_ = conn.SetWriteDeadline(time.Now().Add(timeout))
		n, err := conn.Write(b)
		if q.sent != nil {
			q.sent.Add(int64(n))
		}
		return err
	})
	if err == nil {
		_ = conn.SetWriteDeadline(time.Time{})
	}
	return err
}

// maxSpareBytes bounds the buffer a queue keeps for reuse.
const maxSpareBytes = 1 << 20

// attach starts writing to conn: what was queued before goes out first. reset drops everything
// queued and stops direct writes (the connection is gone; raft retransmits). Writer only.
func (q *outq) attach(conn net.Conn) {
	// A TLS connection offers no descriptor (it is no syscall.Conn: its bytes must be encrypted
	// first), and the writer goroutine writes everything (tls.go).
	var raw syscall.RawConn
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			raw = rc
		}
	}
	q.mu.Lock()
	q.raw = raw
	q.gen++
	q.mu.Unlock()
	q.signal()
}

func (q *outq) reset() {
	q.mu.Lock()
	q.raw = nil
	q.gen++
	q.buf = q.buf[:0]
	if cap(q.buf) > maxSpareBytes {
		q.buf = nil // a burst's buffer is not kept for good
	}
	q.mu.Unlock()
}

func (q *outq) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}
