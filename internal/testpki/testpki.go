// Package testpki is package pki for tests: each call fails the test instead of returning an
// error.
package testpki

import (
	"testing"

	"github.com/tandem-cluster/tandem/internal/pki"
)

// CA is a certificate authority that signs certificates.
type CA struct{ *pki.CA }

// Kind says what a certificate may be used for.
type Kind = pki.Kind

// The kinds of certificates.
const (
	Member = pki.Member
	Server = pki.Server
	Client = pki.Client
)

// NewCA makes a self-signed CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := pki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{ca}
}

// WriteCA writes the CA's certificate into dir as name and returns the file's path.
func (ca *CA) WriteCA(t testing.TB, dir, name string) string {
	t.Helper()
	p, err := ca.CA.WriteCA(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Issue makes a certificate (pki.CA.Issue).
func (ca *CA) Issue(t testing.TB, kind Kind, cn string, orgs []string, names ...string) *Cert {
	t.Helper()
	c, err := ca.CA.Issue(kind, cn, orgs, names...)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{c}
}

// Cert is a certificate and its key (pki.Cert), and the files they were written to (Write).
type Cert struct{ *pki.Cert }

// Write writes the certificate and key into dir as name.crt and name.key.
func (c *Cert) Write(t testing.TB, dir, name string) *Cert {
	t.Helper()
	if err := c.Cert.Write(dir, name); err != nil {
		t.Fatal(err)
	}
	return c
}
