package auth

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/tandem-cluster/tandem/internal/testpki"
	"github.com/tandem-cluster/tandem/internal/wire"
)

func TestParseTokens(t *testing.T) {
	good := "# tokens\n\nadmin-token-0123456789 ops admin\n  reader-token-0123456789\tdash   read,write \nrotated-token-0123456789 ops admin\n"
	tk, err := ParseTokens([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if n, names := tk.Len(); n != 3 || names != 2 {
		t.Fatalf("%d tokens of %d names, want 3 of 2", n, names)
	}
	p, err := tk.Lookup([]byte("reader-token-0123456789"))
	if err != nil || p.Name != "dash" || strings.Join(p.Roles, ",") != "read,write" || p.Method != "token" {
		t.Fatalf("lookup: %+v %v", p, err)
	}
	if _, err := tk.Lookup([]byte("reader-token-012345678")); err != ErrUnknownToken {
		t.Fatalf("a wrong token: %v", err)
	}
	for _, bad := range []struct{ text, want string }{
		{"", "no token"},
		{"short ops admin\n", "line 1: the token is 5 characters"},
		{"admin-token-0123456789 ops\n", "line 1: want"},
		{"admin-token-0123456789 ops admin\nadmin-token-0123456789 other read\n", "line 2: the token of \"other\" appears again"},
		{"admin-token-0123456789 ops admin,\n", "an empty role"},
	} {
		_, err := ParseTokens([]byte(bad.text))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.text, err, bad.want)
		}
		if err != nil && strings.Contains(err.Error(), "admin-token") {
			t.Errorf("%q: the error shows the token: %v", bad.text, err)
		}
	}
	same, _ := ParseTokens([]byte(good))
	other, _ := ParseTokens([]byte("admin-token-0123456789 ops admin\n"))
	if !tk.Equal(same) || tk.Equal(other) {
		t.Fatal("Equal")
	}
}

func TestRoleBased(t *testing.T) {
	p := func(roles ...string) Principal { return Principal{Name: "x", Roles: roles, Method: "token"} }
	cases := []struct {
		p       Principal
		r       Request
		allowed bool
	}{
		{Principal{}, Request{Action: Admin, Op: wire.AdminShutdown}, true}, // anonymous: no authentication
		{p("admin"), Request{Action: Admin, Op: wire.AdminShutdown}, true},
		{p("write"), Request{Action: Command}, true},
		{p("write"), Request{Action: Admin, Op: wire.AdminStatus}, true},
		{p("write"), Request{Action: Admin, Op: wire.AdminSuspend}, false},
		{p("read"), Request{Action: Query}, true},
		{p("read"), Request{Action: Command}, false},
		{p("read"), Request{Action: Admin, Op: wire.AdminListMembers}, true},
		{p("member"), Request{Action: Admin, Op: wire.AdminJoin}, true},
		{p("member"), Request{Action: Admin, Op: wire.AdminRemoveMember}, false},
		{p("member"), Request{Action: Command}, false},
		{p(), Request{Action: Query}, false},
		{p("unknown"), Request{Action: Query}, false},
	}
	for _, c := range cases {
		err := RoleBased(c.p, c.r)
		if (err == nil) != c.allowed {
			t.Errorf("%v %v: %v, want allowed %v", c.p.Roles, c.r, err, c.allowed)
		}
		if err != nil && !strings.Contains(err.Error(), "role") {
			t.Errorf("the refusal does not say why: %v", err)
		}
	}
	g := GrantOf(p("read"), RoleBased)
	if g.Commands || !g.Queries || g.MayAdmin(wire.AdminStatus) != nil || g.MayAdmin(wire.AdminShutdown) == nil || g.Principal != "x" {
		t.Fatalf("grant of a reader: %+v", g)
	}
}

func TestAuthenticator(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	tk, _ := ParseTokens([]byte("writer-token-0123456789 app write\n"))
	a := &Authenticator{}
	a.Tokens.Store(tk)
	member := ca.Issue(t, testpki.Member, "m1", []string{"admin"}).Leaf
	alice := ca.Issue(t, testpki.Client, "alice", []string{"read"}).Leaf
	stranger := ca.Issue(t, testpki.Client, "stranger", []string{"admin"}).Leaf
	a.IsMember = func(chain []*x509.Certificate) bool { return chain[0] == member }
	a.ClientCA = func(chain []*x509.Certificate) bool { return chain[0] != stranger }
	// A token wins over a certificate.
	g, err := a.Authenticate([]*x509.Certificate{alice}, []byte("writer-token-0123456789"))
	if err != nil || g.Principal != "app" || !g.Commands {
		t.Fatalf("token with a certificate: %+v %v", g, err)
	}
	g, err = a.Authenticate([]*x509.Certificate{alice}, nil)
	if err != nil || g.Principal != "alice" || g.Commands || !g.Queries {
		t.Fatalf("alice: %+v %v", g, err)
	}
	// A member's certificate is a member, whatever its organizations say.
	g, err = a.Authenticate([]*x509.Certificate{member}, nil)
	if err != nil || g.Principal != "m1" || g.Commands || g.MayAdmin(wire.AdminJoin) != nil || g.MayAdmin(wire.AdminShutdown) == nil {
		t.Fatalf("member: %+v %v", g, err)
	}
	if _, err := a.Authenticate(nil, nil); err == nil {
		t.Fatal("no credential was taken")
	}
	// A certificate the client CA did not sign (the handshake let it through for the peer CA's
	// sake) is refused, whatever roles it claims; without a client CA, every client's is.
	if _, err := a.Authenticate([]*x509.Certificate{stranger}, nil); err == nil || !strings.Contains(err.Error(), "client CA") {
		t.Fatalf("a certificate of the peer CA only: %v", err)
	}
	noCA := &Authenticator{IsMember: a.IsMember}
	if _, err := noCA.Authenticate([]*x509.Certificate{alice}, nil); err == nil || !strings.Contains(err.Error(), "no client certificates") {
		t.Fatalf("a client certificate without a client CA: %v", err)
	}
	if _, err := a.Authenticate(nil, []byte("wrong-token-0123456789")); err != ErrUnknownToken {
		t.Fatalf("a wrong token: %v", err)
	}
	// With Anonymous, no credential is the anonymous principal, for the hook to judge.
	hook := &Authenticator{Anonymous: true, Authorize: func(p Principal, r Request) error {
		if r.Action == Command {
			return errors.New("read-only cluster")
		}
		return nil
	}}
	g, err = hook.Authenticate(nil, nil)
	if err != nil || g.Principal != "" || g.Commands || !g.Queries {
		t.Fatalf("anonymous with a hook: %+v %v", g, err)
	}
}
