package transport

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection. (Not with tiny socket buffers: with
// SO_SNDBUF and SO_RCVBUF of 4 KiB, loopback TCP here stalls a plain blocking net.Conn.Write
// for good, queue or no queue.)
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	client, server = c.(*net.TCPConn), s.(*net.TCPConn)
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

// runWriter is the connection writer a transport runs beside the queue.
func runWriter(q *outq, conn net.Conn, done <-chan struct{}, wrote *atomic.Int64) {
	for {
		select {
		case <-done:
			return
		case <-q.wake:
		}
		err := q.drain(func(b []byte) error {
			_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			n, err := conn.Write(b)
			wrote.Add(int64(n))
			return err
		})
		if err != nil {
			println("writer exits:", err.Error())
			return
		}
	}
}

// Records appended and flushed from one goroutine reach the reader complete and in order,
// whether the loop's direct write or the writer goroutine carried them: the reader starts only
// once everything is queued, so the first flushes are written directly until the socket is full,
// and the writer goroutine writes the rest.
func TestOutqKeepsOrderAcrossDirectAndWriterWrites(t *testing.T) {
	client, server := tcpPair(t)
	q := newOutq()
	q.attach(client)
	done := make(chan struct{})
	defer close(done)
	var byWriter atomic.Int64
	go runWriter(q, client, done, &byWriter)

	const records = 40000 // about 30 MB: more than loopback socket buffers hold
	got := make(chan error, 1)
	var readN atomic.Int64
	start := make(chan struct{})
	go func() {
		<-start
		r := bufio.NewReaderSize(server, 64<<10)
		var hdr [8]byte
		for i := range records {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				got <- err
				return
			}
			seq, n := binary.LittleEndian.Uint32(hdr[:4]), binary.LittleEndian.Uint32(hdr[4:])
			if seq != uint32(i) {
				got <- fmt.Errorf("record %d arrived as number %d", i, seq)
				return
			}
			body := make([]byte, n)
			if _, err := io.ReadFull(r, body); err != nil {
				got <- err
				return
			}
			for _, c := range body {
				if c != byte(i) {
					got <- fmt.Errorf("record %d: body corrupted", i)
					return
				}
			}
			readN.Add(int64(8 + n))
		}
		got <- nil
	}()

	direct := 0
	for i := range records {
		size := 1 + i%1500
		q.appendFrames(func(b []byte) []byte {
			b = binary.LittleEndian.AppendUint32(b, uint32(i))
			b = binary.LittleEndian.AppendUint32(b, uint32(size))
			for range size {
				b = append(b, byte(i))
			}
			return b
		})
		if i%3 == 0 {
			direct += q.flush()
		}
	}
	direct += q.flush()
	close(start)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		q.mu.Lock()
		t.Fatalf("the reader did not get every record: queue %d bytes, writing %v; written directly %d, by the writer %d, read %d", len(q.buf), q.writing, direct, byWriter.Load(), readN.Load())
	}
	if direct == 0 || byWriter.Load() == 0 {
		t.Fatalf("bytes written directly %d, by the writer %d: both paths should have carried some", direct, byWriter.Load())
	}
}

// A flush on a connection whose reader has stopped returns: the loop never blocks on a socket.
func TestOutqFlushDoesNotBlockOnAFullSocket(t *testing.T) {
	client, _ := tcpPair(t) // the server end never reads
	q := newOutq()
	q.attach(client)
	done := make(chan struct{})
	defer close(done)
	var byWriter atomic.Int64
	go runWriter(q, client, done, &byWriter)
	flushed := make(chan int, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		total := 0
		for range 512 { // 32 MiB, far beyond loopback socket buffers (a few MiB at most)
			q.appendFrames(func(b []byte) []byte { return append(b, chunk...) })
			total += q.flush()
		}
		flushed <- total
	}()
	select {
	case n := <-flushed:
		if n >= 32<<20 {
			t.Fatalf("the socket took all %d bytes without a reader", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("flush blocked on a socket whose reader stopped")
	}
}

// After reset (the connection is gone) a direct write under way does not put its remainder back,
// and a new connection starts with a clean queue.
func TestOutqResetDropsWhatWasQueued(t *testing.T) {
	client, server := tcpPair(t)
	q := newOutq()
	q.appendFrames(func(b []byte) []byte { return append(b, "stale"...) })
	q.reset()
	q.attach(client)
	q.appendFrames(func(b []byte) []byte { return append(b, "fresh"...) })
	q.flush()
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "fresh" {
		t.Fatalf("read %q after a reset, want %q", buf, "fresh")
	}
}

// deadlineConn records the write deadlines set on it and takes every write.
type deadlineConn struct {
	net.Conn
	deadlines []time.Time
	wrote     int
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.deadlines = append(c.deadlines, t)
	return nil
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	c.wrote += len(b)
	return len(b), nil
}

// The writer goroutine's deadline covers its own writes only: once it has drained the queue the
// deadline is cleared, or the loop's direct writes on the same socket would all fail with a
// timeout once it expired, and go through the writer goroutine from then on.
func TestDrainToClearsItsDeadline(t *testing.T) {
	q := newOutq()
	conn := &deadlineConn{}
	q.appendFrames(func(b []byte) []byte { return append(b, "frame"...) })
	if err := q.drainTo(conn, time.Second); err != nil {
		t.Fatal(err)
	}
	if conn.wrote != len("frame") {
		t.Fatalf("wrote %d bytes, want %d", conn.wrote, len("frame"))
	}
	if n := len(conn.deadlines); n < 2 || conn.deadlines[0].IsZero() || !conn.deadlines[n-1].IsZero() {
		t.Fatalf("write deadlines %v: want one set for the write, then cleared", conn.deadlines)
	}
}
