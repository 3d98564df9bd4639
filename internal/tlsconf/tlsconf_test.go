package tlsconf

import (
	"crypto/tls"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/tandem-cluster/tandem/internal/testpki"
)

// handshake runs a TLS handshake between a server and a client config over a pipe and returns
// the server's and the client's errors.
func handshake(t *testing.T, server, client *tls.Config) (error, error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	errs := make(chan error, 1)
	go func() {
		a, err := l.Accept()
		if err != nil {
			errs <- err
			return
		}
		defer a.Close()
		errs <- tls.Server(a, server).Handshake()
	}()
	b, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cerr := tls.Client(b, client).Handshake()
	return <-errs, cerr
}

func member(t *testing.T, dir string, ca *testpki.CA, kind testpki.Kind, name string, allowed ...string) *Member {
	t.Helper()
	c := ca.Issue(t, kind, name, nil).Write(t, dir, name)
	s, err := Load(Files{Cert: c.CertFile, Key: c.KeyFile, CA: ca.WriteCA(t, dir, "ca-"+name+".crt")})
	if err != nil {
		t.Fatal(err)
	}
	return &Member{Source: s, Allowed: allowed}
}

func TestMemberMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "peers")
	other := testpki.NewCA(t, "other")
	m0 := member(t, dir, ca, testpki.Member, "m0")
	m1 := member(t, dir, ca, testpki.Member, "m1")
	if serr, cerr := handshake(t, m0.Server(), m1.Client("127.0.0.1:1")); serr != nil || cerr != nil {
		t.Fatalf("two members: server %v, client %v", serr, cerr)
	}
	// A client certificate of the same CA is refused on the member port.
	cl := member(t, dir, ca, testpki.Client, "client")
	if serr, _ := handshake(t, m0.Server(), cl.Client("127.0.0.1:1")); serr == nil || !strings.Contains(serr.Error(), "not a member's") {
		t.Fatalf("a client certificate: server %v", serr)
	}
	// A member certificate of another CA is refused, both ways.
	stranger := member(t, dir, other, testpki.Member, "stranger")
	if serr, _ := handshake(t, m0.Server(), stranger.Client("127.0.0.1:1")); serr == nil {
		t.Fatal("a certificate of another CA was accepted")
	}
	if _, cerr := handshake(t, stranger.Server(), m0.Client("127.0.0.1:1")); cerr == nil {
		t.Fatal("a server with a certificate of another CA was accepted by the dialler")
	}
	// The dialler checks the host it dialled.
	if _, cerr := handshake(t, m0.Server(), m1.Client("10.9.9.9:1")); cerr == nil {
		t.Fatal("a certificate for 127.0.0.1 was accepted for 10.9.9.9")
	}
	// Allowed names.
	strict := &Member{Source: m0.Source, Allowed: []string{"m9"}}
	if serr, _ := handshake(t, strict.Server(), m1.Client("127.0.0.1:1")); serr == nil || !strings.Contains(serr.Error(), "allowed peer names") {
		t.Fatalf("a name not allowed: %v", serr)
	}
	named := &Member{Source: m0.Source, Allowed: []string{"M1"}}
	if serr, cerr := handshake(t, named.Server(), m1.Client("127.0.0.1:1")); serr != nil || cerr != nil {
		t.Fatalf("an allowed name: server %v, client %v", serr, cerr)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "peers")
	c := ca.Issue(t, testpki.Member, "first", nil).Write(t, dir, "m")
	s, err := Load(Files{Cert: c.CertFile, Key: c.KeyFile, CA: ca.WriteCA(t, dir, "ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); changed || err != nil {
		t.Fatalf("reload of unchanged files: %v %v", changed, err)
	}
	ca.Issue(t, testpki.Member, "second", nil).Write(t, dir, "m")
	if changed, err := s.Reload(); !changed || err != nil {
		t.Fatalf("reload of new files: %v %v", changed, err)
	}
	if cn := s.Certificate().Leaf.Subject.CommonName; cn != "second" {
		t.Fatalf("after the reload the certificate is %q", cn)
	}
	// A half-written renewal (a key that does not match) keeps the old material.
	third := ca.Issue(t, testpki.Member, "third", nil)
	if err := os.WriteFile(c.CertFile, third.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); changed || err == nil {
		t.Fatalf("reload of a mismatched pair: %v %v", changed, err)
	}
	if cn := s.Certificate().Leaf.Subject.CommonName; cn != "second" {
		t.Fatalf("after a failed reload the certificate is %q", cn)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(Files{Cert: "x"}); err == nil {
		t.Fatal("a certificate without its key was taken")
	}
	if _, err := Load(Files{CA: dir + "/missing.crt"}); err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Fatalf("a missing CA file: %v", err)
	}
	junk := dir + "/junk.crt"
	_ = os.WriteFile(junk, []byte("not a certificate"), 0o600)
	if _, err := Load(Files{CA: junk}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a junk CA file: %v", err)
	}
}

// LoadMember takes a member's certificate only, at the start and at every reload: a renewal
// that installs a client's certificate is refused and the member's stays in use.
func TestLoadMemberTakesMemberCertificatesOnly(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "peers")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	if _, err := LoadMember(Files{Cert: "a.crt", Key: "a.key"}); err == nil || !strings.Contains(err.Error(), "peer CA") {
		t.Fatalf("no CA: %v", err)
	}
	cl := ca.Issue(t, testpki.Client, "client", nil).Write(t, dir, "client")
	if _, err := LoadMember(Files{Cert: cl.CertFile, Key: cl.KeyFile, CA: caFile}); err == nil || !strings.Contains(err.Error(), "not a member's") {
		t.Fatalf("a client certificate: %v", err)
	}
	m := ca.Issue(t, testpki.Member, "m0", nil).Write(t, dir, "m")
	s, err := LoadMember(Files{Cert: m.CertFile, Key: m.KeyFile, CA: caFile})
	if err != nil {
		t.Fatal(err)
	}
	ca.Issue(t, testpki.Server, "server-only", nil).Write(t, dir, "m")
	if changed, err := s.Reload(); changed || err == nil || !strings.Contains(err.Error(), "not a member's") {
		t.Fatalf("reload to a server-only certificate: %v %v", changed, err)
	}
	if cn := s.Certificate().Leaf.Subject.CommonName; cn != "m0" {
		t.Fatalf("after a refused reload the certificate is %q", cn)
	}
}

// exchange runs a handshake and one byte from server to client (which delivers the server's
// session tickets to the client) and reports whether the client resumed a session, and the
// common name of the certificate each side saw.
func exchange(t *testing.T, server, client *tls.Config) (resumed bool, serverSaw, clientSaw string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	saw := make(chan string, 1)
	go func() {
		a, err := l.Accept()
		if err != nil {
			saw <- err.Error()
			return
		}
		defer a.Close()
		s := tls.Server(a, server)
		if err := s.Handshake(); err != nil {
			saw <- err.Error()
			return
		}
		_, _ = s.Write([]byte{1})
		saw <- s.ConnectionState().PeerCertificates[0].Subject.CommonName
		_, _ = s.Read(make([]byte, 1)) // until the client closes
	}()
	b, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := tls.Client(b, client)
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	st := c.ConnectionState()
	return st.DidResume, <-saw, st.PeerCertificates[0].Subject.CommonName
}

// A redial resumes its session while the material stays; after a reload on either side, the
// next connection makes a full handshake and presents the new certificate: a resumed session
// would carry the old one's on.
func TestReloadEndsResumption(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "peers")
	m0 := member(t, dir, ca, testpki.Member, "m0")
	m1 := member(t, dir, ca, testpki.Member, "m1")
	if resumed, _, _ := exchange(t, m0.Server(), m1.Client("127.0.0.1:1")); resumed {
		t.Fatal("the first connection resumed")
	}
	if resumed, _, _ := exchange(t, m0.Server(), m1.Client("127.0.0.1:1")); !resumed {
		t.Fatal("a redial with unchanged material did not resume")
	}
	// The dialler's certificate is renewed.
	ca.Issue(t, testpki.Member, "m1-renewed", nil).Write(t, dir, "m1")
	if changed, err := m1.Source.Reload(); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if resumed, serverSaw, _ := exchange(t, m0.Server(), m1.Client("127.0.0.1:1")); resumed || serverSaw != "m1-renewed" {
		t.Fatalf("after the dialler's reload: resumed %v, the acceptor saw %q", resumed, serverSaw)
	}
	if resumed, _, _ := exchange(t, m0.Server(), m1.Client("127.0.0.1:1")); !resumed {
		t.Fatal("a redial after the reload's first connection did not resume")
	}
	// The acceptor's certificate is renewed.
	ca.Issue(t, testpki.Member, "m0-renewed", nil).Write(t, dir, "m0")
	if changed, err := m0.Source.Reload(); !changed || err != nil {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if resumed, _, clientSaw := exchange(t, m0.Server(), m1.Client("127.0.0.1:1")); resumed || clientSaw != "m0-renewed" {
		t.Fatalf("after the acceptor's reload: resumed %v, the dialler saw %q", resumed, clientSaw)
	}
}
