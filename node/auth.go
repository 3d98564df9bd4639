package node

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tandem-cluster/tandem/internal/admin"
	"github.com/tandem-cluster/tandem/internal/auth"
	"github.com/tandem-cluster/tandem/internal/tlsconf"
	"github.com/tandem-cluster/tandem/internal/transport"
)

// Principal is who a client connection is: a token's name and roles, or a client certificate's
// common name and organizations; Method says which ("token", "certificate", "" anonymous).
type Principal = auth.Principal

// AuthRequest is what a principal asks to do (Config.Authorize).
type AuthRequest = auth.Request

// The actions of an AuthRequest.
const (
	ActionCommand = auth.Command
	ActionQuery   = auth.Query
	ActionAdmin   = auth.Admin
)

// The roles RoleBased knows.
const (
	RoleAdmin  = auth.RoleAdmin
	RoleWrite  = auth.RoleWrite
	RoleRead   = auth.RoleRead
	RoleMember = auth.RoleMember
)

// RoleBased is the default authorization: admin may do everything; write send commands, run
// queries and the admin operations that only read (status, list-members, errors); read run
// queries and those admin operations; member (a member's certificate, which a joining member
// presents) join and those admin operations.
func RoleBased(p Principal, r AuthRequest) error { return auth.RoleBased(p, r) }

// credentialsReloadEvery is how often a member looks whether its certificate, CA and token files
// changed (a look that finds nothing costs a few stats and reads of small files).
const credentialsReloadEvery = 2 * time.Second

// validateClientSecurity checks the client port's security fields as Validate does.
func (c *Config) validateClientSecurity() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Member: -1, format: format, args: args})
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("TLSCertFile", "%s and %s go together: give both or neither", fieldName("TLSCertFile"), fieldName("TLSKeyFile"))
	}
	if c.ClientCAFile != "" && c.TLSCertFile == "" {
		bad("ClientCAFile", "%s (%q) needs %s: client certificates are presented in a TLS handshake",
			fieldName("ClientCAFile"), c.ClientCAFile, fieldName("TLSCertFile"))
	}
	if len(errs) > 0 {
		return errs
	}
	// The files themselves, as the member will load them: a mistake is said before anything
	// starts, naming the field (tandem node --print-config too).
	if c.TLSCertFile != "" {
		if _, err := tlsconf.LoadServer(tlsconf.Files{Cert: c.TLSCertFile, Key: c.TLSKeyFile}, c.clientHost()); err != nil {
			bad("TLSCertFile", "%s (%q): %v", fieldName("TLSCertFile"), c.TLSCertFile, err)
		}
	}
	if c.ClientCAFile != "" {
		if _, err := tlsconf.Load(tlsconf.Files{CA: c.ClientCAFile}); err != nil {
			bad("ClientCAFile", "%s (%q): %v", fieldName("ClientCAFile"), c.ClientCAFile, err)
		}
	}
	if c.AuthTokensFile != "" {
		if _, err := auth.LoadTokens(c.AuthTokensFile); err != nil {
			bad("AuthTokensFile", "%s (%q): %v", fieldName("AuthTokensFile"), c.AuthTokensFile, err)
		}
	}
	return errs
}

// clientHost is the host clients dial to reach this member's client port: its advertised
// client address's ("" if it has none).
func (c *Config) clientHost() string {
	self, ok := c.self()
	if !ok {
		return ""
	}
	host, _, err := net.SplitHostPort(self.ClientAddr)
	if err != nil {
		return ""
	}
	return host
}

// clientSecurity is what the client port was configured with, loaded.
type clientSecurity struct {
	tls   *tlsconf.ClientPort // nil: plaintext
	authn *auth.Authenticator // nil: nobody is authenticated
}

// loadClientSecurity reads the client port's certificates and tokens. peerCA, if the member
// port has one, lets members' certificates authenticate too (a joining member's).
func loadClientSecurity(c *Config, peerCA *tlsconf.Source) (*clientSecurity, error) {
	cs := &clientSecurity{}
	if c.TLSCertFile != "" {
		src, err := tlsconf.LoadServer(tlsconf.Files{Cert: c.TLSCertFile, Key: c.TLSKeyFile}, c.clientHost())
		if err != nil {
			return nil, fmt.Errorf("client port TLS: %w", err)
		}
		cs.tls = &tlsconf.ClientPort{Source: src, CertOptional: c.AuthTokensFile != ""}
		if c.ClientCAFile != "" {
			ca, err := tlsconf.Load(tlsconf.Files{CA: c.ClientCAFile})
			if err != nil {
				return nil, fmt.Errorf("client CA: %w", err)
			}
			cs.tls.ClientCA = ca
		}
		if peerCA != nil && (c.ClientCAFile != "" || c.AuthTokensFile != "") {
			cs.tls.PeerCA = peerCA
			cs.tls.CertOptional = cs.tls.CertOptional || c.ClientCAFile == ""
		}
	}
	if c.ClientCAFile == "" && c.AuthTokensFile == "" && c.Authorize == nil {
		return cs, nil
	}
	cs.authn = &auth.Authenticator{Authorize: c.Authorize,
		Anonymous: c.ClientCAFile == "" && c.AuthTokensFile == ""}
	if peerCA != nil {
		allowed := slices.Clone(c.PeerAllowedNames)
		cs.authn.IsMember = func(chain []*x509.Certificate) bool { return tlsconf.IsMemberCertificate(chain, peerCA, allowed) }
	}
	if cs.tls != nil && cs.tls.ClientCA != nil {
		ca := cs.tls.ClientCA
		cs.authn.ClientCA = func(chain []*x509.Certificate) bool { return tlsconf.VerifiedBy(chain, ca.Pool()) }
	}
	if c.AuthTokensFile != "" {
		t, err := auth.LoadTokens(c.AuthTokensFile)
		if err != nil {
			return nil, err
		}
		cs.authn.Tokens.Store(t)
	}
	return cs, nil
}

// logClientSecurity says at the start how the client port is served and who may use it, and
// what about the token file an operator would want to hear of: roles the default authorization
// does not know (a typo denies everything), a file others may read.
func (n *Node) logClientSecurity(c *Config, sec *clientSecurity) {
	mode := "plaintext"
	if sec.tls != nil {
		mode = "TLS"
	}
	var by []string
	if c.ClientCAFile != "" {
		by = append(by, "client certificates")
	}
	if c.AuthTokensFile != "" {
		by = append(by, "tokens")
	}
	if sec.authn != nil && sec.authn.IsMember != nil {
		by = append(by, "member certificates (role member)")
	}
	authz := "roles"
	if c.Authorize != nil {
		authz = "the application's hook"
	}
	if len(by) == 0 {
		by = append(by, "nobody (every connection is anonymous)")
	}
	n.log.Info("client port: "+mode, "authenticates", strings.Join(by, ", "), "authorization", authz)
	if c.AuthTokensFile == "" {
		return
	}
	if fi, err := os.Stat(c.AuthTokensFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		n.log.Warn("client port: the token file may be read by others than its owner: chmod 600 it",
			"file", c.AuthTokensFile, "mode", fi.Mode().Perm().String())
	}
	if c.Authorize == nil && sec.authn != nil {
		if unknown := sec.authn.Tokens.Load().UnknownRoles(); len(unknown) > 0 {
			n.log.Warn("client port: the token file names roles the default authorization does not know (admin, write, read, member); "+
				"their tokens may do nothing", "file", c.AuthTokensFile, "roles", strings.Join(unknown, ","))
		}
	}
}

// apply sets the client port's configuration.
func (cs *clientSecurity) apply(cc *transport.ClientConfig) {
	if cs.tls != nil {
		cc.TLS = cs.tls.Server()
	}
	if cs.authn != nil {
		cc.Authenticate = cs.authn.Authenticate
	}
}

// reload reads the files again where they changed; it reports what it did, and whether
// credentials changed (the connections' are then checked again).
func (cs *clientSecurity) reload(c *Config) (changed bool, errs []error, done []string) {
	if cs.tls != nil {
		for _, s := range []struct {
			what string
			src  *tlsconf.Source
		}{{"client port certificate", cs.tls.Source}, {"client CA", cs.tls.ClientCA}} {
			if s.src == nil {
				continue
			}
			ok, err := s.src.Reload()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w (the one loaded before stays in use)", s.what, err))
			}
			if ok {
				changed = true
				done = append(done, s.what)
			}
		}
	}
	if cs.authn != nil && c.AuthTokensFile != "" {
		if ok, err := cs.reloadTokens(c.AuthTokensFile); err != nil {
			errs = append(errs, fmt.Errorf("%w (the tokens loaded before stay in use)", err))
		} else if ok {
			changed = true
			done = append(done, "token file")
		}
	}
	return changed, errs, done
}

// reloadTokens reads the token file again if it changed.
func (cs *clientSecurity) reloadTokens(path string) (bool, error) {
	t, err := auth.LoadTokens(path)
	if err != nil {
		return false, err
	}
	if t.Equal(cs.authn.Tokens.Load()) {
		return false, nil
	}
	cs.authn.Tokens.Store(t)
	return true, nil
}

// reloadCredentials (given Run's copy of the configuration: a test may change n.cfg while a
// member runs) looks every credentialsReloadEvery whether the client port's files changed,
// loads what did, and checks every authenticated connection again when credentials changed
// (transport.ClientServer.Reauthenticate: a revoked token's connections are closed). A file
// that cannot be loaded is logged, once per change of its error, and the material loaded
// before stays in use. It returns a function that stops it and waits.
func (n *Node) reloadCredentials(cfg *Config, sec *clientSecurity, cs *transport.ClientServer) (stop func()) {
	if sec.tls == nil && (sec.authn == nil || cfg.AuthTokensFile == "") {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(credentialsReloadEvery)
		defer t.Stop()
		lastErr := ""
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			changed, errs, what := sec.reload(cfg)
			if msg := fmt.Sprint(errs); len(errs) > 0 && msg != lastErr {
				n.log.Error("client credentials: reload failed", "err", msg)
				lastErr = msg
			} else if len(errs) == 0 && lastErr != "" {
				// The files load again (fixed, or put back as they were): say so, so that the
				// error is not the log's last word.
				n.log.Info("client credentials: the files load again", "was", lastErr)
				lastErr = ""
			}
			if changed {
				closed := cs.Reauthenticate()
				n.log.Info("client credentials reloaded", "what", what, "connections_closed", closed)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// adminTLS is how this member connects to the others' client ports for its own requests (join,
// the membership it asks for when it knows no leader, whether it may start on an empty
// directory): over TLS when its own client port serves TLS (a cluster's members are configured
// alike), presenting its member certificate, which authenticates it with the role member, and
// verifying theirs with the peer CA — so a secured cluster's client-port certificates are
// signed by the peer CA (README: each member's one certificate serves both ports). nil:
// plaintext.
func adminTLS(c *Config, peer *tlsconf.Member) *tls.Config {
	if c.TLSCertFile == "" {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if peer != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return peer.Source.Certificate(), nil // the material in force, renewals included
		}
		// (RootCAs: the peer CA in force when each request is made, set by adminOptions.)
	}
	return cfg
}

// adminOptions are o with this member's credentials (adminTLS), the peer CA as it is now.
func (n *Node) adminOptions(o admin.Options) admin.Options {
	if n.adminTLS != nil {
		o.TLS = n.adminTLS.Clone()
		if n.adminPeer != nil {
			o.TLS.RootCAs = n.adminPeer.Source.Pool()
		}
	}
	return o
}
