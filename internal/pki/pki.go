// Package pki makes certificate authorities and certificates: for tests (through testpki), and
// for tandem bench --tls, which measures a secured cluster without asking for certificates. A
// CA, member certificates (serverAuth and clientAuth, as a member both serves and dials),
// server-only and client certificates, written as PEM files; ECDSA P-256 keys, valid for a day.
// Operators make theirs with a standard tool (README, "A secured cluster").
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority that signs certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// Kind says what a certificate may be used for.
type Kind int

const (
	// Member: serverAuth and clientAuth.
	Member Kind = iota
	// Server: serverAuth only (a client port's certificate).
	Server
	// Client: clientAuth only (a client's certificate).
	Client
)

// Cert is a certificate and its key, as PEM, and the files they were written to (Write).
type Cert struct {
	CertPEM, KeyPEM   []byte
	CertFile, KeyFile string
	Leaf              *x509.Certificate
}

// NewCA makes a self-signed CA named name.
func NewCA(name string) (*CA, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	c, key, der, err := sign(tmpl, nil, nil)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: c, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// sign makes a fresh key and the certificate of tmpl for it, valid from an hour ago for a day,
// signed by parent with parentKey (nil: self-signed).
func sign(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)); err != nil {
		return nil, nil, nil, err
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return c, key, der, nil
}

// WriteCA writes the CA's certificate into dir as name and returns the file's path.
func (ca *CA) WriteCA(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, ca.CertPEM, 0o600)
}

// Issue makes a certificate of kind for common name cn, with orgs as its organizations (a
// client's roles) and names as its subject alternative names (IP addresses become IP SANs);
// 127.0.0.1, ::1 and localhost when names is empty.
func (ca *CA) Issue(kind Kind, cn string, orgs []string, names ...string) (*Cert, error) {
	if len(names) == 0 {
		names = []string{"127.0.0.1", "::1", "localhost"}
	}
	tmpl := &x509.Certificate{
		Subject:  pkix.Name{CommonName: cn, Organization: orgs},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	switch kind {
	case Member:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case Server:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case Client:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	leaf, key, der, err := sign(tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Cert{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		Leaf:    leaf,
	}, nil
}

// Write writes the certificate and key into dir as name.crt and name.key, and records the paths.
func (c *Cert) Write(dir, name string) error {
	c.CertFile = filepath.Join(dir, name+".crt")
	c.KeyFile = filepath.Join(dir, name+".key")
	if err := os.WriteFile(c.CertFile, c.CertPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(c.KeyFile, c.KeyPEM, 0o600)
}
