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
	ClientRequest(conn uint64, m *wire.ClientMsg)
	ClientGone(conn uint64)
}

// ClientConfig configures the client port.
type ClientConfig struct {
	Listener net.Listener
	// MaxFrameBytes bounds one request frame (default 2 MiB).
	MaxFrameBytes int
	// QueueMessages bounds each connection's outbound queue (default 8192); a client that does
	// not read its answers fast enough is disconnected (it reattaches and retries), so the
	// member never blocks on it.
	QueueMessages int
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
	id    uint64
	conn  net.Conn
	queue chan []byte
	once  sync.Once
	done  chan struct{}
}

// NewClientServer creates the client port server; Start runs it.
func NewClientServer(cfg ClientConfig, h ClientHandler) *ClientServer {
	if cfg.MaxFrameBytes == 0 {
		cfg.MaxFrameBytes = 2 << 20
	}
	if cfg.QueueMessages == 0 {
		cfg.QueueMessages = 8192
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

// Send queues a message for a connection; it never blocks. A full queue disconnects the client.
func (s *ClientServer) Send(conn uint64, m *wire.ClientMsg) {
	s.mu.Lock()
	c, ok := s.conns[conn]
	s.mu.Unlock()
	if !ok {
		return
	}
	frame := wire.AppendFrame(nil, wire.FrameClient, wire.AppendClientMsg(nil, m))
	select {
	case c.queue <- frame:
	default:
		s.log.Warn("client too slow to read its answers; disconnecting it", "conn", conn,
			"remote", c.conn.RemoteAddr().String())
		c.close()
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
		c := &clientConn{id: s.nextID, conn: nc, queue: make(chan []byte, s.cfg.QueueMessages), done: make(chan struct{})}
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
	var buf []byte
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
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
		// The payload aliases the read buffer, which the next ReadFrame reuses.
		m.Payload = append([]byte(nil), m.Payload...)
		s.h.ClientRequest(c.id, &m)
	}
}

func (s *ClientServer) rejectClient(c *clientConn, reason string) {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
	s.log.Warn("closing client connection: "+reason, "conn", c.id, "remote", c.conn.RemoteAddr().String())
}

func (s *ClientServer) writeLoop(c *clientConn) {
	defer s.wg.Done()
	w := bufio.NewWriterSize(c.conn, 64<<10)
	for {
		var frame []byte
		select {
		case <-c.done:
			return
		case frame = <-c.queue:
		}
		for {
			if _, err := w.Write(frame); err != nil {
				c.close()
				return
			}
			select {
			case frame = <-c.queue:
				continue
			default:
			}
			break
		}
		_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := w.Flush(); err != nil {
			c.close()
			return
		}
	}
}
