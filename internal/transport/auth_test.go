package transport

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/internal/testpki"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// A token revoked while a connection is being authenticated with it: whichever of the reader's
// authentication and the reload's Reauthenticate comes second sees the revocation, and nothing
// from the connection is handed over afterwards (a reviewer's reproduction; it failed before
// both ran under the connection's credMu).
func TestRevocationRacingAnAuthenticationWins(t *testing.T) {
	var valid atomic.Bool
	valid.Store(true)
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	auth := func(certs []*x509.Certificate, token []byte) (*wire.Grant, error) {
		if token == nil {
			return nil, errors.New("no credential")
		}
		ok := valid.Load()
		if calls.Add(1) == 1 {
			close(entered)
			<-release // the reader is preempted here
		}
		if !ok {
			return nil, errors.New("revoked")
		}
		return &wire.Grant{Principal: "p", Commands: true}, nil
	}
	s, rec, addr := startClientServer(t, ClientConfig{Authenticate: auth})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, _ = nc.Write(wire.AppendClientFrame(nil, &wire.ClientMsg{Kind: wire.CAuth, Protocol: wire.ClientProtocol, Payload: []byte("tok")}, wire.ClientProtocolMax))
	<-entered
	valid.Store(false)
	// Reauthenticate runs while the reader is inside its authentication (with the old tokens),
	// holding the connection's lock: it waits for it, then checks again and closes.
	done := make(chan int)
	go func() { done <- s.Reauthenticate() }()
	close(release)
	if n := <-done; n != 1 {
		t.Errorf("Reauthenticate closed %d connections, want the one authenticating", n)
	}
	_, _ = nc.Write(wire.AppendClientFrame(nil, &wire.ClientMsg{Kind: wire.CCommand, Seq: 1, Payload: []byte("x")}, wire.ClientProtocolMax))
	select {
	case ms := <-rec.batches:
		t.Errorf("a revoked token's command was handed over: kind %d, principal %q", ms[0].Kind, ms[0].Grant.Principal)
	case <-time.After(2 * time.Second):
	}
}

// Requests already read when Reauthenticate closes a revoked connection are not handed over (a
// reviewer's reproduction: 400 were, before).
func TestRevokedConnectionHandsOverNothingMore(t *testing.T) {
	var valid atomic.Bool
	valid.Store(true)
	auth := func(certs []*x509.Certificate, token []byte) (*wire.Grant, error) {
		if token == nil {
			return nil, errors.New("no credential")
		}
		if !valid.Load() {
			return nil, errors.New("revoked")
		}
		return &wire.Grant{Principal: "p", Commands: true}, nil
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	block := make(chan struct{})
	h := &blockingHandler{first: block, batches: make(chan int, 100)}
	s := NewClientServer(ClientConfig{Listener: l, Authenticate: auth}, h)
	s.Start()
	defer s.Stop()
	nc, _ := net.Dial("tcp", l.Addr().String())
	defer nc.Close()
	out := wire.AppendClientFrame(nil, &wire.ClientMsg{Kind: wire.CAuth, Protocol: wire.ClientProtocol, Payload: []byte("tok")}, wire.ClientProtocolMax)
	for i := range 1500 {
		out = wire.AppendClientFrame(out, &wire.ClientMsg{Kind: wire.CCommand, Seq: wire.Seq(i + 1), Payload: []byte("x")}, wire.ClientProtocolMax)
	}
	_, _ = nc.Write(out)
	n := <-h.batches // blocked in the first batch
	valid.Store(false)
	t.Logf("first batch %d; Reauthenticate closed %d", n, s.Reauthenticate())
	close(block)
	time.Sleep(300 * time.Millisecond)
	after := 0
	for len(h.batches) > 0 {
		after += <-h.batches
	}
	if after > 0 {
		t.Errorf("%d requests handed over after the connection's token was revoked and it was closed", after)
	}
}

type blockingHandler struct {
	first   chan struct{}
	n       atomic.Int32
	batches chan int
}

func (h *blockingHandler) ClientRequests(conn uint64, ms []wire.ClientMsg) {
	h.batches <- len(ms)
	if h.n.Add(1) == 1 {
		<-h.first
	}
}
func (h *blockingHandler) ClientGone(uint64) {}

// A TLS client that stops reading: the writer's write times out (10 s) and it closes the
// connection; the loop's Send that then finds the client over MaxQueuedBytes closes it too. A
// TLS close would write a close_notify under a 5 s deadline into the full socket, holding the
// loop as long (a reviewer's reproduction: 4.27 s); the connection is closed at its socket.
func TestSlowTLSClientDoesNotBlockTheLoop(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "ca")
	c := ca.Issue(t, testpki.Server, "srv", nil, "127.0.0.1")
	pair, _ := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	s, rec, addr := startClientServer(t, ClientConfig{MaxQueuedBytes: 4 << 20,
		TLS: &tls.Config{Certificates: []tls.Certificate{pair}}})
	raw, _ := net.Dial("tcp", addr)
	raw.(*net.TCPConn).SetReadBuffer(4096)
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	defer tc.Close()
	if _, err := tc.Write(wire.AppendClientFrame(nil, &wire.ClientMsg{Kind: wire.CKeepAlive}, wire.ClientProtocolMax)); err != nil {
		t.Fatal(err)
	}
	<-rec.batches
	conn := <-rec.conns
	big := bytes.Repeat([]byte("y"), 256<<10)
	s.mu.Lock()
	cc := s.conns[conn]
	s.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		s.Send(conn, &wire.ClientMsg{Kind: wire.CResponse, Seq: 1, Payload: big})
		s.Flush()
		time.Sleep(100 * time.Millisecond)
		cc.q.mu.Lock()
		n := len(cc.q.buf)
		cc.q.mu.Unlock()
		if n > 0 {
			break
		}
	}
	// The writer's 10 s write deadline passes, and it closes the connection.
	select {
	case <-cc.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the writer did not give up on the client that does not read")
	}
	var worst time.Duration
	for range 30 {
		start := time.Now()
		s.Send(conn, &wire.ClientMsg{Kind: wire.CResponse, Seq: 1, Payload: big})
		s.Flush()
		worst = max(worst, time.Since(start))
	}
	t.Logf("worst Send+Flush on the loop: %v", worst)
	if worst > time.Second {
		t.Errorf("the member's loop blocked %v closing a TLS client", worst)
	}
}

// A TLS ClientHello on a plaintext client port is named in the log; a client frame whose length
// begins with the same two bytes as a TLS record (0x16 0x03: 790 bytes) is served as any other.
func TestTLSHandshakeOnPlaintextClientPortIsNamed(t *testing.T) {
	var logs syncLog
	_, rec, addr := startClientServer(t, ClientConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	go func() { _ = tls.Client(raw, &tls.Config{InsecureSkipVerify: true}).Handshake() }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "a TLS handshake on a plaintext client port") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line naming the TLS handshake:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A query whose frame is 790 bytes long: its first two bytes are 0x16 0x03.
	m := wire.ClientMsg{Kind: wire.CQuery, RequestID: 7}
	for n := 0; n < 1000; n++ {
		m.Payload = bytes.Repeat([]byte("q"), n)
		if f := wire.AppendClientFrame(nil, &m, wire.ClientProtocolMax); f[0] == 0x16 && f[1] == 0x03 {
			break
		}
	}
	f := wire.AppendClientFrame(nil, &m, wire.ClientProtocolMax)
	if f[0] != 0x16 || f[1] != 0x03 {
		t.Fatalf("no query frame begins 0x16 0x03: %x", f[:2])
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(f); err != nil {
		t.Fatal(err)
	}
	select {
	case ms := <-rec.batches:
		if len(ms) != 1 || ms[0].Kind != wire.CQuery || ms[0].RequestID != 7 {
			t.Fatalf("handed over %+v", ms)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the query whose frame looks like a TLS record's start was not served")
	}
}

// syncLog is a log sink for tests, safe for concurrent writers.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *syncLog) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
