package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"sync"
	"time"
)

// Self-signed certificates are what browsers accept through WebTransport's
// serverCertificateHashes: ECDSA, valid for at most 14 days. The node makes a
// new one on every start, and rotates it while it runs: after SelfSignedRotate
// it makes the next one and publishes both hashes for SelfSignedOverlap, so
// that a client that fetched the hashes just before the switch still
// connects, then serves only the new one.
const (
	SelfSignedValidity = 10 * 24 * time.Hour
	SelfSignedRotate   = 5 * 24 * time.Hour
	SelfSignedOverlap  = time.Hour
	// certBackdate covers clocks a little behind the node's; it counts
	// toward the 14 days.
	certBackdate = 5 * time.Minute
	// certReloadEvery is how often certificate files are checked for a change.
	certReloadEvery = time.Minute
)

// Certs is the certificate of the HTTP/3 listener: either files given by the
// operator (reloaded when they change) or a short-lived self-signed one
// whose SHA-256 hashes the node publishes.
type Certs struct {
	selfSigned bool
	hosts      []string
	certFile   string
	keyFile    string
	log        *slog.Logger
	now        func() time.Time

	mu      sync.RWMutex
	cur     *tls.Certificate
	curHash [32]byte
	curAt   time.Time // when cur was made (self-signed) or its files' newest mtime
	next    *tls.Certificate
	nextAt  time.Time
	nextSum [32]byte
}

// SelfSignedCerts makes an ECDSA P-256 certificate for hosts (DNS names or
// IP addresses), valid for SelfSignedValidity from now.
func SelfSignedCerts(hosts []string, log *slog.Logger) (*Certs, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Certs{selfSigned: true, hosts: hosts, log: log, now: time.Now}
	cert, sum, err := selfSigned(hosts, c.now())
	if err != nil {
		return nil, err
	}
	c.cur, c.curHash, c.curAt = cert, sum, c.now()
	return c, nil
}

// FileCerts loads a certificate chain and key in PEM; Run reloads them when
// either file changes (as after a renewal).
func FileCerts(certFile, keyFile string, log *slog.Logger) (*Certs, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Certs{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	c.cur, c.curAt = &cert, c.filesTime()
	return c, nil
}

// SelfSigned tells whether the certificate is the node's own.
func (c *Certs) SelfSigned() bool { return c.selfSigned }

// TLSConfig returns a configuration serving the current certificate.
func (c *Certs) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c.mu.RLock()
			defer c.mu.RUnlock()
			return c.cur, nil
		},
	}
}

// Hashes returns the base64 SHA-256 of the DER certificates a client may
// be served, for serverCertificateHashes; none when the certificate is the
// operator's (browsers verify it the usual way).
func (c *Certs) Hashes() []string {
	if !c.selfSigned {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := []string{base64.StdEncoding.EncodeToString(c.curHash[:])}
	if c.next != nil {
		out = append(out, base64.StdEncoding.EncodeToString(c.nextSum[:]))
	}
	return out
}

// Run rotates a self-signed certificate, or reloads changed files, until
// ctx ends.
func (c *Certs) Run(ctx context.Context) error {
	t := time.NewTicker(certReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.tick(); err != nil {
				c.log.Error("tls certificate", "err", err)
			}
		}
	}
}

// tick does what is due: make the next self-signed certificate, switch to
// it, or reload the files.
func (c *Certs) tick() error {
	now := c.now()
	if !c.selfSigned {
		mt := c.filesTime()
		c.mu.RLock()
		same := !mt.After(c.curAt)
		c.mu.RUnlock()
		if same {
			return nil
		}
		cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
		if err != nil {
			return err // keep serving the old one; retried next tick
		}
		c.mu.Lock()
		c.cur, c.curAt = &cert, mt
		c.mu.Unlock()
		c.log.Info("tls certificate reloaded")
		return nil
	}
	c.mu.RLock()
	curAt, next, nextAt := c.curAt, c.next, c.nextAt
	c.mu.RUnlock()
	switch {
	case next == nil && now.Sub(curAt) >= SelfSignedRotate:
		cert, sum, err := selfSigned(c.hosts, now)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.next, c.nextSum, c.nextAt = cert, sum, now
		c.mu.Unlock()
	case next != nil && now.Sub(nextAt) >= SelfSignedOverlap:
		c.mu.Lock()
		c.cur, c.curHash, c.curAt = c.next, c.nextSum, c.nextAt
		c.next = nil
		c.mu.Unlock()
		c.log.Info("self-signed certificate rotated")
	}
	return nil
}

func (c *Certs) filesTime() time.Time {
	var t time.Time
	for _, f := range []string{c.certFile, c.keyFile} {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t
}

// selfSigned makes a certificate for hosts valid from now (a little before)
// for SelfSignedValidity, and returns it with the SHA-256 of its DER.
func selfSigned(hosts []string, now time.Time) (*tls.Certificate, [32]byte, error) {
	var sum [32]byte
	if len(hosts) == 0 {
		return nil, sum, errors.New("self-signed certificate: no host")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, sum, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, sum, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"Parley node (self-signed)"}},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(-certBackdate).Add(SelfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, sum, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, sum, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, sha256.Sum256(der), nil
}
