package main

import (
	"crypto/tls"
	"fmt"
	"os"

	"github.com/tandem-cluster/tandem/internal/pki"
	"github.com/tandem-cluster/tandem/internal/tlsconf"
	"github.com/tandem-cluster/tandem/node"
)

// benchSecurity is tandem bench --tls: a CA made for the run, one member certificate (every
// member presents it, on both ports: the run's members all live on 127.0.0.1), and the load
// generator's client certificate (role write). Members run with mutual TLS between them, TLS on
// the client port and client certificates required, as docs/PERFORMANCE.md's "TLS" measures.
type benchSecurity struct {
	ca, cert, key string
	client        *tls.Config
}

// newBenchSecurity writes the run's certificates into dir.
func newBenchSecurity(dir string) (*benchSecurity, error) {
	ca, err := pki.NewCA("tandem bench CA")
	if err != nil {
		return nil, err
	}
	caFile, err := ca.WriteCA(dir, "ca.crt")
	if err != nil {
		return nil, err
	}
	m, err := ca.Issue(pki.Member, "tandem bench member", nil)
	if err != nil {
		return nil, err
	}
	if err := m.Write(dir, "member"); err != nil {
		return nil, err
	}
	c, err := ca.Issue(pki.Client, "bench", []string{node.RoleWrite})
	if err != nil {
		return nil, err
	}
	if err := c.Write(dir, "client"); err != nil {
		return nil, err
	}
	cfg, err := tlsconf.Dial(tlsconf.Files{CA: caFile, Cert: c.CertFile, Key: c.KeyFile})
	if err != nil {
		return nil, err
	}
	return &benchSecurity{ca: caFile, cert: m.CertFile, key: m.KeyFile, client: cfg}, nil
}

// tune secures an in-process member's configuration.
func (b *benchSecurity) tune(cfg *node.Config) {
	cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerCAFile = b.cert, b.key, b.ca
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.ClientCAFile = b.cert, b.key, b.ca
}

// args are the same settings as tandem node flags.
func (b *benchSecurity) args() []string {
	return []string{"--peer-cert", b.cert, "--peer-key", b.key, "--peer-ca", b.ca,
		"--tls-cert", b.cert, "--tls-key", b.key, "--client-ca", b.ca}
}

// benchSecurityDir makes a directory for --tls's certificates (removed by the returned func).
func benchSecurityDir() (string, func(), error) {
	dir, err := os.MkdirTemp("", "tandem-bench-tls-")
	if err != nil {
		return "", nil, fmt.Errorf("--tls: %w", err)
	}
	return dir, func() { _ = os.RemoveAll(dir) }, nil
}
