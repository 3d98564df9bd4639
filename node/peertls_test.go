package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/tandem-cluster/tandem/internal/testpki"
)

// peerPKI is a peer CA for a test's cluster, its files in dir.
type peerPKI struct {
	dir    string
	ca     *testpki.CA
	caFile string
}

func newPeerPKI(t *testing.T) *peerPKI {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "peers")
	return &peerPKI{dir: dir, ca: ca, caFile: ca.WriteCA(t, dir, "ca.crt")}
}

// tune gives each member a member certificate of the CA, named member-<id> (and 127.0.0.1,
// localhost, where the tests' members listen), as newCluster's tune.
func (p *peerPKI) tune(t *testing.T) func(*Config) {
	return func(cfg *Config) {
		c := p.ca.Issue(t, testpki.Member, fmt.Sprintf("member-%d", cfg.ID), nil).Write(t, p.dir, fmt.Sprintf("member-%d", cfg.ID))
		cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerCAFile = c.CertFile, c.KeyFile, p.caFile
	}
}

// dialer returns a dial that connects through TLS with cert (nil: none) and checks nothing of
// the member's certificate: an attacker's.
func (p *peerPKI) dialer(t *testing.T, cert *testpki.Cert) func(*testing.T, string) net.Conn {
	return p.dialerFrom(t, cert, nil)
}

// dialerFrom is dialer from source address from (nil: any): a member limits its lines about
// failed TLS handshakes per remote host, and attacks from one host within seconds of each other
// would be logged as one.
func (p *peerPKI) dialerFrom(t *testing.T, cert *testpki.Cert, from net.IP) func(*testing.T, string) net.Conn {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		// Presented whatever CAs the member names as acceptable.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return func(t *testing.T, addr string) net.Conn {
		t.Helper()
		d := &net.Dialer{}
		if from != nil {
			d.LocalAddr = &net.TCPAddr{IP: from}
		}
		conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
}

// plainFrom dials over TCP from source address from.
func plainFrom(from net.IP) func(*testing.T, string) net.Conn {
	return func(t *testing.T, addr string) net.Conn {
		t.Helper()
		conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: from}}).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
}

// The member port's hostile inputs, sent by an attacker holding a valid member certificate
// (same CA, both usages) after its TLS handshake, meet the same checks as on a plaintext port;
// and attackers without one — plaintext garbage, a plaintext Tandem handshake, TLS without a
// certificate, with a client's certificate of the same CA, with another CA's member
// certificate — are refused at the TLS handshake with the reason in the member's log. Nothing
// changes: the leader and term stay, the cluster keeps serving.
func TestHostileInputOnTLSMemberPort(t *testing.T) {
	t.Parallel()
	p := newPeerPKI(t)
	c := newCluster(t, 3, p.tune(t))
	attacker := p.ca.Issue(t, testpki.Member, "attacker", nil)
	hostileInputOnMemberPort(t, c, p.dialer(t, attacker), func(l int) {
		addr, logs := c.members[l].cfg.Members[l].MemberAddr, c.members[l].logs
		garbage := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		plain := append(handshake("tandem", uint64((l+1)%3+1), uint64(l+1)),
			raftFrame(&pb.Message{Type: pb.MsgVote.Enum(), From: new(uint64((l+1)%3 + 1)), To: new(uint64(l + 1)), Term: new(uint64(1000))})...)
		// Each from a loopback address of its own: the member logs one line per remote host
		// every few seconds.
		from := func(i byte) net.IP { return net.IPv4(127, 0, 0, 10+i) }
		for _, a := range []struct {
			name   string
			dial   func(*testing.T, string) net.Conn
			bytes  []byte
			reason string
		}{
			{"plaintext garbage", plainFrom(from(0)), garbage, `plaintext on a TLS member port: the connection began with \"GET /\"`},
			{"a plaintext handshake and vote", plainFrom(from(1)), plain, "plaintext on a TLS member port: the connection began with a Tandem frame"},
			{"TLS without a certificate", p.dialerFrom(t, nil, from(2)), plain, "TLS handshake failed: tls: client didn't provide a certificate"},
			{"a client's certificate", p.dialerFrom(t, p.ca.Issue(t, testpki.Client, "a-client", nil), from(3)), plain,
				`TLS handshake failed: certificate \"a-client\" is not a member's`},
			{"another CA's member certificate", p.dialerFrom(t, testpki.NewCA(t, "other").Issue(t, testpki.Member, "stranger", nil), from(4)), plain,
				"TLS handshake failed: the certificate is not signed by the peer CA"},
		} {
			attackVia(t, func(t *testing.T, addr string) net.Conn {
				conn := a.dial(t, addr)
				if tc, ok := conn.(*tls.Conn); ok {
					// TLS 1.3: the member's verdict on the certificate comes after the
					// dialler's handshake; it closes the connection on it.
					_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				}
				return conn
			}, addr, a.bytes, false, logs, a.name, a.reason)
		}
	})
}

// The forged raft frames are refused as on a plaintext port when an attacker with a valid member
// certificate sends them through TLS.
func TestForgedRaftFramesAreRefusedOnTLSMemberPort(t *testing.T) {
	t.Parallel()
	p := newPeerPKI(t)
	forgedRaftFramesAreRefused(t, newCluster(t, 3, p.tune(t)), p.dialer(t, p.ca.Issue(t, testpki.Member, "attacker", nil)))
}

// Members with TLS on the member port elect a leader and serve; a member's renewed certificate
// is loaded without a restart and served to new connections; a renewal that does not load is
// logged and the certificate loaded before stays in use; the cluster serves throughout.
func TestPeerCertificateReloadedWithoutRestart(t *testing.T) {
	t.Parallel()
	p := newPeerPKI(t)
	c := newCluster(t, 3, p.tune(t))
	c.opts = func(int) []Option { return []Option{withPeerCertPoll(20 * time.Millisecond)} }
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dial(ctx)
	v := inc(ctx, t, cl)
	m := c.members[0]
	if !strings.Contains(m.logs.String(), `msg="member port: mutual TLS"`) {
		t.Fatalf("no line about the member port's TLS:\n%s", m.logs.String())
	}
	served := func() string {
		t.Helper()
		// (No certificate: the member refuses the connection, having shown its own.)
		conn, err := tls.Dial("tcp", m.cfg.Members[0].MemberAddr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := served(); cn != "member-0" {
		t.Fatalf("member 0 serves %q", cn)
	}

	p.ca.Issue(t, testpki.Member, "member-0-renewed", nil).Write(t, p.dir, "member-0")
	waitLog(t, m, `msg="peer certificate reloaded: new member connections use it"`, "subject=member-0-renewed")
	if cn := served(); cn != "member-0-renewed" {
		t.Fatalf("after the reload member 0 serves %q", cn)
	}
	v2 := inc(ctx, t, cl)

	// A half-written renewal: the old pair stays in use.
	if err := os.WriteFile(m.cfg.PeerCertFile, []byte("-----BEGIN CERTIFICATE-----\ntruncated"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitLog(t, m, `msg="peer certificate reload failed; the certificate loaded before stays in use"`)
	if cn := served(); cn != "member-0-renewed" {
		t.Fatalf("after a failed reload member 0 serves %q", cn)
	}
	if v3 := inc(ctx, t, cl); v2 != v+1 || v3 != v2+1 {
		t.Fatalf("counter %d, %d, %d", v, v2, v3)
	}
	// A good renewal ends the failure; a client's certificate in its place is refused too (the
	// first failure after a success is logged again).
	p.ca.Issue(t, testpki.Member, "member-0-third", nil).Write(t, p.dir, "member-0")
	waitLog(t, m, `msg="peer certificate reloaded: new member connections use it"`, "subject=member-0-third")
	p.ca.Issue(t, testpki.Client, "member-0-client", nil).Write(t, p.dir, "member-0")
	waitLog(t, m, `msg="peer certificate reload failed; the certificate loaded before stays in use"`, "is not a member's")
	if cn := served(); cn != "member-0-third" {
		t.Fatalf("after a refused reload member 0 serves %q", cn)
	}
}

// waitLog waits (10 s at most) for a line of m's log holding every one of parts.
func waitLog(t *testing.T, m *member, parts ...string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		for _, line := range strings.Split(m.logs.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in 10 s:\n%s", parts, m.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Validate checks the member port's TLS settings and what their files hold, each mistake a
// *FieldError naming the field.
func TestValidatePeerTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "peers")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	member := ca.Issue(t, testpki.Member, "member-0", nil).Write(t, dir, "member")
	client := ca.Issue(t, testpki.Client, "client", nil).Write(t, dir, "client")
	other := testpki.NewCA(t, "other").Issue(t, testpki.Member, "stranger", nil).Write(t, dir, "stranger")
	elsewhere := ca.Issue(t, testpki.Member, "elsewhere", nil, "10.1.2.3").Write(t, dir, "elsewhere")
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func(c *Config) { c.PeerCertFile, c.PeerKeyFile, c.PeerCAFile = member.CertFile, member.KeyFile, caFile }
	for _, tc := range []struct {
		set   func(c *Config)
		field string
		want  string
	}{
		{func(c *Config) { base(c); c.PeerKeyFile = "" }, "PeerKeyFile", `PeerKeyFile is empty: PeerCertFile ("` + member.CertFile + `") needs its key`},
		{func(c *Config) { base(c); c.PeerCertFile = "" }, "PeerCertFile", "PeerCertFile is empty: TLS on the member port needs this member's certificate"},
		{func(c *Config) { base(c); c.PeerCAFile = "" }, "PeerCAFile", "PeerCAFile is empty: TLS on the member port needs the CA that signs the members' certificates"},
		{func(c *Config) { c.PeerAllowedNames = []string{"a"} }, "PeerAllowedNames", "PeerAllowedNames ([a]) given without TLS on the member port"},
		{func(c *Config) { base(c); c.PeerCAFile = filepath.Join(dir, "missing.crt") }, "PeerCAFile", "missing.crt\"): no such file or directory"},
		{func(c *Config) { base(c); c.PeerCAFile = junk }, "PeerCAFile", "holds no PEM certificate"},
		{func(c *Config) { base(c); c.PeerKeyFile = client.KeyFile }, "PeerCertFile", "private key does not match public key"},
		{func(c *Config) { base(c); c.PeerCertFile, c.PeerKeyFile = client.CertFile, client.KeyFile }, "PeerCertFile", `certificate "client" is not a member's`},
		{func(c *Config) { base(c); c.PeerCertFile, c.PeerKeyFile = other.CertFile, other.KeyFile }, "PeerCertFile", "is not signed by a CA of PeerCAFile"},
		{func(c *Config) { base(c); c.PeerCertFile, c.PeerKeyFile = elsewhere.CertFile, elsewhere.KeyFile }, "PeerCertFile",
			`does not name "127.0.0.1", the host of this member's advertised member address`},
		{func(c *Config) { base(c); c.PeerAllowedNames = []string{"member-1", "member-2"} }, "PeerCertFile",
			"carries none of PeerAllowedNames ([member-1 member-2]), so the peers would refuse it"},
	} {
		cfg := DefaultConfig()
		cfg.Members, cfg.DataDir = LocalCluster(3), "d"
		tc.set(&cfg)
		err := cfg.Validate()
		var fe *FieldError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("Validate() = %v (field %v), want %s: %q", err, fe, tc.field, tc.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Members, cfg.DataDir = LocalCluster(3), "d"
	base(&cfg)
	cfg.PeerAllowedNames = []string{"member-0", "member-1"}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
}
