package transport

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/testpki"
	"github.com/tandem-cluster/tandem/internal/tlsconf"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// pki is a peer CA and its files in a directory of the test's.
type pki struct {
	dir    string
	ca     *testpki.CA
	caFile string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, name)
	return &pki{dir: dir, ca: ca, caFile: ca.WriteCA(t, dir, "ca.crt")}
}

// member issues a certificate of kind named cn (for 127.0.0.1 and localhost), writes it as
// files named file, and returns the material of the member port built from them (tlsconf.Load,
// which takes any kind: a member configured with a client's certificate is one of the tests).
func (p *pki) member(t *testing.T, kind testpki.Kind, cn, file string, allowed ...string) *tlsconf.Member {
	t.Helper()
	c := p.ca.Issue(t, kind, cn, nil).Write(t, p.dir, file)
	s, err := tlsconf.Load(tlsconf.Files{Cert: c.CertFile, Key: c.KeyFile, CA: p.caFile})
	if err != nil {
		t.Fatal(err)
	}
	return &tlsconf.Member{Source: s, Allowed: allowed}
}

// inboundCerts returns the common names of the certificates tr's authenticated inbound
// connections from raft id id presented, and whether every one of them is a TLS connection.
func inboundCerts(tr *Transport, id uint64) (names []string, allTLS bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	allTLS = true
	for conn, p := range tr.authed {
		if p.id != id {
			continue
		}
		tc, ok := conn.(*tlsConn)
		if !ok {
			allTLS = false
			continue
		}
		names = append(names, tc.ConnectionState().PeerCertificates[0].Subject.CommonName)
	}
	return names, allTLS
}

// Three members with mutual TLS exchange messages every way, in order across the queue's
// writer (with TLS the loop never writes directly), and a snapshot on a connection of its own;
// every inbound connection is a TLS connection that presented the sender's certificate.
func TestTLSMembersExchangeMessagesAndASnapshot(t *testing.T) {
	p := newPKI(t, "peers")
	ls := []net.Listener{listen(t), listen(t), listen(t)}
	peers := map[uint64]string{}
	for i, l := range ls {
		peers[uint64(i+1)] = l.Addr().String()
	}
	allowed := []string{"m1", "m2", "m3"}
	ra := &snapRecorder{peerRecorder: newRecorder(), reports: make(chan snapReport, 16)}
	a := New(Config{ClusterID: "test", SelfID: 1, Peers: peers, Listener: ls[0], SnapshotDir: t.TempDir(),
		TLS: p.member(t, testpki.Member, "m1", "m1", allowed...)}, ra)
	a.Start()
	t.Cleanup(a.Stop)
	b, rb := startMember(t, Config{SelfID: 2, Peers: peers, Listener: ls[1], TLS: p.member(t, testpki.Member, "m2", "m2", allowed...)})
	c, rc := startMember(t, Config{SelfID: 3, Peers: peers, Listener: ls[2], TLS: p.member(t, testpki.Member, "m3", "m3", allowed...)})
	trs := map[uint64]*Transport{1: a, 2: b, 3: c}
	recs := map[uint64]*peerRecorder{1: ra.peerRecorder, 2: rb, 3: rc}
	for from := range trs {
		for to := range trs {
			if from != to {
				sendUntilReceived(t, "a message passes", trs[from], from, to, recs[to])
			}
		}
	}
	for id, tr := range trs {
		for from := range trs {
			if names, allTLS := inboundCerts(tr, from); from != id && (!allTLS || len(names) == 0 || names[0] != fmt.Sprintf("m%d", from)) {
				t.Fatalf("raft id %d's connections from raft id %d: certificates %q, all TLS %v", id, from, names, allTLS)
			}
		}
	}

	// In order, whether Send flushed at once or Flush handed them to the writer.
	const n = 3000
	data := make([]byte, 300)
	for i := uint64(0); i < n; i++ {
		m := appMsg(i, data)
		if commitOnly(i) {
			m.Entries = nil
		}
		a.Send([]*pb.Message{m})
		if i%11 == 0 {
			a.Flush()
		}
	}
	a.Flush()
	deadline := time.After(20 * time.Second)
	for want := range uint64(n) {
		select {
		case m := <-rb.msgs:
			if m.GetFrom() != 1 {
				want-- // a heartbeat of the exchange above
				continue
			}
			if m.GetType() != pb.MsgApp || m.GetIndex() != want {
				t.Fatalf("message %d arrived as %s index %d", want, m.GetType(), m.GetIndex())
			}
		case <-deadline:
			t.Fatalf("received %d of %d messages", want, n)
		}
	}

	// A snapshot, on a connection of its own, through TLS too.
	a.Send([]*pb.Message{snapTo(3)})
	select {
	case r := <-ra.reports:
		if r != (snapReport{3, true}) {
			t.Fatalf("snapshot report %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot report")
	}
	if sent, failed := a.SnapshotsSent(); sent != 1 || failed != 0 {
		t.Fatalf("snapshots sent %d, failed %d", sent, failed)
	}
	for _, tr := range trs {
		if n := tr.Rejected(); n != 0 {
			t.Fatalf("raft id %d rejected %d connections between members", tr.cfg.SelfID, n)
		}
	}
}

// Intruders at a TLS member port — a member of another CA, a client's certificate of the same
// CA, a member's certificate without an allowed name, a member without TLS, a TLS client with
// no certificate — are each refused at the TLS handshake, with the reason in the acceptor's log
// (and in the dialler's, for those that are members), and counted; the members keep exchanging
// messages. Every intruder claims the raft id of a real peer: without TLS its handshake would be
// accepted.
func TestTLSRefusesStrangersWithTheirReason(t *testing.T) {
	p := newPKI(t, "peers")
	other := newPKI(t, "other")
	allowed := []string{"m1", "m2", "m2-other", "intruder-client"}
	var la logBuffer
	lna, lnb := listen(t), listen(t)
	peers := map[uint64]string{1: lna.Addr().String(), 2: lnb.Addr().String()}
	a, ra := startMember(t, Config{SelfID: 1, Peers: peers, Listener: lna, Logger: la.logger(), tlsLogEvery: time.Nanosecond,
		TLS: p.member(t, testpki.Member, "m1", "m1", allowed...)})
	b, rb := startMember(t, Config{SelfID: 2, Peers: peers, Listener: lnb, TLS: p.member(t, testpki.Member, "m2", "m2", allowed...)})
	sendUntilReceived(t, "1 reaches 2", a, 1, 2, rb)
	sendUntilReceived(t, "2 reaches 1", b, 2, 1, ra)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("raft id 1's log:\n%s", la.String())
		}
	})

	for _, tc := range []struct {
		name string
		tls  *tlsconf.Member
		// acceptor: in raft id 1's log; dialler: in the intruder's
		acceptor, dialler string
	}{
		{"a member of another CA", other.member(t, testpki.Member, "m2-other", "m2"),
			"TLS handshake failed: the other end refused this member's certificate (remote error: tls: bad certificate)",
			"the certificate is not signed by the peer CA"},
		{"a client's certificate of the same CA", p.member(t, testpki.Client, "intruder-client", "client"),
			`TLS handshake failed: certificate \"intruder-client\" is not a member's: a member certificate must allow both serverAuth and clientAuth`,
			"the peer refused this member's certificate (remote error: tls: bad certificate)"},
		{"a member's certificate without an allowed name", p.member(t, testpki.Member, "m9", "m9"),
			`TLS handshake failed: certificate \"m9\" carries none of the allowed peer names`,
			"the peer refused this member's certificate"},
		{"a member without TLS", nil,
			"plaintext on a TLS member port: the connection began with a Tandem frame, not a TLS handshake",
			"the peer closed the connection without answering the handshake"},
	} {
		rejected := a.Rejected()
		var li logBuffer
		// The intruder claims raft id 2, and dials raft id 1 at its port.
		li2 := listen(t)
		intruder, _ := startMember(t, Config{SelfID: 2, Peers: map[uint64]string{1: lna.Addr().String(), 2: li2.Addr().String()},
			Listener: li2, Logger: li.logger(), TLS: tc.tls})
		intruder.Send([]*pb.Message{msgFrom(2, 1)})
		waitFor(t, tc.name+": raft id 1 logs "+tc.acceptor, func() bool { return strings.Contains(la.String(), tc.acceptor) })
		waitFor(t, tc.name+": the intruder logs "+tc.dialler, func() bool { return strings.Contains(li.String(), tc.dialler) })
		if a.Rejected() <= rejected {
			t.Fatalf("%s: not counted as rejected", tc.name)
		}
		intruder.Stop()
		// Raft id 1's connections from "raft id 2" are all the real one's.
		if names, allTLS := inboundCerts(a, 2); !allTLS || len(names) > 1 || len(names) == 1 && names[0] != "m2" {
			t.Fatalf("%s: raft id 1's connections from raft id 2 presented %q (all TLS: %v)", tc.name, names, allTLS)
		}
		sendUntilReceived(t, tc.name+": 1 still reaches 2", a, 1, 2, rb)
		sendUntilReceived(t, tc.name+": 2 still reaches 1", b, 2, 1, ra)
	}

	// TLS clients that verify nothing themselves: one with no certificate, one with another
	// CA's member certificate (so that the acceptor, not the dialler, finds the CA foreign).
	stranger := other.ca.Issue(t, testpki.Member, "stranger", nil)
	strangerCert, err := tls.X509KeyPair(stranger.CertPEM, stranger.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, acceptor string
		certs          []tls.Certificate
	}{
		{"no certificate", "TLS handshake failed: tls: client didn't provide a certificate", nil},
		{"another CA's certificate, presented", "TLS handshake failed: the certificate is not signed by the peer CA", []tls.Certificate{strangerCert}},
	} {
		cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
		if tc.certs != nil {
			// Presented even though the acceptor names another CA as acceptable (Go's client
			// would otherwise present none).
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc.certs[0], nil }
		}
		conn, err := tls.Dial("tcp", lna.Addr().String(), cfg)
		if err == nil {
			// TLS 1.3: the refusal comes with the first read.
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil {
			t.Fatalf("%s: accepted", tc.name)
		}
		waitFor(t, tc.name+": raft id 1 logs "+tc.acceptor, func() bool { return strings.Contains(la.String(), tc.acceptor) })
	}
	sendUntilReceived(t, "1 still reaches 2", a, 1, 2, rb)
	sendUntilReceived(t, "2 still reaches 1", b, 2, 1, ra)
}

// Bytes that are not a TLS handshake are named as what they are; a TLS failure's line is
// limited per remote host (one host's flood does not hide another's first line: ratelog.Keyed),
// and each failure is counted.
func TestTLSPlaintextIsNamedAndLoggedPerRemoteHost(t *testing.T) {
	p := newPKI(t, "peers")
	var la logBuffer
	lna := listen(t)
	a, _ := startMember(t, Config{SelfID: 1, Peers: map[uint64]string{1: lna.Addr().String()}, Listener: lna,
		Logger: la.logger(), TLS: p.member(t, testpki.Member, "m1", "m1")})
	send := func(from string, b []byte) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		conn, err := d.Dial("tcp", lna.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write(b)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("from %s: the connection was not closed (%v)", from, err)
		}
	}
	hs := wire.AppendFrame(nil, wire.FrameHandshake, wire.AppendHandshake(nil, &wire.Handshake{ClusterID: "test", SenderID: 2,
		ReceiverID: 1, Protocol: wire.MemberProtocol}))
	send("127.0.0.1", hs)
	send("127.0.0.1", []byte("GET / HTTP/1.1\r\n\r\n"))
	send("127.0.0.2", []byte("GET / HTTP/1.1\r\n\r\n"))
	waitFor(t, "three rejected", func() bool { return a.Rejected() == 3 })
	out := la.String()
	if !strings.Contains(out, "plaintext on a TLS member port: the connection began with a Tandem frame") {
		t.Fatalf("the Tandem handshake in plaintext is not named:\n%s", out)
	}
	lines := strings.Count(out, "plaintext on a TLS member port")
	if lines != 2 || !strings.Contains(out, `plaintext on a TLS member port: the connection began with \"GET /\"`) ||
		!strings.Contains(out, "remote=127.0.0.2:") {
		t.Fatalf("want one line for 127.0.0.1 (the second held back) and one for 127.0.0.2:\n%s", out)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// Connections that stall in their TLS handshake cost those connections only: the accept loop
// goes on, a member's handshake meanwhile completes at once, and each stalled one is closed
// after handshakeTimeout.
func TestTLSStalledHandshakesCostOnlyTheirConnections(t *testing.T) {
	p := newPKI(t, "peers")
	lna := listen(t)
	a, _ := startMember(t, Config{SelfID: 1, Peers: map[uint64]string{1: lna.Addr().String()}, Listener: lna,
		TLS: p.member(t, testpki.Member, "m1", "m1")})
	var stalled []net.Conn
	for range 8 {
		c, err := net.Dial("tcp", lna.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
		_, _ = c.Write([]byte{22, 3, 1}) // the start of a record, and no more
	}
	m2 := p.member(t, testpki.Member, "m2", "m2")
	start := time.Now()
	conn, err := tls.Dial("tcp", lna.Addr().String(), m2.Client(lna.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a member's TLS handshake took %s behind stalled ones", d)
	}
	for _, c := range stalled {
		_ = c.SetReadDeadline(time.Now().Add(handshakeTimeout + 10*time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("a stalled connection was not closed after handshakeTimeout (%v)", err)
		}
		c.Close()
	}
	// (The member's TLS connection, closed without a Tandem handshake, is one more.)
	if n := a.Rejected(); n != len(stalled)+1 {
		t.Fatalf("Rejected() = %d, want %d", n, len(stalled)+1)
	}
}

// A reload of a member's certificate files reaches the connections made after it, in both
// directions (no session of the old material is resumed), while the connections open before it
// stay up and keep carrying messages.
func TestTLSReloadReachesNewConnectionsOnly(t *testing.T) {
	p := newPKI(t, "peers")
	lna, lnb := listen(t), listen(t)
	peers := map[uint64]string{1: lna.Addr().String(), 2: lnb.Addr().String()}
	ma := p.member(t, testpki.Member, "m1-first", "m1")
	a, ra := startMember(t, Config{SelfID: 1, Peers: peers, Listener: lna, TLS: ma})
	b, rb := startMember(t, Config{SelfID: 2, Peers: peers, Listener: lnb, TLS: p.member(t, testpki.Member, "m2", "m2")})
	sendUntilReceived(t, "1 reaches 2", a, 1, 2, rb)
	sendUntilReceived(t, "2 reaches 1", b, 2, 1, ra)
	before := authedConns(b, 1)
	if names, _ := inboundCerts(b, 1); len(names) != 1 || names[0] != "m1-first" {
		t.Fatalf("2's connection from 1 presented %q", names)
	}

	p.ca.Issue(t, testpki.Member, "m1-second", nil).Write(t, p.dir, "m1")
	if changed, err := ma.Source.Reload(); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	// The open connection stays, and carries on.
	sendUntilReceived(t, "1 still reaches 2 on its connection", a, 1, 2, rb)
	if now := authedConns(b, 1); len(now) != 1 || now[0] != before[0] {
		t.Fatal("the connection open before the reload was replaced")
	}
	// A new connection (the old one dropped: 1 dials again) presents the new certificate.
	b.DropInbound(1)
	waitFor(t, "1 dials 2 again with its new certificate", func() bool {
		a.Send([]*pb.Message{msgFrom(1, 2)})
		a.Flush()
		names, _ := inboundCerts(b, 1)
		return len(names) == 1 && names[0] == "m1-second"
	})
	// And 1 serves new connections with it: a dialler with a fresh session cache, and raft id
	// 2's own material, whose cache holds a session of the old certificate.
	m2 := p.member(t, testpki.Member, "m2", "m2-again")
	for _, cfg := range []*tls.Config{m2.Client(addrOf(a)), b.cfg.TLS.Client(addrOf(a))} {
		conn, err := tls.Dial("tcp", addrOf(a), cfg)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = conn.Read(make([]byte, 1)) // takes in the session tickets
		st := conn.ConnectionState()
		conn.Close()
		if cn := st.PeerCertificates[0].Subject.CommonName; cn != "m1-second" || st.DidResume {
			t.Fatalf("1 served a new connection with %q (resumed: %v)", cn, st.DidResume)
		}
	}
}

// authedConns returns tr's authenticated inbound connections from raft id id.
func authedConns(tr *Transport, id uint64) []net.Conn {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []net.Conn
	for c, p := range tr.authed {
		if p.id == id {
			out = append(out, c)
		}
	}
	return out
}

// A member with TLS that dials a plaintext member port is told apart there by its first bytes,
// and each side says why the connection failed.
func TestTLSHandshakeOnAPlaintextPortIsNamed(t *testing.T) {
	p := newPKI(t, "peers")
	var la, lb logBuffer
	lna, lnb := listen(t), listen(t)
	peers := map[uint64]string{1: lna.Addr().String(), 2: lnb.Addr().String()}
	a, _ := startMember(t, Config{SelfID: 1, Peers: peers, Listener: lna, Logger: la.logger(), TLS: p.member(t, testpki.Member, "m1", "m1")})
	startMember(t, Config{SelfID: 2, Peers: peers, Listener: lnb, Logger: lb.logger()})
	a.Send([]*pb.Message{msgFrom(1, 2)})
	waitFor(t, "the plaintext member names the TLS handshake", func() bool {
		return strings.Contains(lb.String(), "a TLS handshake on a plaintext member port: the other end has peer TLS configured, this member has none")
	})
	waitFor(t, "the TLS member says the peer closed the connection during its handshake", func() bool {
		return strings.Contains(la.String(), "the peer closed the connection during the TLS handshake: it refused it (see its log), or its member port does not use TLS")
	})
}
