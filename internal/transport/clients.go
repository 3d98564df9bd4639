package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-cluster/tandem/internal/ratelog"
	"github.com/tandem-cluster/tandem/internal/tlsconf"
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
	// MaxFrameBytes bounds one request frame (default 2 MiB). A larger command or query is not
	// read: its head is handed over with OversizedBytes set (the member answers it with a
	// refusal that names its limit) and the rest of the frame is skipped, up to
	// oversizedSkipBytesMax; any other oversized frame closes the connection.
	MaxFrameBytes int
	// MaxQueuedBytes bounds the answers waiting to be written to one connection (default
	// 16 MiB); a client that does not read its answers fast enough is disconnected (it
	// reattaches and retries), so the member never blocks on it.
	MaxQueuedBytes int
	// IdleTimeout closes a connection that sent nothing for this long (default 60 s; clients
	// send keep-alives well within it).
	IdleTimeout time.Duration
	// MaxConns bounds the connections served at once (default 4096). One over it is closed at
	// once, logged and counted (Refused).
	MaxConns int
	Logger   *slog.Logger
	// ClientProtocol is the client protocol versions this member speaks (zero: this build's,
	// wire.ClientProtocol). Narrower only in tests of mixed versions.
	ClientProtocol wire.Range

	// TLS, if set, serves the port over TLS: each connection's handshake runs in its reader,
	// under handshakeTimeout, never in the accept loop.
	TLS *tls.Config
	// Authenticate, if set, authenticates every connection: it is called with the connection's
	// verified client certificate chain (nil without one) and the token of a CAuth request (nil
	// without one), and returns what the connection may do, or why it is refused. A connection
	// with a certificate is authenticated by it before its first request; one without must send
	// CAuth first. Until it is authenticated nothing from a connection is handed over: a request
	// before that, or a refused credential, is answered with CAuthRefused (a version refusal
	// saying so for a client below version 5, which cannot send a token) and the connection is
	// closed. Every request handed over carries the connection's grant (wire.ClientMsg.Grant).
	// nil: nobody is authenticated, requests carry no grant, and a CAuth is taken and ignored.
	// Called from connection goroutines, and from Reauthenticate.
	Authenticate func(certs []*x509.Certificate, token []byte) (*wire.Grant, error)
}

// ClientServer serves the client port.
type ClientServer struct {
	cfg ClientConfig
	h   ClientHandler
	log *slog.Logger
	acc *accepter
	// done is closed by Stop (with closed set, under mu).
	done chan struct{}

	mu     sync.Mutex
	conns  map[uint64]*clientConn
	nextID uint64
	closed bool
	// rejected counts connections closed for a protocol violation.
	rejected int
	wg       sync.WaitGroup

	// dirty lists the connections Send queued answers for since the last Flush. Only the
	// member's loop (the caller of Send and Flush) touches it, and clientConn.dirty.
	dirty []*clientConn
	// versionLog limits the lines about clients refused for their versions; tlsLog those about
	// failed TLS handshakes, authLog those about connections refused their credentials.
	versionLog, tlsLog, authLog ratelog.Limiter
}

type clientConn struct {
	id   uint64
	conn net.Conn
	// q holds encoded answers: appended in place by Send (no allocation and no channel
	// operation per answer), written through by Flush, the rest by the connection's writer.
	q     *outq
	dirty bool // listed in ClientServer.dirty (loop only)
	once  sync.Once
	done  chan struct{}
	// version is the client protocol version negotiated on the connection, which everything
	// written on it is encoded in: 0 until the reader fixed it, before it handed over the first
	// request (so before the loop answers anything). Set once.
	version atomic.Uint32

	// grant is what the connection may do (Authenticate's answer), set once it is
	// authenticated and replaced by Reauthenticate; the reader puts it on each request.
	grant atomic.Pointer[wire.Grant]
	// cred is the credential it was authenticated with, for Reauthenticate.
	credMu sync.Mutex
	cred   credential
	// certRefused: why the certificate it presented authenticates nobody (it may still send a
	// token), for the refusal of a request that comes without one.
	certRefused string
}

// credential is what a connection authenticated with.
type credential struct {
	certs  []*x509.Certificate
	token  []byte
	authed bool
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
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.ClientProtocol = cfg.ClientProtocol.OrDefault(wire.ClientProtocol)
	done := make(chan struct{})
	return &ClientServer{cfg: cfg, h: h, log: cfg.Logger, conns: map[uint64]*clientConn{}, done: done,
		acc:        newAccepter("client", cfg.Listener, cfg.MaxConns, cfg.Logger, done),
		versionLog: ratelog.Limiter{Every: acceptLogEvery}, tlsLog: ratelog.Limiter{Every: acceptLogEvery},
		authLog: ratelog.Limiter{Every: acceptLogEvery}}
}

// Start launches the accept loop.
func (s *ClientServer) Start() {
	s.wg.Add(1)
	go s.acceptLoop()
}

// Stop closes the listener and every connection and waits.
func (s *ClientServer) Stop() {
	s.mu.Lock()
	if !s.closed {
		close(s.done)
	}
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

// Open returns how many client connections are open.
func (s *ClientServer) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Refused returns how many connections were closed at once because MaxConns were open.
func (s *ClientServer) Refused() int { return int(s.acc.refused.Load()) }

// AcceptFailures returns how many accepts on the client port failed (and were retried).
func (s *ClientServer) AcceptFailures() int { return int(s.acc.failed.Load()) }

// Send queues a message for a connection, encoded in the connection's client protocol version;
// Flush sends what was queued. Neither blocks. A client with more than MaxQueuedBytes of answers
// waiting is disconnected. Send and Flush are for one goroutine (the member's loop): the answers
// of one round go out together, one write per connection.
func (s *ClientServer) Send(conn uint64, m *wire.ClientMsg) {
	s.mu.Lock()
	c, ok := s.conns[conn]
	s.mu.Unlock()
	if !ok {
		return
	}
	over := false
	v := uint16(c.version.Load())
	if v == 0 {
		v = 1 // (not reached: the loop answers requests, which come after the version is fixed)
	}
	c.q.appendFrames(func(b []byte) []byte {
		b = wire.AppendClientFrame(b, m, v)
		if len(b) > s.cfg.MaxQueuedBytes {
			over = true
			return b[:0]
		}
		return b
	})
	if over {
		s.log.Warn("client too slow to read its answers; disconnecting it", "conn", conn,
			"remote", c.conn.RemoteAddr().String())
		c.close()
		return
	}
	if !c.dirty {
		c.dirty = true
		s.dirty = append(s.dirty, c)
	}
}

// Flush writes the answers Send queued since the last Flush: at once, from the caller's
// goroutine, to every connection whose socket takes them (outq), through the connection's
// writer otherwise.
func (s *ClientServer) Flush() {
	for i, c := range s.dirty {
		c.dirty = false
		c.q.flush()
		s.dirty[i] = nil
	}
	s.dirty = s.dirty[:0]
}

func (c *clientConn) close() {
	c.once.Do(func() {
		close(c.done)
		tlsconf.CloseSocket(c.conn) // (a client that stopped reading must not hold the closer)
	})
}

// acceptLoop serves connections until Stop; a failed accept is retried (accepter).
func (s *ClientServer) acceptLoop() {
	defer s.wg.Done()
	open := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns)
	}
	for {
		nc := s.acc.next(open)
		if nc == nil {
			return
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		if s.cfg.TLS != nil {
			nc = tls.Server(nc, s.cfg.TLS) // the handshake runs in the reader (readLoop)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.nextID++
		c := &clientConn{id: s.nextID, conn: nc, q: newOutq(), done: make(chan struct{})}
		c.q.attach(nc)
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
		s.acc.connClosed()
		s.h.ClientGone(c.id)
	}()
	if tc, ok := c.conn.(*tls.Conn); ok && !s.handshake(c, tc) {
		return
	}
	if s.cfg.Authenticate != nil {
		s.authenticateAtOnce(c)
	}
	r := bufio.NewReaderSize(c.conn, 64<<10)
	if s.cfg.TLS == nil {
		// A TLS client on a plaintext port: its ClientHello would be read as a frame of some
		// 80 MB ("frame too large"); say what it is. A TLS handshake record begins 0x16 0x03,
		// and its sixth byte is the ClientHello's type, 1; a client frame's sixth byte is its
		// kind, FrameClient (5), whatever its length (which a record's first bytes could spell).
		_ = c.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if head, err := r.Peek(6); err == nil && head[0] == 0x16 && head[1] == 0x03 && head[5] == 0x01 {
			s.rejectClient(c, "a TLS handshake on a plaintext client port: the client uses TLS, and this member serves none (no --tls-cert)")
			return
		}
	}
	var buf, arena []byte
	var batch []wire.ClientMsg
	handed := false // whether anything from the connection was handed over
	for {
		if len(batch) == 0 {
			// Only wait on the network with nothing held back. A connection not authenticated
			// yet has handshakeTimeout to send its credential: idle ones would otherwise hold
			// the port's connection slots for the idle timeout.
			wait := s.cfg.IdleTimeout
			if s.cfg.Authenticate != nil && c.grant.Load() == nil {
				wait = handshakeTimeout
			}
			_ = c.conn.SetReadDeadline(time.Now().Add(wait))
		}
		kind, body, nb, err := wire.ReadFrame(r, s.cfg.MaxFrameBytes, buf)
		buf = nb
		if err != nil {
			var tl *wire.FrameTooLargeError
			if errors.As(err, &tl) {
				m, err := skipOversized(r, tl)
				if err != nil {
					s.rejectClient(c, "reading: "+err.Error())
					return
				}
				s.log.Warn("client request over the frame limit refused", "conn", c.id,
					"remote", c.conn.RemoteAddr().String(), "bytes", tl.BodyBytes, "limit", tl.Limit)
				if refusal := s.negotiate(c, &m); refusal != "" {
					s.refuseVersion(c, refusal)
					return
				}
				if !s.admit(c, &m, handed) {
					return
				}
				batch = append(batch, m)
				if s.revoked(c) {
					return
				}
				s.h.ClientRequests(c.id, batch) // at once: the skip may have taken a while
				batch = nil
				handed = true
				continue
			}
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
		if refusal := s.negotiate(c, &m); refusal != "" {
			s.refuseVersion(c, refusal)
			return
		}
		if !s.inRange(&m) {
			s.rejectClient(c, fmt.Sprintf("bad request: a message in client protocol version %d, which this member does not speak (%s)",
				m.Version, s.cfg.ClientProtocol))
			return
		}
		if m.Kind == wire.CAuth {
			if !s.authenticate(c, m.Payload, handed || len(batch) > 0) {
				return
			}
			continue
		}
		if !s.admit(c, &m, handed || len(batch) > 0) {
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
			if s.revoked(c) {
				return
			}
			s.h.ClientRequests(c.id, batch)
			batch = nil
			handed = true
		}
	}
}

// negotiate fixes the connection's version on its first request, and checks every later open and
// attach against it; it returns why the connection is refused ("" if it is not). An open, an
// attach or an admin request carries the client's range: the version is the highest common one.
// Any other first request is from a client that does not negotiate, which speaks version 1.
func (s *ClientServer) negotiate(c *clientConn, m *wire.ClientMsg) string {
	cur := uint16(c.version.Load())
	own := s.cfg.ClientProtocol
	if m.Kind != wire.COpen && m.Kind != wire.CAttach && m.Kind != wire.CAdmin && m.Kind != wire.CAuth {
		if cur != 0 {
			return ""
		}
		if !own.Contains(1) {
			return fmt.Sprintf("client protocol: this member speaks %s, the client sent a request before any open "+
				"or attach, as a client that speaks [1,1] does: no common version", own)
		}
		c.version.Store(1)
		return ""
	}
	if cur != 0 {
		if m.Protocol.Contains(cur) {
			return ""
		}
		return fmt.Sprintf("client protocol: this connection speaks version %d, and the client now speaks %s", cur, m.Protocol)
	}
	v, ok := own.Common(m.Protocol)
	if !ok {
		return fmt.Sprintf("client protocol: this member speaks %s, the client speaks %s: no common version", own, m.Protocol)
	}
	if m.Version != 0 && !own.Contains(m.Version) {
		// The ranges meet, but the client wrote its open (and what it pipelines behind it) in a
		// version this member does not read: refused, with this member's range, so that the
		// client reconnects writing in a common version (clientcore does, at once).
		return fmt.Sprintf("client protocol: this member speaks %s, the client wrote in version %d (it speaks %s): "+
			"reconnect writing in version %d", own, m.Version, m.Protocol, v)
	}
	c.version.Store(uint32(v))
	return ""
}

// inRange reports whether a request (not an open or attach, which negotiate judges) is written in
// a version this port reads: the negotiated one, or the one the client opened in, which it keeps
// to until the member's answer tells it the negotiated one.
func (s *ClientServer) inRange(m *wire.ClientMsg) bool {
	return m.Version == 0 || s.cfg.ClientProtocol.Contains(m.Version)
}

// refuseVersion refuses the connection for its version; the caller then closes it, and nothing
// more is read from it. On a connection whose version was not fixed yet nothing was handed over,
// so nothing else is written to it: the refusal is written at once, from the reader, then the
// connection is shut for writing and what the client sent meanwhile is read and dropped until it
// closes its end (bounded): closing with unread data would reset the connection, and the client
// might lose the refusal. A connection whose version was fixed may have answers on their way
// (the loop's): it is closed without a word, and the client's next connection negotiates anew.
func (s *ClientServer) refuseVersion(c *clientConn, text string) {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
	if ok, held := s.versionLog.Allow(time.Now()); ok {
		s.log.Warn("closing client connection: "+text, "conn", c.id, "remote", c.conn.RemoteAddr().String(),
			"refusals_not_logged", held)
	}
	if c.version.Load() != 0 {
		return
	}
	own := s.cfg.ClientProtocol
	m := wire.ClientMsg{Kind: wire.CVersionRefused, Protocol: own, Payload: []byte(text)}
	_ = c.conn.SetWriteDeadline(time.Now().Add(refusalLingerTimeout))
	if _, err := c.conn.Write(wire.AppendClientFrame(nil, &m, own.Max)); err != nil {
		return
	}
	s.linger(c)
}

// skipOversized reads the head of a frame over the limit (ReadFrame read its length only) and, if
// it is a command or a query of this version and not beyond oversizedSkipBytesMax, skips the
// rest and returns the request's head with OversizedBytes set, for the member to refuse. Any
// other frame is an error that names the limit (the connection is closed).
//
// Why skip rather than close: a client that misjudged the limit (the member announces it when
// a session attaches, so only an older or foreign client does) learns that its command was not
// applied and why, instead of reconnecting and resending it until its timeout.
func skipOversized(r io.Reader, tl *wire.FrameTooLargeError) (wire.ClientMsg, error) {
	if tl.BodyBytes > oversizedSkipBytesMax {
		return wire.ClientMsg{}, tl
	}
	var hdr [wire.FrameHeaderBytes - 4]byte // version, kind, crc
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return wire.ClientMsg{}, fmt.Errorf("%w (and then: %w)", tl, err)
	}
	head := make([]byte, min(tl.BodyBytes, wire.ClientHeadBytes))
	if _, err := io.ReadFull(r, head); err != nil {
		return wire.ClientMsg{}, fmt.Errorf("%w (and then: %w)", tl, err)
	}
	m, ok := wire.DecodeClientHead(head)
	if hdr[0] != wire.Version || wire.FrameKind(hdr[1]) != wire.FrameClient || !ok {
		return wire.ClientMsg{}, tl
	}
	if _, err := io.CopyN(io.Discard, r, tl.BodyBytes-int64(len(head))); err != nil {
		return wire.ClientMsg{}, fmt.Errorf("%w (and then: %w)", tl, err)
	}
	m.OversizedBytes = int(tl.BodyBytes)
	return m, nil
}

const (
	// oversizedSkipBytesMax bounds the oversized command the client port skips to answer it;
	// a larger frame is not a confused client's, and closes the connection.
	oversizedSkipBytesMax = 64 << 20
	// maxRequestBatch bounds the requests handed over at once from one connection.
	maxRequestBatch = 1024
	// arenaBytes is the size of the blocks request payloads are copied into.
	arenaBytes = 64 << 10
	// refusalLingerTimeout and refusalLingerBytesMax bound how long a refused connection is kept
	// for its refusal to reach the client, and how much of what it sends meanwhile is read.
	refusalLingerTimeout  = 5 * time.Second
	refusalLingerBytesMax = 4 << 20
)

// handshake runs a TLS connection's handshake under handshakeTimeout; false (logged, rate
// limited, counted) if it failed.
func (s *ClientServer) handshake(c *clientConn, tc *tls.Conn) bool {
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.mu.Lock()
		s.rejected++
		s.mu.Unlock()
		if closedEarly(err) {
			// The client went away during the handshake: a client that gave up on this member
			// (it exited, or found its leader elsewhere), a port probe, a load balancer's
			// health check. Nothing an operator must act on.
			s.log.Debug("client port: the client closed the connection during the TLS handshake",
				"remote", c.conn.RemoteAddr().String(), "err", err)
		} else if ok, held := s.tlsLog.Allow(time.Now()); ok {
			s.log.Warn("client port: TLS handshake failed; connection closed", "remote", c.conn.RemoteAddr().String(),
				"err", clientTLSReason(err), "failures_not_logged", held)
		}
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && rh.Conn != nil {
			// A client in the clear: tell it so in its own protocol, so that it stops at once
			// (a refused credential is final) rather than retrying a port it cannot speak to.
			m := wire.ClientMsg{Kind: wire.CAuthRefused, Status: wire.StatusUnauthenticated,
				Payload: []byte("this port speaks TLS: connect with TLS (tandem client --cacert)")}
			_ = rh.Conn.SetWriteDeadline(time.Now().Add(refusalLingerTimeout))
			if _, err := rh.Conn.Write(wire.AppendClientFrame(nil, &m, 5)); err == nil {
				lingerOn(rh.Conn)
			}
		}
		return false
	}
	return true
}

// authenticateAtOnce authenticates a connection before its first request, by its verified
// client certificate, or as anonymous if Authenticate takes connections without a credential.
// A connection it does not authenticate may still send a token (CAuth); a request before that is
// refused.
func (s *ClientServer) authenticateAtOnce(c *clientConn) {
	var certs []*x509.Certificate
	if tc, ok := c.conn.(*tls.Conn); ok {
		certs = tc.ConnectionState().PeerCertificates
	}
	// Under credMu, as every authentication of the connection: a reload's Reauthenticate then
	// sees the credential either before it is checked (and checks it with the new material) or
	// after it is stored (and checks it again).
	c.credMu.Lock()
	defer c.credMu.Unlock()
	g, err := s.cfg.Authenticate(certs, nil)
	if err != nil {
		s.log.Debug("client port: no credential yet", "remote", c.conn.RemoteAddr().String(), "err", err)
		if len(certs) > 0 {
			c.certRefused = err.Error() // said if no token follows (admit)
		}
		return
	}
	c.cred = credential{certs: certs, authed: true}
	c.grant.Store(g)
}

// clientTLSReason says why a client's handshake failed, in the words an operator needs: a
// client that sent plaintext to a TLS port is the common case and Go's error for it is cryptic.
func clientTLSReason(err error) string {
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return "the client sent plaintext (not TLS) to a TLS port"
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return fmt.Sprintf("the client's certificate is signed by no CA this port takes (the client CA, or the peer CA for a member's): %v", err)
	}
	return tlsReason(err)
}

// authenticate takes a connection's CAuth: false if the credential was refused (the refusal is
// written, the connection is to be closed). afterRequests: requests were read before it, some
// maybe handed over (a refusal is then not written: the loop may be writing answers).
func (s *ClientServer) authenticate(c *clientConn, token []byte, afterRequests bool) bool {
	if s.cfg.Authenticate == nil {
		return true // a member that authenticates nobody takes any credential, and ignores it
	}
	var certs []*x509.Certificate
	if tc, ok := c.conn.(*tls.Conn); ok {
		certs = tc.ConnectionState().PeerCertificates
	}
	c.credMu.Lock()
	g, err := s.cfg.Authenticate(certs, token)
	if err != nil {
		c.cred = credential{}
		c.grant.Store(nil)
		c.credMu.Unlock()
		s.refuseAuth(c, "credential refused: "+err.Error(), afterRequests)
		return false
	}
	c.cred = credential{certs: certs, token: append([]byte(nil), token...), authed: true}
	c.grant.Store(g)
	c.credMu.Unlock()
	return true
}

// revoked reports whether the connection was closed for a revoked credential (or otherwise)
// since its requests were read: they are not handed over.
func (s *ClientServer) revoked(c *clientConn) bool {
	if s.cfg.Authenticate == nil {
		return false
	}
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// admit puts the connection's grant on m; false if the connection is not authenticated (the
// refusal is written, the connection is to be closed).
func (s *ClientServer) admit(c *clientConn, m *wire.ClientMsg, afterRequests bool) bool {
	if s.cfg.Authenticate == nil {
		return true
	}
	g := c.grant.Load()
	if g == nil {
		text := "this member authenticates its clients: connect with a client certificate its CA signed, " +
			"or a token (tandem client --token-file)"
		c.credMu.Lock()
		if c.certRefused != "" {
			text = "credential refused: " + c.certRefused
		}
		c.credMu.Unlock()
		s.refuseAuth(c, text, afterRequests)
		return false
	}
	m.Grant = g
	return true
}

// refuseAuth refuses the connection's credential: a CAuthRefused (a version refusal below client
// protocol 5) written from the reader, as refuseVersion does, unless requests from it were
// handed over (the loop may be writing: then the connection is just closed).
func (s *ClientServer) refuseAuth(c *clientConn, text string, afterRequests bool) {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
	if ok, held := s.authLog.Allow(time.Now()); ok {
		s.log.Warn("client port: connection not authenticated; closed: "+text, "conn", c.id,
			"remote", c.conn.RemoteAddr().String(), "refusals_not_logged", held)
	}
	if afterRequests {
		return
	}
	v := uint16(c.version.Load())
	m := wire.ClientMsg{Kind: wire.CAuthRefused, Status: wire.StatusUnauthenticated, Payload: []byte(text)}
	if v < 5 {
		own := s.cfg.ClientProtocol
		m = wire.ClientMsg{Kind: wire.CVersionRefused, Protocol: own, Payload: []byte(text +
			" (a token needs client protocol 5; this client speaks an earlier one)")}
		v = own.Max
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(refusalLingerTimeout))
	if _, err := c.conn.Write(wire.AppendClientFrame(nil, &m, v)); err != nil {
		return
	}
	s.linger(c)
}

// linger keeps a refused connection until the client closed its end (bounded), reading and
// dropping what it sent meanwhile: closing with unread data would reset the connection, and the
// client might lose the refusal.
func (s *ClientServer) linger(c *clientConn) { lingerOn(c.conn) }

func lingerOn(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(refusalLingerTimeout))
	_, _ = io.CopyN(io.Discard, conn, refusalLingerBytesMax)
}

// Reauthenticate checks every authenticated connection's credential again (after the member
// reloaded its tokens, certificates or authorization): a connection whose credential is no
// longer taken (a revoked token) is closed — its client reconnects, and is refused — and the
// others get their new grants. It returns how many it closed.
func (s *ClientServer) Reauthenticate() int {
	if s.cfg.Authenticate == nil {
		return 0
	}
	s.mu.Lock()
	conns := make([]*clientConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	closed := 0
	for _, c := range conns {
		if s.reauthenticate(c) {
			closed++
		}
	}
	return closed
}

// reauthenticate checks one connection's credential again, under its credMu (see
// authenticateAtOnce); true if it closed the connection. A revoked connection's grant is
// dropped before it is closed, so that nothing more from it is admitted, even what its reader
// holds already read.
func (s *ClientServer) reauthenticate(c *clientConn) bool {
	c.credMu.Lock()
	defer c.credMu.Unlock()
	if !c.cred.authed {
		return false
	}
	g, err := s.cfg.Authenticate(c.cred.certs, c.cred.token)
	if err != nil {
		c.grant.Store(nil)
		c.cred = credential{}
		s.log.Warn("client port: closing a connection whose credential is no longer taken", "conn", c.id,
			"remote", c.conn.RemoteAddr().String(), "err", err)
		c.close()
		return true
	}
	c.grant.Store(g)
	return false
}

func (s *ClientServer) rejectClient(c *clientConn, reason string) {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
	s.log.Warn("closing client connection: "+reason, "conn", c.id, "remote", c.conn.RemoteAddr().String())
}

// writeLoop writes what Flush could not write at once, in one write each time it wakes.
func (s *ClientServer) writeLoop(c *clientConn) {
	defer s.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case <-c.q.wake:
		}
		if err := c.q.drainTo(c.conn, 10*time.Second); err != nil {
			c.close()
			return
		}
	}
}
