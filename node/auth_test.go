package node

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-cluster/tandem/client"
	"github.com/tandem-cluster/tandem/examples/counter"
	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/testpki"
	"github.com/tandem-cluster/tandem/internal/tlsconf"
	"github.com/tandem-cluster/tandem/internal/wire"
)

// securedFiles are the files of a cluster whose client port is secured: a CA, the members'
// server certificate, and a token file.
type securedFiles struct {
	dir    string
	ca     *testpki.CA
	caFile string
	server *testpki.Cert
	tokens string
}

const (
	tokenAdmin  = "admin-token-0123456789abcdef"
	tokenWriter = "writer-token-0123456789abcdef"
	tokenReader = "reader-token-0123456789abcdef"
)

func newSecuredFiles(t *testing.T) *securedFiles {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "tandem test CA")
	f := &securedFiles{dir: dir, ca: ca, caFile: ca.WriteCA(t, dir, "ca.crt"),
		server: ca.Issue(t, testpki.Server, "tandem member", nil).Write(t, dir, "server"),
		tokens: filepath.Join(dir, "tokens")}
	f.writeTokens(t, tokenAdmin+" ops admin\n"+tokenWriter+" app write\n# a comment\n\n"+tokenReader+" dashboard read\n")
	return f
}

func (f *securedFiles) writeTokens(t *testing.T, text string) {
	t.Helper()
	tmp := f.tokens + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.tokens); err != nil {
		t.Fatal(err)
	}
}

func (f *securedFiles) tune(cfg *Config) {
	cfg.TLSCertFile, cfg.TLSKeyFile = f.server.CertFile, f.server.KeyFile
	cfg.ClientCAFile, cfg.AuthTokensFile = f.caFile, f.tokens
}

// clientTLS is a client's TLS configuration trusting the test CA, with a client certificate of
// cn and roles if cn is not empty.
func (f *securedFiles) clientTLS(t *testing.T, cn string, roles ...string) *tls.Config {
	t.Helper()
	files := tlsconf.Files{CA: f.caFile}
	if cn != "" {
		c := f.ca.Issue(t, testpki.Client, cn, roles).Write(t, f.dir, "client-"+cn)
		files.Cert, files.Key = c.CertFile, c.KeyFile
	}
	cfg, err := tlsconf.Dial(files)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// dialErr dials the cluster expecting a failure, and returns it with how long Dial took.
func dialErr(t *testing.T, c *cluster, cfg client.Config) (error, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg.Endpoints = c.clients
	start := time.Now()
	cl, err := client.Dial(ctx, cfg)
	if err == nil {
		cl.Close()
		t.Fatal("Dial succeeded")
	}
	return err, time.Since(start)
}

// A cluster whose client port takes TLS, client certificates and tokens: each credential gets
// its principal's rights, and every refusal is final and fast.
func TestSecuredClientPort(t *testing.T) {
	t.Parallel()
	f := newSecuredFiles(t)
	c := newCluster(t, 3, f.tune)
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A client certificate of role write: commands and queries.
	alice := c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, "alice", "write")})
	if v := inc(ctx, t, alice); v != 1 {
		t.Fatalf("alice's increment: %d", v)
	}
	// A token of role write, over TLS without a client certificate.
	app := c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, ""), Token: tokenWriter})
	if v := inc(ctx, t, app); v != 2 {
		t.Fatalf("the app's increment: %d", v)
	}
	// A token of role read: queries yes, commands denied (final, not applied).
	ro := c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, ""), Token: tokenReader})
	if _, err := ro.Query(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpGet})); err != nil {
		t.Fatalf("a reader's query: %v", err)
	}
	_, err := ro.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement}))
	if !errors.Is(err, client.ErrDenied) || !errors.Is(err, client.ErrNotApplied) || !strings.Contains(err.Error(), "dashboard") {
		t.Fatalf("a reader's command: %v, want ErrDenied and ErrNotApplied naming the principal", err)
	}
	// A certificate with no role: nothing.
	nobody := c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, "nobody")})
	if _, err := nobody.Query(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpGet})); !errors.Is(err, client.ErrDenied) {
		t.Fatalf("a query without a role: %v", err)
	}

	// Refusals: final, typed, and well within the caller's deadline (no retry loop).
	for _, tc := range []struct {
		name string
		cfg  client.Config
		want string
	}{
		{"an unknown token", client.Config{TLS: f.clientTLS(t, ""), Token: "not-a-token-0123456789"}, "not known"},
		{"no credential", client.Config{TLS: f.clientTLS(t, "")}, "authenticates its clients"},
		{"plaintext to a TLS port", client.Config{Token: tokenWriter}, "this port speaks TLS"},
		{"a member whose certificate the client does not trust", client.Config{TLS: func() *tls.Config {
			other := testpki.NewCA(t, "another CA")
			cfg, _ := tlsconf.Dial(tlsconf.Files{CA: other.WriteCA(t, t.TempDir(), "other.crt")})
			return cfg
		}(), Token: tokenWriter}, "not trusted"},
		{"a client certificate of another CA", client.Config{TLS: func() *tls.Config {
			other := testpki.NewCA(t, "another CA")
			cc := other.Issue(t, testpki.Client, "mallory", []string{"admin"}).Write(t, t.TempDir(), "mallory")
			cfg, _ := tlsconf.Dial(tlsconf.Files{CA: f.caFile, Cert: cc.CertFile, Key: cc.KeyFile})
			return cfg
		}()}, "authenticates its clients"}, // (a certificate no CA the member names signed is not sent)
	} {
		err, took := dialErr(t, c, tc.cfg)
		if !errors.Is(err, client.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.want) || took > 5*time.Second {
			t.Errorf("%s: %v after %s, want ErrUnauthenticated saying %q at once", tc.name, err, took, tc.want)
		}
	}
	// Admin verbs: a writer may read the status, not suspend; the operator's token may.
	writer := admin.Options{TLS: f.clientTLS(t, ""), Token: tokenWriter}
	if _, st, err := admin.Call(ctx, c.clients, wire.AdminRequest{Op: wire.AdminListMembers}, writer); err != nil || st != wire.StatusOK {
		t.Fatalf("a writer's list-members: %v %v", st, err)
	}
	resp, st, err := admin.Call(ctx, c.clients, wire.AdminRequest{Op: wire.AdminSuspend}, writer)
	if err != nil || st != wire.StatusDenied || !strings.Contains(resp.Error, "app") {
		t.Fatalf("a writer's suspend: %v %+v %v, want denied naming the principal", st, resp, err)
	}
	ops := admin.Options{TLS: f.clientTLS(t, ""), Token: tokenAdmin}
	for _, op := range []string{wire.AdminSuspend, wire.AdminResume} {
		if resp, st, err := admin.Call(ctx, c.clients, wire.AdminRequest{Op: op}, ops); err != nil || st != wire.StatusOK {
			t.Fatalf("the operator's %s: %v %+v %v", op, st, resp, err)
		}
	}
	if _, _, err := admin.Call(ctx, c.clients, wire.AdminRequest{Op: wire.AdminListMembers},
		admin.Options{TLS: f.clientTLS(t, ""), Token: "not-a-token-0123456789"}); !errors.Is(err, admin.ErrUnauthenticated) {
		t.Fatalf("an admin request with a wrong token: %v", err)
	}
	if v := inc(ctx, t, alice); v != 3 {
		t.Fatalf("after the refusals the counter is %d, want 3", v)
	}
	for i, m := range c.members {
		if logs := m.logs.String(); strings.Contains(logs, "bad record MAC") {
			t.Fatalf("member %d read a corrupt TLS record:\n%s", i, logs)
		}
	}
}

// A token removed from the file loses its connections within the reload interval, and its
// client is refused when it reconnects; the other tokens' clients go on.
func TestRevokedTokenLosesItsConnections(t *testing.T) {
	t.Parallel()
	f := newSecuredFiles(t)
	c := newCluster(t, 3, f.tune)
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	app := c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, ""), Token: tokenWriter})
	admin := c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, ""), Token: tokenAdmin})
	inc(ctx, t, app)
	inc(ctx, t, admin)
	f.writeTokens(t, tokenAdmin+" ops admin\n")
	deadline := time.Now().Add(3 * credentialsReloadEvery)
	for {
		_, err := app.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement}))
		if errors.Is(err, client.ErrUnauthenticated) {
			break
		}
		if err != nil {
			t.Fatalf("a revoked token's command: %v, want ErrUnauthenticated", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked token still sends commands %s after the file changed", 3*credentialsReloadEvery)
		}
		time.Sleep(20 * time.Millisecond)
	}
	inc(ctx, t, admin)
	if err, _ := dialErr(t, c, client.Config{TLS: f.clientTLS(t, ""), Token: tokenWriter}); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("a new client with the revoked token: %v", err)
	}
	// A token file that cannot be read keeps the tokens loaded before.
	f.writeTokens(t, "short ops admin\n")
	time.Sleep(2 * credentialsReloadEvery) // (nothing to poll for: the member must not change)
	inc(ctx, t, c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, ""), Token: tokenAdmin}))
	if !strings.Contains(c.members[0].logs.String(), "reload failed") {
		t.Fatalf("no log line about the bad token file:\n%s", c.members[0].logs.String())
	}
}

// The hostile inputs of TestHostileInputOnClientPort, on a TLS port: sent in the clear, sent
// inside TLS before any credential, and sent by an authenticated client. Each costs only its
// connection.
func TestHostileInputOnTLSClientPort(t *testing.T) {
	t.Parallel()
	f := newSecuredFiles(t)
	c := newCluster(t, 3, f.tune)
	l, term := c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, "alice", "write")})
	before := inc(ctx, t, cl)
	huge := binary.LittleEndian.AppendUint32(nil, 1<<30)
	attacks := []struct {
		name, reason string
		bytes        []byte
	}{
		{"garbage", "reading", []byte("\x00\x01garbage garbage garbage garbage")},
		{"oversized", "frame too large", append(huge, 1, 5)},
		{"member frame on the client port", "unexpected frame kind", wire.AppendFrame(nil, wire.FrameRaft, []byte("x"))},
		{"unknown message kind", "bad request", wire.AppendFrame(nil, wire.FrameClient, []byte{wire.Version, 200})},
	}
	addr := c.clients[l]
	logs := c.members[l].logs
	// In the clear: the handshake fails.
	attack(t, addr, []byte("GET / HTTP/1.1\r\n\r\n"), false, logs, "plaintext", "plaintext (not TLS)")
	for _, who := range []struct {
		name string
		cfg  *tls.Config
	}{{"unauthenticated", f.clientTLS(t, "")}, {"authenticated", f.clientTLS(t, "mallory", "write")}} {
		for _, a := range attacks {
			conn, err := tls.Dial("tcp", addr, who.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(a.bytes); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, conn, who.name+" "+a.name)
			conn.Close()
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(logs.String(), a.reason) {
				if time.Now().After(deadline) {
					t.Fatalf("%s %s: no log line with %q", who.name, a.name, a.reason)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	// A connection that opens TLS and says nothing more is closed by the handshake deadline at
	// the latest; the port serves meanwhile.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if after := inc(ctx, t, cl); after != before+1 {
		t.Fatalf("counter went from %d to %d", before, after)
	}
	if nl, nt := c.leader(time.Second); nl != l || nt != term {
		t.Fatalf("leader/term changed from %d/%d to %d/%d", l, term, nl, nt)
	}
}

// A cluster secured on both ports: members prove themselves with one certificate each (it
// serves both ports), clients by certificate or token. A fourth member joins through the client
// ports with its member certificate (the role member), catches up and is promoted; it then
// serves authenticated clients like the others.
func TestFullySecuredClusterTakesAJoiner(t *testing.T) {
	t.Parallel()
	f := newSecuredFiles(t)
	memberCert := func(i int) *testpki.Cert {
		return f.ca.Issue(t, testpki.Member, fmt.Sprintf("member-%d", i), nil).Write(t, f.dir, fmt.Sprintf("member-%d", i))
	}
	secure := func(i int, cfg *Config) {
		mc := memberCert(i)
		cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerCAFile = mc.CertFile, mc.KeyFile, f.caFile
		cfg.TLSCertFile, cfg.TLSKeyFile = mc.CertFile, mc.KeyFile
		cfg.ClientCAFile, cfg.AuthTokensFile = f.caFile, f.tokens
	}
	c := newCluster(t, 3, nil)
	for i, m := range c.members {
		secure(i, &m.cfg)
	}
	c.startAll(15 * time.Second)
	c.waitMembershipVersion()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, "alice", "write")})
	inc(ctx, t, alice)
	j := c.addJoiner(3, false)
	secure(3, &c.members[j].cfg)
	c.start(j)
	c.waitMembers(0, []int{0, 1, 2, 3}, nil, "after the join")
	// The joiner serves an authenticated client as the others do (it redirects to the leader).
	ops := admin.Options{TLS: f.clientTLS(t, ""), Token: tokenAdmin}
	resp, st, err := admin.Call(ctx, []string{c.clients[j]}, wire.AdminRequest{Op: wire.AdminStatus}, ops)
	if err != nil || st != wire.StatusOK || resp.Status == nil || resp.Status.ID != 3 {
		t.Fatalf("the joiner's status: %v %v %+v", st, err, resp)
	}
	bob := c.dialWith(ctx, client.Config{Endpoints: nil, TLS: f.clientTLS(t, "bob", "write")})
	if v := inc(ctx, t, bob); v != 2 {
		t.Fatalf("bob's increment: %d, want 2", v)
	}
	// A member certificate is no client's: it may join, not send commands.
	mc := memberCert(9)
	mtls, err := tlsconf.Dial(tlsconf.Files{CA: f.caFile, Cert: mc.CertFile, Key: mc.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range c.members {
		if logs := m.logs.String(); strings.Contains(logs, "bad record MAC") {
			t.Fatalf("member %d read a corrupt TLS record:\n%s", i, logs)
		}
	}
	m9 := c.dialWith(ctx, client.Config{TLS: mtls})
	if _, err := m9.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})); !errors.Is(err, client.ErrDenied) {
		t.Fatalf("a member certificate's command: %v, want ErrDenied", err)
	}
}

// Config.Authorize replaces the roles with the application's rules: here only "ops" runs admin
// operations, alice may not send commands whatever her certificate says, and bob, with no role,
// may. With no credential configured, every connection is the anonymous principal, and the hook
// decides for it too.
func TestAuthorizeHook(t *testing.T) {
	t.Parallel()
	f := newSecuredFiles(t)
	hook := func(p Principal, r AuthRequest) error {
		switch {
		case r.Action == ActionAdmin:
			if p.Name == "ops" {
				return nil
			}
			return errors.New("only ops runs admin operations")
		case r.Action == ActionCommand && p.Name == "alice":
			return errors.New("alice is read-only today")
		}
		return nil
	}
	c := newCluster(t, 3, func(cfg *Config) { f.tune(cfg); cfg.Authorize = hook })
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// alice's certificate says write; the hook says otherwise, and wins.
	alice := c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, "alice", "write")})
	_, err := alice.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement}))
	if !errors.Is(err, client.ErrDenied) || !strings.Contains(err.Error(), "read-only today") {
		t.Fatalf("alice's command: %v, want the hook's refusal", err)
	}
	// bob has no role at all; the hook lets him write.
	bob := c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, "bob")})
	inc(ctx, t, bob)
	if _, st, err := admin.Call(ctx, c.clients, wire.AdminRequest{Op: wire.AdminSuspend},
		admin.Options{TLS: f.clientTLS(t, ""), Token: tokenWriter}); err != nil || st != wire.StatusDenied {
		t.Fatalf("app's suspend: %v %v, want denied", st, err)
	}

	// No credentials, a hook: the anonymous principal, judged by it.
	anon := newCluster(t, 3, func(cfg *Config) {
		cfg.Authorize = func(p Principal, r AuthRequest) error {
			if p.Method != "" || p.Name != "" {
				return fmt.Errorf("unexpected principal %v", p)
			}
			if r.Action == ActionCommand {
				return errors.New("this cluster takes no commands")
			}
			return nil
		}
	})
	anon.startAll(15 * time.Second)
	cl := anon.dial(ctx)
	if _, err := cl.Query(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpGet})); err != nil {
		t.Fatalf("an anonymous query: %v", err)
	}
	if _, err := cl.Send(ctx, counter.EncodeRequest(counter.Request{Op: counter.OpIncrement})); !errors.Is(err, client.ErrDenied) {
		t.Fatalf("an anonymous command: %v, want ErrDenied", err)
	}
}

// A member that takes client certificates only (no token file): a client without one, or with
// one of another CA, is refused at the TLS handshake, and ends at once with
// ErrUnauthenticated; a certificate the peer CA signed for a client (not a member's) does not
// log in on the client port, whatever its organizations claim.
func TestClientCertificatesOnly(t *testing.T) {
	t.Parallel()
	f := newSecuredFiles(t)
	peerCA := testpki.NewCA(t, "peer CA")
	peerCAFile := peerCA.WriteCA(t, f.dir, "peer-ca.crt")
	c := newCluster(t, 3, nil)
	for i, m := range c.members {
		mc := peerCA.Issue(t, testpki.Member, fmt.Sprintf("member-%d", i), nil).Write(t, f.dir, fmt.Sprintf("pm-%d", i))
		m.cfg.PeerCertFile, m.cfg.PeerKeyFile, m.cfg.PeerCAFile = mc.CertFile, mc.KeyFile, peerCAFile
		m.cfg.TLSCertFile, m.cfg.TLSKeyFile, m.cfg.ClientCAFile = f.server.CertFile, f.server.KeyFile, f.caFile
	}
	c.startAll(15 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inc(ctx, t, c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, "alice", "write")}))
	sneaky := peerCA.Issue(t, testpki.Client, "sneaky", []string{"admin"}).Write(t, f.dir, "sneaky")
	sneakyTLS, err := tlsconf.Dial(tlsconf.Files{CA: f.caFile, Cert: sneaky.CertFile, Key: sneaky.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		want string
	}{
		{"no certificate", f.clientTLS(t, ""), "refused the TLS handshake"},
		{"a client certificate of the peer CA", sneakyTLS, "not signed by the client CA"},
	} {
		err, took := dialErr(t, c, client.Config{TLS: tc.cfg})
		if !errors.Is(err, client.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.want) || took > 5*time.Second {
			t.Errorf("%s: %v after %s, want ErrUnauthenticated saying %q at once", tc.name, err, took, tc.want)
		}
	}
}

// One member serving its client port with a certificate the clients do not trust (a renewal
// gone wrong) cuts no client off: it is passed over for the others.
func TestOneUntrustedMemberIsPassedOver(t *testing.T) {
	t.Parallel()
	f := newSecuredFiles(t)
	c := newCluster(t, 3, f.tune)
	odd := testpki.NewCA(t, "another CA").Issue(t, testpki.Server, "odd", nil).Write(t, f.dir, "odd")
	c.members[0].cfg.TLSCertFile, c.members[0].cfg.TLSKeyFile = odd.CertFile, odd.KeyFile
	// Members 1 and 2 elect a leader first: a client cannot reach a leader it does not trust.
	c.start(1)
	c.start(2)
	c.leader(15 * time.Second)
	c.start(0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range 3 { // (the client starts at the untrusted member, or reaches it by a redirect)
		cl := c.dialWith(ctx, client.Config{TLS: f.clientTLS(t, "alice", "write")})
		inc(ctx, t, cl)
	}
}
