// Package tlsconf loads the certificates, keys and certificate authorities a member or a client
// uses, reloads them when their files change, and builds the tls.Configs of Tandem's two ports.
//
// Every connection is served or dialled with the material loaded when it starts: a reload
// (Source.Reload, which the node calls every few seconds: it reads the files again only when
// they changed, and costs a stat and a read of each otherwise) takes effect
// for the next connection, and a connection that is open keeps what it was made with, as in
// etcd and NATS. A reload that fails (a missing file, a key that does not match its
// certificate, a CA file with no certificate) keeps the material that was loaded and returns
// the error: a half-written renewal never leaves a member unable to accept connections.
//
// The member port (mutual TLS, TLS 1.3 only) accepts a certificate only if it is a member's:
// signed by the peer CA, and usable both to serve and to dial (the extended key usages
// serverAuth and clientAuth, or none at all), since every member does both. A client's
// certificate (clientAuth only) is refused there even when one CA signs both kinds. With
// allowed names given, the certificate must also carry one of them (a DNS or IP subject
// alternative name, or its common name). A member dialling a peer also checks the peer's
// certificate against the host it dialled, as any TLS client does.
package tlsconf

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Files names the files of one side's material. Cert and Key go together; CA is a PEM bundle of
// the certificate authorities trusted to sign the other side's certificates.
type Files struct {
	Cert, Key, CA string
}

// Source holds the material loaded from Files and reloads it.
type Source struct {
	files Files
	cur   atomic.Pointer[material]
	// check, if set, judges every certificate loaded (LoadMember): one it refuses fails the load,
	// and a reload keeps the material in use.
	check func(*x509.Certificate) error

	mu sync.Mutex // Reload
}

type material struct {
	cert  *tls.Certificate // nil without Cert
	pool  *x509.CertPool   // nil without CA
	caPEM []byte           // the CA file's content
	stamp []fileStamp
	at    time.Time
	// ticketKey encrypts the session tickets the member port issues with this material
	// (Member.Server): a ticket of material replaced since cannot be decrypted, and its session
	// is not resumed.
	ticketKey [32]byte
}

type fileStamp struct {
	path string
	mod  time.Time
	size int64
	sum  []byte // the content: a change within the clock's resolution is seen too
}

// Load reads the material of f: Cert and Key both or neither, CA optional.
func Load(f Files) (*Source, error) {
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("a certificate and its key go together: give both files or neither")
	}
	s := &Source{files: f}
	m, err := load(f)
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	return s, nil
}

// LoadMember reads a member's material for the member port: Cert, Key and CA all given, and the
// certificate a member's (CheckMember), at this load and at every reload. A renewal that
// installs a certificate of the wrong kind is refused, and the member keeps serving with the one
// it has, rather than be refused by every peer.
func LoadMember(f Files) (*Source, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("mutual TLS between members needs the member's certificate, its key and the peer CA")
	}
	return loadChecked(f, CheckMember)
}

// LoadServer reads the client port's certificate and key, and judges the certificate at this load
// and at every reload (CheckServer): a renewal of the wrong kind, or not naming host, is refused
// and the port keeps serving with the one it has, rather than be refused by every client.
func LoadServer(f Files, host string) (*Source, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("TLS on the client port needs its certificate and its key")
	}
	return loadChecked(f, func(c *x509.Certificate) error { return CheckServer(c, host) })
}

// loadChecked loads f into a Source that judges its certificate with check at this load and at
// every reload.
func loadChecked(f Files, check func(*x509.Certificate) error) (*Source, error) {
	s := &Source{files: f, check: func(c *x509.Certificate) error {
		if err := check(c); err != nil {
			return fmt.Errorf("certificate %s: %w", f.Cert, err)
		}
		return nil
	}}
	m, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	return s, nil
}

// CheckServer reports whether c may serve the client port to clients that dial host (empty:
// not checked): it allows serverAuth, names host, and has not expired.
func CheckServer(c *x509.Certificate, host string) error {
	if !usable(c, x509.ExtKeyUsageServerAuth) {
		return fmt.Errorf("certificate %q does not allow serverAuth: it cannot serve the client port (a client's certificate?)",
			c.Subject.CommonName)
	}
	if host != "" {
		if err := c.VerifyHostname(host); err != nil {
			return fmt.Errorf("certificate %q does not name %s, the host clients dial (its names: %v)", c.Subject.CommonName, host, Names(c))
		}
	}
	if time.Now().After(c.NotAfter) {
		return fmt.Errorf("certificate %q expired at %s", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// load reads the files and judges the certificate (check).
func (s *Source) load() (*material, error) {
	m, err := load(s.files)
	if err != nil {
		return nil, err
	}
	if s.check != nil && m.cert != nil {
		if err := s.check(m.cert.Leaf); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Files returns the files the source reads.
func (s *Source) Files() Files { return s.files }

// Reload reads the files again if any changed since they were loaded (by content) and reports
// whether it did. On an error the material loaded before stays in use.
func (s *Source) Reload() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	if !stale(old.stamp) {
		return false, nil
	}
	m, err := s.load()
	if err != nil {
		return false, err
	}
	s.cur.Store(m)
	return true, nil
}

// Certificate returns the loaded certificate (nil if the source has none).
func (s *Source) Certificate() *tls.Certificate { return s.cur.Load().cert }

// Pool returns the loaded CA pool (nil if the source has none).
func (s *Source) Pool() *x509.CertPool { return s.cur.Load().pool }

// LoadedAt returns when the material in use was read.
func (s *Source) LoadedAt() time.Time { return s.cur.Load().at }

// NotAfter returns when the loaded certificate expires (zero without one).
func (s *Source) NotAfter() time.Time {
	if c := s.Certificate(); c != nil && c.Leaf != nil {
		return c.Leaf.NotAfter
	}
	return time.Time{}
}

func load(f Files) (*material, error) {
	m := &material{at: time.Now()}
	if _, err := rand.Read(m.ticketKey[:]); err != nil {
		return nil, err
	}
	read := func(path, what string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		m.stamp = append(m.stamp, fileStamp{path: path, mod: st.ModTime(), size: st.Size(), sum: b})
		return b, nil
	}
	if f.Cert != "" {
		cb, err := read(f.Cert, "certificate")
		if err != nil {
			return nil, err
		}
		kb, err := read(f.Key, "key")
		if err != nil {
			return nil, err
		}
		c, err := tls.X509KeyPair(cb, kb)
		if err != nil {
			return nil, fmt.Errorf("certificate %s and key %s: %w", f.Cert, f.Key, err)
		}
		if c.Leaf == nil {
			if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, fmt.Errorf("certificate %s: %w", f.Cert, err)
			}
		}
		m.cert = &c
	}
	if f.CA != "" {
		b, err := read(f.CA, "CA file")
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", f.CA)
		}
		m.pool = pool
		m.caPEM = b
	}
	return m, nil
}

// stale reports whether any file differs from when it was loaded (a file that cannot be read
// counts as changed: the reload then reports why).
func stale(st []fileStamp) bool {
	for _, s := range st {
		fi, err := os.Stat(s.path)
		if err != nil {
			return true
		}
		if !fi.ModTime().Equal(s.mod) || fi.Size() != s.size {
			return true
		}
		b, err := os.ReadFile(s.path)
		if err != nil || !bytes.Equal(b, s.sum) {
			return true
		}
	}
	return false
}

// ---- the member port: mutual TLS ----

// Member is the material of the member port: the member's certificate (used both to serve and
// to dial) and the peer CA, and the names a peer's certificate must carry (none: any member
// certificate the CA signed).
type Member struct {
	Source  *Source
	Allowed []string
	// cache keeps TLS session tickets across dials, so a redial resumes instead of a full
	// handshake; cacheOf is the material it was made for. A reload starts a new cache (Client),
	// and the server's tickets are encrypted with a key of the material (Server), so that after
	// a reload every new connection, in either direction, makes a full handshake with the new
	// material: a resumed session would carry on the certificates of the old one.
	cacheMu sync.Mutex
	cache   tls.ClientSessionCache
	cacheOf *material
}

// Check reports what is missing for mutual TLS.
func (m *Member) Check() error {
	if m.Source == nil || m.Source.Certificate() == nil || m.Source.Pool() == nil {
		return errors.New("mutual TLS between members needs the member's certificate, its key and the peer CA")
	}
	return nil
}

// Server is the tls.Config that serves the member port: every handshake uses the material
// loaded at that moment.
func (m *Member) Server() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cur := m.Source.cur.Load()
			cfg := &tls.Config{
				MinVersion:       tls.VersionTLS13,
				Certificates:     []tls.Certificate{*cur.cert},
				ClientAuth:       tls.RequireAndVerifyClientCert,
				ClientCAs:        cur.pool,
				VerifyConnection: m.verifyPeer,
			}
			cfg.SetSessionTicketKeys([][32]byte{cur.ticketKey})
			return cfg, nil
		},
	}
}

// Client is the tls.Config that dials a peer at addr (host:port).
func (m *Member) Client(addr string) *tls.Config {
	cur := m.Source.cur.Load()
	m.cacheMu.Lock()
	if m.cacheOf != cur {
		m.cache, m.cacheOf = tls.NewLRUClientSessionCache(64), cur
	}
	cache := m.cache
	m.cacheMu.Unlock()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	cert := cur.cert
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: host,
		// The member's certificate is presented whatever CAs the acceptor names as acceptable:
		// with Certificates, a dialler whose certificate another CA signed would present none,
		// and the acceptor's log would say "no certificate" rather than the cause (another CA).
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
		RootCAs:              cur.pool,
		ClientSessionCache:   cache,
		VerifyConnection:     m.verifyPeer,
	}
}

// verifyPeer checks, after the chain was verified, that the peer's certificate is a member's
// (both usages) and carries an allowed name.
func (m *Member) verifyPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the peer presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if err := CheckMember(leaf); err != nil {
		return err
	}
	if len(m.Allowed) > 0 && !CarriesName(leaf, m.Allowed) {
		return fmt.Errorf("certificate %q carries none of the allowed peer names %v (its names: %v)",
			leaf.Subject.CommonName, m.Allowed, Names(leaf))
	}
	return nil
}

// CheckMember reports whether c may be a member's certificate: usable both to serve and to dial
// (the extended key usages serverAuth and clientAuth, or none), since every member does both. A
// client's certificate (clientAuth only) and a server's (serverAuth only) are not.
func CheckMember(c *x509.Certificate) error {
	if !usable(c, x509.ExtKeyUsageServerAuth) || !usable(c, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("certificate %q is not a member's: a member certificate must allow both serverAuth "+
			"and clientAuth (a client certificate is refused on the member port)", c.Subject.CommonName)
	}
	return nil
}

func usable(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	return len(c.ExtKeyUsage) == 0 || slices.Contains(c.ExtKeyUsage, u) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// Names lists what a certificate is named: its DNS and IP subject alternative names and its
// common name.
func Names(c *x509.Certificate) []string {
	var ns []string
	ns = append(ns, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		ns = append(ns, ip.String())
	}
	if c.Subject.CommonName != "" {
		ns = append(ns, c.Subject.CommonName)
	}
	return ns
}

// CarriesName reports whether a certificate is named one of names (exactly; case-insensitive
// for DNS names).
func CarriesName(c *x509.Certificate, names []string) bool {
	for _, n := range Names(c) {
		for _, a := range names {
			if equalFold(n, a) {
				return true
			}
		}
	}
	return false
}

func equalFold(a, b string) bool { return len(a) == len(b) && bytes.EqualFold([]byte(a), []byte(b)) }

// ---- the client port ----

// ClientPort is the material of the client port: the member's server certificate, and the CAs
// whose client certificates authenticate a client: ClientCA (clients') and PeerCA (members': a
// joining member asks with its member certificate). With neither, clients are not asked for a
// certificate. With CertOptional (the member also takes tokens) a certificate a client presents
// is verified, and a client without one authenticates otherwise; without it a client must
// present one.
type ClientPort struct {
	Source       *Source
	ClientCA     *Source
	PeerCA       *Source
	CertOptional bool

	mu    sync.Mutex
	pools map[[2]*material]*x509.CertPool // the union of the two CAs, per loaded pair
}

// Server is the tls.Config of the client port (TLS 1.2 or later: clients of every kind).
func (c *ClientPort) Server() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*c.Source.Certificate()},
			}
			if pool := c.clientPool(); pool != nil {
				cfg.ClientCAs = pool
				cfg.ClientAuth = tls.RequireAndVerifyClientCert
				if c.CertOptional {
					cfg.ClientAuth = tls.VerifyClientCertIfGiven
				}
			}
			return cfg, nil
		},
	}
}

// clientPool is the pool that verifies client certificates: ClientCA's and PeerCA's together.
func (c *ClientPort) clientPool() *x509.CertPool {
	var key [2]*material
	if c.ClientCA != nil {
		key[0] = c.ClientCA.cur.Load()
	}
	if c.PeerCA != nil {
		key[1] = c.PeerCA.cur.Load()
	}
	switch {
	case key[0] == nil && key[1] == nil:
		return nil
	case key[1] == nil:
		return key[0].pool
	case key[0] == nil:
		return key[1].pool
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pools[key]; ok {
		return p
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(key[0].caPEM)
	p.AppendCertsFromPEM(key[1].caPEM)
	c.pools = map[[2]*material]*x509.CertPool{key: p} // only the newest pair is kept
	return p
}

// IsMemberCertificate reports whether a client certificate chain (leaf first, then the
// intermediates the client sent) is a member's: it chains to the peer CA, allows both
// serverAuth and clientAuth, and carries one of allowed if any are given (as the member port
// asks of a peer).
func IsMemberCertificate(chain []*x509.Certificate, peerCA *Source, allowed []string) bool {
	if len(chain) == 0 || peerCA == nil || peerCA.Pool() == nil {
		return false
	}
	leaf := chain[0]
	if !usable(leaf, x509.ExtKeyUsageServerAuth) || !usable(leaf, x509.ExtKeyUsageClientAuth) {
		return false
	}
	if len(allowed) > 0 && !CarriesName(leaf, allowed) {
		return false
	}
	return VerifiedBy(chain, peerCA.Pool())
}

// VerifiedBy reports whether a client certificate chain (leaf first, then the intermediates the
// client sent) chains to one of roots, for client authentication.
func VerifiedBy(chain []*x509.Certificate, roots *x509.CertPool) bool {
	if len(chain) == 0 || roots == nil {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err == nil
}

// Dial builds a client's tls.Config from files: CA verifies the member (empty: the system's
// roots), Cert and Key are the client's certificate if it authenticates with one.
func Dial(f Files) (*tls.Config, error) {
	s, err := Load(f)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: s.Pool(),
		ClientSessionCache: tls.NewLRUClientSessionCache(16)}
	if c := s.Certificate(); c != nil {
		cfg.Certificates = []tls.Certificate{*c}
	}
	return cfg, nil
}

// Untrusted says why a member's certificate is not one the client trusts, or "" if that is not
// why err happened: a refusal of that one member, not of the client's credential.
func Untrusted(err error) string {
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) {
		return "its certificate is not trusted: " + ve.Err.Error()
	}
	return ""
}

// Refusal says why a client's TLS connection failed if no retry can help — the member's
// certificate is not one the client trusts, the member refused the client's certificate (a TLS
// alert), or the port does not speak TLS — and "" for any other failure (a member down, a
// connection cut), which a client retries.
func Refusal(err error) string {
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) {
		return "the member's certificate is not trusted: " + ve.Err.Error()
	}
	// Over TCP the other end's alert comes as a *net.OpError of Op "remote error" (tls.AlertError
	// is QUIC's); in TLS 1.3 a client learns it at its first read, its own handshake done.
	var oe *net.OpError
	var ae tls.AlertError
	if errors.As(err, &oe) && oe.Op == "remote error" || errors.As(err, &ae) {
		return "the member refused the TLS handshake: " + err.Error() + " (a client certificate its client CA signed, or a token, is needed)"
	}
	var he tls.RecordHeaderError
	if errors.As(err, &he) {
		return "the member does not speak TLS on this port (is it started with --tls-cert?)"
	}
	return ""
}

// CloseSocket closes a connection; a TLS one at its socket, without a close_notify. A TLS close
// writes its alert under a deadline of 5 s, so whoever closes a connection whose other end
// stopped reading would wait that long (the member's loop, disconnecting a slow client); and a
// connection cut short by a deadline may stand in the middle of a record, behind which the alert
// would reach the other end as a corrupt one. Neither end of Tandem's protocols needs the
// close_notify: each reads the end of the connection.
func CloseSocket(conn net.Conn) {
	if tc, ok := conn.(*tls.Conn); ok {
		_ = tc.NetConn().Close()
		return
	}
	_ = conn.Close()
}
