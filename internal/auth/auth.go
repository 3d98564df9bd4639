// Package auth holds what a member knows of the clients that connect to it: principals, the
// token file, the roles and the default authorization.
//
// A client authenticates once per connection, by its TLS client certificate or by a token (the
// CAuth request). Either way the connection gets a principal: a name and roles. A token's come
// from the token file; a certificate's name is its common name and its roles its organizations
// (the subject's O attribute), the convention of Kubernetes client certificates. The member then
// asks an Authorizer, once for commands, once for queries and once per admin operation, and
// hands the answers to the replica with each request (wire.Grant).
package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/tandem-cluster/tandem/internal/wire"
)

// Principal is who a connection is.
type Principal struct {
	// Name is the token's name, or the certificate's common name; "" anonymous (the member
	// authenticates nobody).
	Name string
	// Roles are the token's roles, or the certificate's organizations.
	Roles []string
	// Method is how it authenticated: "token", "certificate", or "" (anonymous).
	Method string
}

func (p Principal) String() string {
	if p.Name == "" && p.Method == "" {
		return "anonymous"
	}
	return fmt.Sprintf("%s (%s)", p.Name, p.Method)
}

// Action is what a principal asks to do.
type Action int

const (
	// Command: send commands (which opens a session).
	Command Action = iota + 1
	// Query: run queries.
	Query
	// Admin: run an admin operation (Request.Op: a wire.Admin* name).
	Admin
)

func (a Action) String() string {
	switch a {
	case Command:
		return "send commands"
	case Query:
		return "run queries"
	case Admin:
		return "run admin operations"
	}
	return fmt.Sprintf("action %d", int(a))
}

// Request is an action, and for Admin the operation.
type Request struct {
	Action Action
	Op     string
}

func (r Request) String() string {
	if r.Action == Admin {
		return "run " + r.Op
	}
	return r.Action.String()
}

// Authorizer decides whether p may do r: nil, or why not (the client sees the text).
type Authorizer func(p Principal, r Request) error

// The roles RoleBased knows.
const (
	// RoleAdmin may do everything.
	RoleAdmin = "admin"
	// RoleWrite may send commands and run queries, and the admin operations that only read.
	RoleWrite = "write"
	// RoleRead may run queries, and the admin operations that only read.
	RoleRead = "read"
	// RoleMember is a joining member's: it may ask to join, and read.
	RoleMember = "member"
)

// readOps are the admin operations that change nothing.
var readOps = []string{wire.AdminStatus, wire.AdminListMembers, wire.AdminErrors}

// RoleBased is the default Authorizer: admin may do everything; write commands, queries and the
// admin operations that read; read queries and the admin operations that read; member (a
// joining member's certificate) join and the admin operations that read. An anonymous
// principal (a member that authenticates nobody) may do everything.
func RoleBased(p Principal, r Request) error {
	if p.Method == "" {
		return nil
	}
	has := func(role string) bool { return slices.Contains(p.Roles, role) }
	if has(RoleAdmin) {
		return nil
	}
	ok := false
	switch r.Action {
	case Command:
		ok = has(RoleWrite)
	case Query:
		ok = has(RoleWrite) || has(RoleRead)
	case Admin:
		ok = (slices.Contains(readOps, r.Op) && (has(RoleWrite) || has(RoleRead) || has(RoleMember))) ||
			(r.Op == wire.AdminJoin && has(RoleMember))
	}
	if ok {
		return nil
	}
	// The member says who and what (replica: "principal "x" may not run suspend: …"): the
	// reason only says why.
	if len(p.Roles) == 0 {
		return errors.New("it has no role")
	}
	return fmt.Errorf("its roles (%s) do not allow it", strings.Join(p.Roles, ","))
}

// GrantOf asks az what p may do, for the replica.
func GrantOf(p Principal, az Authorizer) *wire.Grant {
	g := &wire.Grant{Principal: p.Name, Admin: func(op string) error { return az(p, Request{Action: Admin, Op: op}) }}
	if err := az(p, Request{Action: Command}); err != nil {
		g.CommandsWhy = err.Error()
	} else {
		g.Commands = true
	}
	if err := az(p, Request{Action: Query}); err != nil {
		g.QueriesWhy = err.Error()
	} else {
		g.Queries = true
	}
	return g
}

// FromCertificate is the principal of a verified client certificate: its common name and its
// organizations as roles.
func FromCertificate(c *x509.Certificate) (Principal, error) {
	if c.Subject.CommonName == "" {
		return Principal{}, errors.New("the client certificate has no common name, which names its principal")
	}
	return Principal{Name: c.Subject.CommonName, Roles: slices.Clone(c.Subject.Organization), Method: "certificate"}, nil
}

// ---- the token file ----

// TokenBytesMin is the shortest token the file may hold: a token is a password a machine
// keeps, and one that can be guessed protects nothing.
const TokenBytesMin = 16

// Tokens is a token file, loaded: each token's principal.
type Tokens struct {
	// byHash maps the SHA-256 of each token to its principal: looking a token up compares
	// digests, never the secret byte by byte.
	byHash map[[sha256.Size]byte]Principal
	names  int
}

// ParseTokens reads a token file: one token per line, "TOKEN NAME ROLE[,ROLE...]", fields
// separated by spaces or tabs; blank lines and lines starting with # are skipped. A token is
// at least TokenBytesMin printable characters without spaces; one name may have several
// tokens (to rotate them); a token may appear once. Errors name the line (never the token).
func ParseTokens(data []byte) (*Tokens, error) {
	t := &Tokens{byHash: map[[sha256.Size]byte]Principal{}}
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want \"TOKEN NAME ROLE[,ROLE...]\", found %d fields", n, len(f))
		}
		tok, name, roles := f[0], f[1], strings.Split(f[2], ",")
		if len(tok) < TokenBytesMin {
			return nil, fmt.Errorf("line %d: the token is %d characters; at least %d", n, len(tok), TokenBytesMin)
		}
		if len(tok) > wire.MaxTokenBytes {
			return nil, fmt.Errorf("line %d: the token is %d bytes; at most %d", n, len(tok), wire.MaxTokenBytes)
		}
		if strings.IndexFunc(tok, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return nil, fmt.Errorf("line %d: the token holds a character that is not printable", n)
		}
		for _, r := range roles {
			if r == "" {
				return nil, fmt.Errorf("line %d: an empty role in %q", n, f[2])
			}
		}
		h := sha256.Sum256([]byte(tok))
		if prev, dup := t.byHash[h]; dup {
			return nil, fmt.Errorf("line %d: the token of %q appears again (first for %q): each token names one principal", n, name, prev.Name)
		}
		t.byHash[h] = Principal{Name: name, Roles: roles, Method: "token"}
		names[name] = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.byHash) == 0 {
		return nil, errors.New("no token in it")
	}
	t.names = len(names)
	return t, nil
}

// LoadTokens reads and parses a token file.
func LoadTokens(path string) (*Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	t, err := ParseTokens(b)
	if err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return t, nil
}

// ErrUnknownToken: the token is not in the file (or no longer: revoked).
var ErrUnknownToken = errors.New("the token is not known to this member (wrong, or revoked)")

// Lookup returns the principal of token.
func (t *Tokens) Lookup(token []byte) (Principal, error) {
	if t != nil {
		if p, ok := t.byHash[sha256.Sum256(token)]; ok {
			return p, nil
		}
	}
	return Principal{}, ErrUnknownToken
}

// Len returns how many tokens and names the file holds.
func (t *Tokens) Len() (tokens, names int) { return len(t.byHash), t.names }

// Authenticator authenticates the connections of a member's client port
// (transport.ClientConfig.Authenticate): a token, looked up in the token file, wins over a
// certificate; a member's certificate (IsMember) is a principal with the role member; any other
// verified certificate names its principal (FromCertificate). Each connection's grant comes from
// Authorize (RoleBased if nil).
type Authenticator struct {
	// Tokens is the loaded token file (nil: the member takes no tokens); Store replaces it on a
	// reload.
	Tokens atomic.Pointer[Tokens]
	// IsMember, if set, reports whether a verified certificate chain (leaf first) is a member's.
	IsMember func(chain []*x509.Certificate) bool
	// ClientCA, if set, reports whether a chain that is not a member's chains to the client CA:
	// the TLS handshake verified it against the client CA and the peer CA together (a member
	// may present its certificate), so a client certificate is checked again against the
	// client CA alone. nil: the member takes no client certificates.
	ClientCA  func(chain []*x509.Certificate) bool
	Authorize Authorizer
	// Anonymous: a connection without a credential is the anonymous principal (a member that
	// authenticates nobody but has an Authorize hook, which decides for it); otherwise it must
	// present one.
	Anonymous bool
}

// Authenticate is transport.ClientConfig.Authenticate.
func (a *Authenticator) Authenticate(certs []*x509.Certificate, token []byte) (*wire.Grant, error) {
	var p Principal
	switch {
	case token != nil:
		t := a.Tokens.Load()
		if t == nil {
			return nil, errors.New("this member takes no tokens: authenticate with a client certificate")
		}
		var err error
		if p, err = t.Lookup(token); err != nil {
			return nil, err
		}
	case len(certs) > 0:
		if a.IsMember != nil && a.IsMember(certs) {
			p = Principal{Name: certs[0].Subject.CommonName, Roles: []string{RoleMember}, Method: "certificate"}
			break
		}
		if a.ClientCA == nil {
			return nil, errors.New("this member takes no client certificates (it has no client CA): authenticate with a token")
		}
		if !a.ClientCA(certs) {
			return nil, errors.New("the client certificate is not signed by the client CA (nor a member's)")
		}
		var err error
		if p, err = FromCertificate(certs[0]); err != nil {
			return nil, err
		}
	default:
		if !a.Anonymous {
			return nil, errors.New("no credential")
		}
	}
	if len(p.Name) > wire.MaxPrincipalBytes {
		// The log records the name when a session opens: it is bounded there.
		return nil, fmt.Errorf("the principal's name is %d bytes; at most %d", len(p.Name), wire.MaxPrincipalBytes)
	}
	az := a.Authorize
	if az == nil {
		az = RoleBased
	}
	return GrantOf(p, az), nil
}

// Equal reports whether two token files hold the same tokens for the same principals.
func (t *Tokens) Equal(o *Tokens) bool {
	if t == nil || o == nil {
		return t == o
	}
	if len(t.byHash) != len(o.byHash) {
		return false
	}
	for h, p := range t.byHash {
		q, ok := o.byHash[h]
		if !ok || p.Name != q.Name || !slices.Equal(p.Roles, q.Roles) {
			return false
		}
	}
	return true
}

// UnknownRoles lists the roles the file gives that RoleBased does not know, sorted.
func (t *Tokens) UnknownRoles() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range t.byHash {
		for _, r := range p.Roles {
			if !seen[r] && !slices.Contains([]string{RoleAdmin, RoleWrite, RoleRead, RoleMember}, r) {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	slices.Sort(out)
	return out
}
