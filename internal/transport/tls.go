package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// Mutual TLS on the member port (Config.TLS; nil: plaintext).
//
// Every member connection — a peer's messages and its snapshot streams alike — is TLS 1.3 with a
// certificate on each side, as package tlsconf judges them: a member's (serverAuth and
// clientAuth), signed by the peer CA, carrying one of the allowed names if any are given; the
// dialler also checks that the certificate names the host it dialled. The Tandem handshake
// (cluster, ids, versions) travels inside: TLS says that the other end holds a member's
// certificate, the Tandem handshake still says which member it claims to be and whether it is a
// peer, and every check of the plaintext port still applies behind it.
//
// The acceptor never handshakes in the accept loop: each connection's goroutine runs the TLS
// handshake, bounded by handshakeTimeout as the Tandem handshake is, before it reads the first
// frame. A connection that fails it — plaintext (told apart by its first bytes, which are not a
// TLS record: "plaintext on a TLS member port"), a certificate of another CA, a client's
// certificate, a name not allowed, no certificate, no handshake in time — is closed, counted
// (Rejected) and logged with its reason, at most once per acceptLogEvery for each remote host
// (tlsLog: one host's flood does not hide another's first line). It costs that connection only:
// its goroutine and its slot of MaxConns, for handshakeTimeout at most.
//
// The dialler runs the TLS handshake right after the TCP connect, bounded by DialTimeout and the
// peer's context (a removal or Stop cuts it short). A failure it can explain — the peer's
// certificate does not verify, or the peer refused this member's (a TLS alert, which in TLS 1.3
// may come only with the first read, so awaitReply looks for it too), or the peer closed the
// connection during the handshake (a plaintext member port does) — is logged as a refused
// handshake (logRefusal: rate-limited per peer), and the dial is retried with its backoff, as the
// peer may be reconfigured meanwhile.
//
// Material: each handshake uses what tlsconf.Source holds at that moment, so a reload (the node
// polls the files) reaches the next connection, in both directions, and an open one keeps what it
// was made with. TLS session tickets let a redial resume (tlsconf.Member's session cache); Go
// checks a resumed session's chain against the CA in force again, and VerifyConnection runs on
// resumptions too, so a CA or allowed names changed by a reload also judge resumed sessions.
//
// Writes: a *tls.Conn offers no descriptor for outq's direct non-blocking writes (it is no
// syscall.Conn: the bytes must be encrypted first), so with TLS the member's loop never writes:
// flush wakes the peer's writer goroutine, which writes through the TLS connection. The TCP
// options (no delay, keep-alive) are set on the TCP connection before it is wrapped.

// tlsRecordHeaderBytes is the size of a TLS record's header: type, version, length.
const tlsRecordHeaderBytes = 5

// tlsConn is a TLS connection whose Close closes the TCP connection at once. tls.Conn's own
// Close first writes a close_notify alert, with a deadline of 5 s of its own: a peer that does
// not read would hold up whoever closes — DropInbound under t.mu, Stop, a removal — for that
// long. Nothing is lost without the alert: both sides read the end of the TCP stream at a record
// boundary as the end of the connection (io.EOF).
type tlsConn struct {
	*tls.Conn
	raw net.Conn
}

func (c *tlsConn) Close() error { return c.raw.Close() }

// peekedConn reads through the buffer its first bytes were peeked into.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// acceptTLS runs the TLS handshake of an inbound connection, under handshakeTimeout, and returns
// the connection to read the Tandem handshake from; false if it failed (raw is closed, the
// reason logged and counted). The connection's goroutine only.
func (t *Transport) acceptTLS(raw net.Conn) (net.Conn, bool) {
	deadline := time.Now().Add(handshakeTimeout)
	_ = raw.SetDeadline(deadline)
	// The first bytes say whether a TLS handshake begins at all: a member or a tool without TLS
	// sends its Tandem handshake in plaintext, which the TLS stack would answer with an
	// unhelpful "first record does not look like a TLS handshake", or not at all (a frame
	// whose first bytes happen to pass as a record header leaves it waiting for the rest).
	br := bufio.NewReaderSize(raw, 16) // (the minimum: later reads of a record go straight to raw)
	head, err := br.Peek(tlsRecordHeaderBytes)
	switch {
	case len(head) > 0 && !tlsRecordStart(head):
		t.rejectTLS(raw, "%s", plaintextReason(head))
		return nil, false
	case err != nil:
		t.rejectTLS(raw, "no TLS handshake: %s", tlsReason(err))
		return nil, false
	}
	tc := tls.Server(&peekedConn{Conn: raw, r: br}, t.cfg.TLS.Server())
	ctx, cancel := context.WithDeadline(t.ctx, deadline)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		if t.ctx.Err() == nil {
			t.rejectTLS(raw, "TLS handshake failed: %s", tlsReason(err))
		}
		return nil, false
	}
	_ = raw.SetDeadline(time.Time{})
	return &tlsConn{Conn: tc, raw: raw}, true
}

// tlsRecordStart reports whether b (the first bytes of a connection, up to a record header)
// may begin a TLS handshake: a handshake record (22) of a 3.x version.
func tlsRecordStart(b []byte) bool {
	return b[0] == 22 && (len(b) < 2 || b[1] == 3)
}

// plaintextReason says what came instead of a TLS handshake: a Tandem frame (its length, then
// the frame version), or bytes of something else, quoted.
func plaintextReason(head []byte) string {
	if len(head) >= 5 && head[4] == wire.Version {
		if n := binary.LittleEndian.Uint32(head[:4]); n >= 6 && n < 1<<30 {
			return "plaintext on a TLS member port: the connection began with a Tandem frame, not a TLS handshake " +
				"(a member or a tool without peer TLS configured?)"
		}
	}
	return fmt.Sprintf("plaintext on a TLS member port: the connection began with %q, not a TLS handshake", head)
}

// tlsReason says why a TLS handshake failed, in the words of its cause.
func tlsReason(err error) string {
	var ua x509.UnknownAuthorityError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("none completed within %s", handshakeTimeout)
	case remoteAlert(err):
		return fmt.Sprintf("the other end refused this member's certificate (%v): see its log", err)
	case errors.As(err, &ua):
		return fmt.Sprintf("the certificate is not signed by the peer CA (%v)", err)
	case closedEarly(err):
		return fmt.Sprintf("the other end closed the connection (%v)", err)
	}
	return err.Error()
}

// remoteAlert reports whether err is a TLS alert the other end sent: it refused the handshake
// (in TLS 1.3 a dialler learns that the acceptor refused its certificate only at its first
// read, after its own handshake completed).
func remoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// closedEarly reports whether err says that the other end closed or reset the connection.
func closedEarly(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// rejectTLS closes an inbound connection whose TLS handshake failed, counted as rejected and
// logged at most once per acceptLogEvery for its remote host (with how many were not).
func (t *Transport) rejectTLS(raw net.Conn, reason string, args ...any) {
	t.mu.Lock()
	t.rejected++
	t.mu.Unlock()
	remote := raw.RemoteAddr().String()
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	if ok, held := t.tlsLog.Allow(host, time.Now()); ok {
		t.log.Warn("closing member connection: "+fmt.Sprintf(reason, args...), "remote", remote,
			"rejections_not_logged", held)
	}
	_ = raw.Close()
}

// dialTLS runs the TLS handshake of a connection dialled at addr, bounded by DialTimeout and the
// peer's context, and returns the connection to send the Tandem handshake on. A failure it can
// explain is logged as a refused handshake (rate-limited per peer); raw is closed on any.
func (p *peer) dialTLS(raw net.Conn, addr string) (net.Conn, error) {
	tc := tls.Client(raw, p.t.cfg.TLS.Client(addr))
	ctx, cancel := context.WithTimeout(p.ctx, p.t.cfg.DialTimeout)
	defer cancel()
	err := tc.HandshakeContext(ctx)
	if err == nil {
		return &tlsConn{Conn: tc, raw: raw}, nil
	}
	_ = raw.Close()
	var ne net.Error
	switch {
	case p.ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		// Removed or stopping; or a peer too slow to answer (a paused process): no refusal.
		return nil, err
	case closedEarly(err):
		err = fmt.Errorf("%w: the peer closed the connection during the TLS handshake: it refused it (see its log), "+
			"or its member port does not use TLS (%v)", errTLSFailed, err)
	default:
		err = fmt.Errorf("%w: %s", errTLSFailed, tlsReason(err))
	}
	p.logRefusal(err)
	return nil, err
}

// errTLSFailed: the TLS handshake with the peer failed.
var errTLSFailed = errors.New("TLS handshake with the peer failed")
