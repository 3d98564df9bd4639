package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tandem-cluster/tandem/internal/ratelog"
	"github.com/tandem-cluster/tandem/internal/tlsconf"
)

// Mutual TLS on the member port (Config.PeerCertFile, PeerKeyFile, PeerCAFile,
// PeerAllowedNames; the transport's side: internal/transport/tls.go).
//
// Decisions:
//   - A member certificate must allow both serverAuth and clientAuth: every member serves the
//     member port and dials its peers with the one certificate. A certificate of one usage
//     (a client's, a server's) is refused — by Validate for this member's own, at every reload
//     (tlsconf.LoadMember) and by the peers at the handshake — so that the client port's
//     certificates, which one CA may sign too, never open the member port.
//   - Allowed names narrow the CA: one CA may sign the members of several clusters, or the
//     clients too; with PeerAllowedNames a peer must also be named one of them. This member's
//     own certificate must carry one, or its peers (configured alike) would refuse it.
//   - The dialler checks that the peer's certificate names the host it dialled (the advertised
//     MemberAddr), as any TLS client does: Validate checks this member's own certificate for
//     its own MemberAddr, so a certificate that would make every peer refuse it stops the start
//     rather than the cluster.
//   - Reload by polling (peerCertPollDefault): the files are read again only when they changed
//     (tlsconf.Source.Reload compares them), so a renewal written by any tool (cert-manager, a
//     cron job, a person) is taken without a signal or a restart. A renewal that does not load
//     (a half-written pair, a certificate of the wrong kind) keeps the material in use and is
//     logged; the connections made after a reload use the new material, those open keep theirs,
//     and no TLS session of the old material is resumed.

// peerCertPollDefault is how often the member looks at its TLS files for a renewal: a stat and a
// read of three small files when nothing changed.
const peerCertPollDefault = 5 * time.Second

// peerCertReloadLogEvery: a reload that keeps failing is logged when it starts, then at most
// once per this, and when it stops (ratelog.Outage).
const peerCertReloadLogEvery = time.Minute

// peerTLSOn reports whether the member port is to use TLS.
func (c *Config) peerTLSOn() bool {
	return c.PeerCertFile != "" || c.PeerKeyFile != "" || c.PeerCAFile != ""
}

// validatePeerTLS checks the member port's TLS settings and reads their files: all three files
// or none, each readable, a key that matches the certificate, a CA bundle with a certificate in
// it that signed this member's, a member certificate (both usages) that names this member's
// advertised member host and, with PeerAllowedNames, carries one of them, and that has not
// expired.
func (c *Config) validatePeerTLS() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Member: -1, format: format, args: args})
	}
	if !c.peerTLSOn() {
		if len(c.PeerAllowedNames) > 0 {
			bad("PeerAllowedNames", "%s (%v) given without TLS on the member port: set %s, %s and %s too",
				fieldName("PeerAllowedNames"), c.PeerAllowedNames, fieldName("PeerCertFile"), fieldName("PeerKeyFile"), fieldName("PeerCAFile"))
		}
		return errs
	}
	for _, n := range c.PeerAllowedNames {
		if strings.TrimSpace(n) == "" {
			bad("PeerAllowedNames", "%s (%q) holds an empty name", fieldName("PeerAllowedNames"), c.PeerAllowedNames)
			break
		}
	}
	switch {
	case c.PeerCertFile == "":
		bad("PeerCertFile", "%s is empty: TLS on the member port needs this member's certificate (with %s and %s)",
			fieldName("PeerCertFile"), fieldName("PeerKeyFile"), fieldName("PeerCAFile"))
	case c.PeerKeyFile == "":
		bad("PeerKeyFile", "%s is empty: %s (%q) needs its key", fieldName("PeerKeyFile"), fieldName("PeerCertFile"), c.PeerCertFile)
	}
	if c.PeerCAFile == "" {
		bad("PeerCAFile", "%s is empty: TLS on the member port needs the CA that signs the members' certificates",
			fieldName("PeerCAFile"))
	}
	read := func(field, path string) []byte {
		if path == "" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is in the message already
			}
			bad(field, "%s (%q): %v", fieldName(field), path, err)
			return nil
		}
		return b
	}
	certPEM, keyPEM, caPEM := read("PeerCertFile", c.PeerCertFile), read("PeerKeyFile", c.PeerKeyFile), read("PeerCAFile", c.PeerCAFile)
	var pool *x509.CertPool
	if caPEM != nil {
		if pool = x509.NewCertPool(); !pool.AppendCertsFromPEM(caPEM) {
			bad("PeerCAFile", "%s (%q) holds no PEM certificate", fieldName("PeerCAFile"), c.PeerCAFile)
			pool = nil
		}
	}
	if certPEM == nil || keyPEM == nil {
		return errs
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		bad("PeerCertFile", "%s (%q) and %s (%q): %v", fieldName("PeerCertFile"), c.PeerCertFile, fieldName("PeerKeyFile"), c.PeerKeyFile, err)
		return errs
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			bad("PeerCertFile", "%s (%q): %v", fieldName("PeerCertFile"), c.PeerCertFile, err)
			return errs
		}
	}
	if err := tlsconf.CheckMember(leaf); err != nil {
		bad("PeerCertFile", "%s (%q): %v", fieldName("PeerCertFile"), c.PeerCertFile, err)
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		bad("PeerCertFile", "%s (%q): the certificate expired on %s", fieldName("PeerCertFile"), c.PeerCertFile,
			leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if pool != nil {
		inter := x509.NewCertPool()
		for _, der := range pair.Certificate[1:] {
			if ic, err := x509.ParseCertificate(der); err == nil {
				inter.AddCert(ic)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			bad("PeerCertFile", "%s (%q) is not signed by a CA of %s (%q), so the peers would refuse it: %v",
				fieldName("PeerCertFile"), c.PeerCertFile, fieldName("PeerCAFile"), c.PeerCAFile, err)
		}
	}
	if self, ok := c.self(); ok {
		if host, _, err := net.SplitHostPort(self.MemberAddr); err == nil {
			host, _, _ = strings.Cut(host, "%")
			if err := leaf.VerifyHostname(host); err != nil {
				bad("PeerCertFile", "%s (%q) does not name %q, the host of this member's advertised member address (the others "+
					"dial it and check the name): the certificate names %v", fieldName("PeerCertFile"), c.PeerCertFile, host, tlsconf.Names(leaf))
			}
		}
	}
	if len(c.PeerAllowedNames) > 0 && !tlsconf.CarriesName(leaf, c.PeerAllowedNames) {
		bad("PeerCertFile", "%s (%q) carries none of %s (%v), so the peers would refuse it: the certificate names %v",
			fieldName("PeerCertFile"), c.PeerCertFile, fieldName("PeerAllowedNames"), c.PeerAllowedNames, tlsconf.Names(leaf))
	}
	return errs
}

// loadPeerTLS loads the member port's TLS material of cfg (Run's copy: a test changes a field of
// n.cfg while a member runs) and logs what it loaded; nil, nil: plaintext.
func (n *Node) loadPeerTLS(cfg *Config) (*tlsconf.Member, error) {
	if !cfg.peerTLSOn() {
		return nil, nil
	}
	src, err := tlsconf.LoadMember(tlsconf.Files{Cert: cfg.PeerCertFile, Key: cfg.PeerKeyFile, CA: cfg.PeerCAFile})
	if err != nil {
		return nil, fmt.Errorf("member port TLS: %w", err)
	}
	leaf := src.Certificate().Leaf
	n.log.Info("member port: mutual TLS", "cert", cfg.PeerCertFile, "subject", leaf.Subject.CommonName,
		"not_after", src.NotAfter().UTC().Format(time.RFC3339), "ca", cfg.PeerCAFile, "allowed_names", cfg.PeerAllowedNames)
	return &tlsconf.Member{Source: src, Allowed: cfg.PeerAllowedNames}, nil
}

// watchPeerCert polls the member port's TLS files every interval until ctx ends, and reloads
// them when they changed (tlsconf.Source.Reload: new connections use the new material). It logs
// each reload, with the new certificate's expiry, and a reload that fails (the material in use
// stays): when it starts, at most once per peerCertReloadLogEvery while it goes on (and whenever
// its reason changes), and when it stops. The returned function stops it and waits.
func (n *Node) watchPeerCert(ctx context.Context, m *tlsconf.Member, interval time.Duration) (stop func()) {
	certFile := m.Source.Files().Cert
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		failing := ratelog.Outage{Every: peerCertReloadLogEvery}
		lastErr := "" // the failure last logged: a new reason is logged at once
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			changed, err := m.Source.Reload()
			now := time.Now()
			if err != nil {
				// A renewal written file by file fails at first (a new certificate with the old
				// key), then for its own reason, if it has one: that is said too.
				if r, ok := failing.Fail(now); ok || err.Error() != lastErr {
					lastErr = err.Error()
					attrs := []any{"err", err, "not_after", m.Source.NotAfter().UTC().Format(time.RFC3339)}
					if ok {
						attrs = append(attrs, "failing_for", r.For.Round(time.Second), "failures_not_logged", r.Held)
					}
					n.log.Warn("peer certificate reload failed; the certificate loaded before stays in use", attrs...)
				}
				continue
			}
			lastErr = ""
			if r, ok := failing.Recover(now); ok && !changed {
				n.log.Info("peer certificate files readable again, unchanged", "failed_for", r.For.Round(time.Second),
					"failures", r.Count)
			}
			if changed {
				leaf := m.Source.Certificate().Leaf
				n.log.Info("peer certificate reloaded: new member connections use it", "cert", certFile,
					"subject", leaf.Subject.CommonName, "not_after", m.Source.NotAfter().UTC().Format(time.RFC3339))
			}
		}
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}
