package transport

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// ClientHandler receives client requests. Called from connection goroutines: hand over quickly.
type ClientHandler interface {
	// ClientRequests delivers, in order, the requests read from one connection in one go
	// (every complete frame that had arrived). The slice and the payloads are the handler's.
	ClientRequests(conn uint64, ms []wire.ClientMsg)
	ClientGone(conn uint64)
}

// ClientConfig configures the client port.
type ClientConfig struct {
	Listener net.Listener
	// MaxFrameBytes bounds one request frame (default 2 MiB).
	MaxFrameBytes int
	// MaxQueuedBytes bounds the answers waiting to be written to one connection (default
	// 16 MiB); a client that does not read its answers fast enough is disconnected (it
	// reattaches and retries), so the member never blocks on it.
	MaxQueuedBytes int
	// IdleTimeout closes a connection that sent nothing for this long (default 60 s; clients
	// send keep-alives well within it).
	IdleTimeout time.Duration
	Logger      *slog.Logger
}

// ClientServer serves the client port.
type ClientServer struct {
	cfg ClientConfig
	h   ClientHandler
	log *slog.Logger

	mu     sync.Mutex
	conns  map[uint64]*clientConn
	nextID uint64
	closed bool
	// rejected counts connections closed for a protocol violation.
	rejected int
	wg       sync.WaitGroup
}

type clientConn struct {
	id   uint64
	conn net.Conn
	// out holds encoded frames waiting for the writer; wake has a token whenever out went from
	// empty to not empty since the writer last looked. Answers are appended in place: no
	// allocation and no channel operation per answer.
	mu   sync.Mutex
	out  []byte
	wake chan struct{}
	once sync.Once
	done chan struct{}
}

// NewClientServer creates the client port server; Start runs it.
func NewClientServer(cfg ClientConfig, h ClientHandler) *ClientServer {
	if cfg.MaxFrameBytes == 0 {
		cfg.MaxFrameBytes = 2 << 20
	}
	if cfg.MaxQueuedBytes == 0 {
		cfg.MaxQueuedBytes = 16 << 20
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &ClientServer{cfg: cfg, h: h, log: cfg.Logger, conns: map[uint64]*clientConn{}}
}

// Start launches the accept loop.
func (s *ClientServer) Start() {
	s.wg.Add(1)
	go s.acceptLoop()
}

// Stop closes the listener and every connection and waits.
func (s *ClientServer) Stop() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*clientConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	_ = s.cfg.Listener.Close()
	for _, c := range conns {
		c.close()
	}
	s.wg.Wait()
}

// Rejected returns how many connections were closed for a protocol violation.
func (s *ClientServer) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// Send queues a message for a connection; it never blocks. A client with more than
// MaxQueuedBytes of answers waiting is disconnected.
func (s *ClientServer) Send(conn uint64, m *wire.ClientMsg) {
	s.mu.Lock()
	c, ok := s.conns[conn]
	s.mu.Unlock()
	if !ok {
		return
	}
	c.mu.Lock()
	wasEmpty := len(c.out) == 0
	c.out = wire.AppendClientFrame(c.out, m)
	over := len(c.out) > s.cfg.MaxQueuedBytes
	if over {
		c.out = nil
	}
	c.mu.Unlock()
	if over {
		s.log.Warn("client too slow to read its answers; disconnecting it", "conn", conn,
			"remote", c.conn.RemoteAddr().String())
		c.close()
		return
	}
	if wasEmpty {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func (c *clientConn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.conn.Close()
	})
}

func (s *ClientServer) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.cfg.Listener.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Error("client listener failed", "err", err)
			return
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.nextID++
		c := &clientConn{id: s.nextID, conn: nc, wake: make(chan struct{}, 1), done: make(chan struct{})}
		s.conns[c.id] = c
		s.mu.Unlock()
		s.wg.Add(2)
		go s.writeLoop(c)
		go s.readLoop(c)
	}
}

func (s *ClientServer) readLoop(c *clientConn) {
	defer s.wg.Done()
	defer func() {
		c.close()
		s.mu.Lock()
		delete(s.conns, c.id)
		s.mu.Unlock()
		s.h.ClientGone(c.id)
	}()
	r := bufio.NewReaderSize(c.conn, 64<<10)
	var buf, arena []byte
	var batch []wire.ClientMsg
	for {
		if len(batch) == 0 {
			// Only wait on the network with nothing held back.
			_ = c.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		kind, body, nb, err := wire.ReadFrame(r, s.cfg.MaxFrameBytes, buf)
		buf = nb
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.rejectClient(c, "reading: "+err.Error())
			}
			return
		}
		if kind != wire.FrameClient {
			s.rejectClient(c, "unexpected frame kind on the client port")
			return
		}
		m, err := wire.DecodeClientMsg(body)
		if err != nil {
			s.rejectClient(c, "bad request: "+err.Error())
			return
		}
		// The payload aliases the read buffer, which the next ReadFrame reuses: copy it into
		// the arena, which is only ever appended to (a full one is replaced, not reused).
		if len(m.Payload) > 0 {
			if cap(arena)-len(arena) < len(m.Payload) {
				arena = make([]byte, 0, max(arenaBytes, len(m.Payload)))
			}
			start := len(arena)
			arena = append(arena, m.Payload...)
			m.Payload = arena[start:len(arena):len(arena)]
		} else {
			m.Payload = nil
		}
		batch = append(batch, m)
		if len(batch) >= maxRequestBatch || !wire.FrameBuffered(r) {
			s.h.ClientRequests(c.id, batch)
			batch = nil
		}
	}
}

const (
	// maxRequestBatch bounds the requests handed over at once from one connection.
	maxRequestBatch = 1024
	// arenaBytes is the size of the blocks request payloads are copied into.
	arenaBytes = 64 << 10
)

func (s *ClientServer) rejectClient(c *clientConn, reason string) {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
	s.log.Warn("closing client connection: "+reason, "conn", c.id, "remote", c.conn.RemoteAddr().String())
}

// writeLoop writes whatever answers have accumulated, in one write each time it wakes.
func (s *ClientServer) writeLoop(c *clientConn) {
	defer s.wg.Done()
	var spare []byte
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		c.mu.Lock()
		buf := c.out
		c.out, spare = spare[:0], nil
		c.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.conn.Write(buf); err != nil {
			c.close()
			return
		}
		if cap(buf) <= 1<<20 {
			spare = buf[:0]
		}
	}
}
