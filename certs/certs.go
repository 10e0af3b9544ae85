// Package certs is the certificate source of the node's TLS listeners:
// HTTP/3 (WebTransport) always, and the TCP listener when it serves HTTPS.
// The operator's files, reloaded when they change; certificates from an
// ACME CA, obtained, cached and renewed; or, for HTTP/3 alone, short-lived
// self-signed ones whose hashes browsers pin (serverCertificateHashes),
// rotated while the node runs. It knows nothing of the gateway or the node:
// they take a tls.Config from it.
package certs

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
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
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

// Source is the certificate source of the node's TLS listeners (HTTP/3, and
// the TCP listener unless self-signed): files given by the operator
// (reloaded when they change), certificates from an ACME CA (obtained,
// cached and renewed by autocert), or a short-lived self-signed one whose
// SHA-256 hashes the node publishes for WebTransport.
type Source struct {
	selfSigned bool
	hosts      []string
	certFile   string
	keyFile    string
	acme       *autocert.Manager
	domains    []string // of acme; the first answers a handshake without SNI
	log        *slog.Logger
	now        func() time.Time
	// ReloadEvery is how often files are checked for a change, and ACME
	// certificates for being due; set before Run. Zero: every minute.
	ReloadEvery time.Duration

	mu      sync.RWMutex
	cur     *tls.Certificate
	curHash [32]byte
	curAt   time.Time // when cur was made (self-signed) or its files' newest mtime
	next    *tls.Certificate
	nextAt  time.Time
	nextSum [32]byte
}

// SelfSigned makes an ECDSA P-256 certificate for hosts (DNS names or
// IP addresses), valid for SelfSignedValidity from now.
func SelfSigned(hosts []string, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Source{selfSigned: true, hosts: hosts, log: log, now: time.Now}
	cert, sum, err := selfSigned(hosts, c.now())
	if err != nil {
		return nil, err
	}
	c.cur, c.curHash, c.curAt = cert, sum, c.now()
	return c, nil
}

// Files loads a certificate chain and key in PEM; Run reloads them when
// either file changes (as after a renewal).
func Files(certFile, keyFile string, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Source{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	c.cur, c.curAt = &cert, c.filesTime()
	return c, nil
}

// ACMEConfig configures ACME.
type ACMEConfig struct {
	// DirectoryURL is the ACME server's directory. Zero: Let's Encrypt's.
	DirectoryURL string
	// Domains are the names certificates are obtained for; a handshake
	// naming another is refused. Required.
	Domains []string
	// Email is the account's contact, for the CA's expiry notices. Zero:
	// none.
	Email string
	// CAFile is a PEM file of roots the ACME server's own HTTPS certificate
	// may chain to, beside the system's (a private CA, or a test server).
	// Zero: the system's roots only.
	CAFile string
	// CacheDir keeps the account key and the certificates across restarts
	// (mode 0700). Required.
	CacheDir string
	// RenewBefore is how long before expiry a certificate is renewed. Zero:
	// autocert's default, 30 days.
	RenewBefore time.Duration
}

// ACME returns a source that obtains certificates for cfg.Domains from
// an ACME CA on first need (Run asks at once), with the TLS-ALPN-01
// challenge answered on the TCP listener (which must be what the CA reaches
// on port 443 of each domain), keeps them in cfg.CacheDir and renews them
// before they expire.
func ACME(cfg ACMEConfig, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.Default()
	}
	if len(cfg.Domains) == 0 || cfg.CacheDir == "" {
		return nil, errors.New("acme: domains and a cache directory are required")
	}
	// A bounded client: Run's first request for a certificate holds up
	// the node's shutdown until it ends.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	client := &acme.Client{DirectoryURL: cfg.DirectoryURL, UserAgent: "parley",
		HTTPClient: &http.Client{Transport: &orderLocations{next: tr}, Timeout: time.Minute}}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("acme ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("acme ca: no PEM certificate in %s", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	domains := make([]string, 0, len(cfg.Domains))
	for _, d := range cfg.Domains {
		domains = append(domains, strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	m := &autocert.Manager{
		Prompt:      autocert.AcceptTOS,
		Cache:       autocert.DirCache(cfg.CacheDir),
		HostPolicy:  autocert.HostWhitelist(domains...),
		RenewBefore: cfg.RenewBefore,
		Client:      client,
		Email:       cfg.Email,
	}
	return &Source{acme: m, domains: domains, log: log, now: time.Now}, nil
}

// SelfSigned tells whether the certificate is the node's own.
func (c *Source) SelfSigned() bool { return c.selfSigned }

// ACME tells whether certificates come from an ACME CA.
func (c *Source) ACME() bool { return c.acme != nil }

// getCertificate serves a handshake: the ACME certificate of the name the
// client asked for (the first domain when it named none, as a client
// reaching the node by address does), or the current certificate.
func (c *Source) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c.acme != nil {
		h := *hello
		if h.ServerName == "" {
			h.ServerName = c.domains[0]
		}
		// autocert judges ECDSA support by TLS 1.2 cipher suites, which a
		// TLS 1.3-only hello (QUIC's) has none of, and would have a second,
		// RSA certificate issued for it; every TLS 1.3 client takes ECDSA
		// P-256 when its signature schemes say so.
		if tls13Only(&h) && slices.Contains(h.SignatureSchemes, tls.ECDSAWithP256AndSHA256) {
			h.CipherSuites = append(slices.Clone(h.CipherSuites), tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
		}
		return c.acme.GetCertificate(&h)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cur, nil
}

// tls13Only tells whether a client offers TLS 1.3 and nothing older.
func tls13Only(h *tls.ClientHelloInfo) bool {
	if len(h.SupportedVersions) == 0 {
		return false
	}
	for _, v := range h.SupportedVersions {
		if v < tls.VersionTLS13 {
			return false
		}
	}
	return true
}

// TLSConfig returns the configuration of HTTP/3: TLS 1.3, the current
// certificate.
func (c *Source) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: c.getCertificate,
	}
}

// TCPTLSConfig returns the configuration of the TCP listener: TLS 1.2 or
// 1.3 (Go prefers 1.3), HTTP/2 and HTTP/1.1, and the TLS-ALPN-01 challenge
// protocol when certificates come from ACME.
func (c *Source) TCPTLSConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: c.getCertificate,
	}
	if c.acme != nil {
		cfg.NextProtos = append(cfg.NextProtos, acme.ALPNProto)
	}
	return cfg
}

// Hashes returns the base64 SHA-256 of the DER certificates a client may
// be served, for serverCertificateHashes; none when the certificate is the
// operator's (browsers verify it the usual way).
func (c *Source) Hashes() []string {
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

// Run rotates a self-signed certificate, reloads changed files, or
// obtains the ACME certificates not held yet (autocert renews those it
// holds), until ctx ends.
func (c *Source) Run(ctx context.Context) error {
	every := c.ReloadEvery
	if every <= 0 {
		every = certReloadEvery
	}
	if c.acme != nil {
		c.obtain(ctx)
	}
	t := time.NewTicker(every)
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
func (c *Source) tick() error {
	now := c.now()
	if c.acme != nil {
		c.obtain(context.Background())
		return nil
	}
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

// obtain asks for the certificate of every domain, so that the first
// client need not wait for the CA; a failure is logged and retried at the
// next tick.
func (c *Source) obtain(ctx context.Context) {
	for _, d := range c.domains {
		if ctx.Err() != nil {
			return
		}
		hello := &tls.ClientHelloInfo{ServerName: d, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}
		if _, err := c.acme.GetCertificate(hello); err != nil {
			c.log.Error("acme certificate", "domain", d, "err", err)
		}
	}
}

func (c *Source) filesTime() time.Time {
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
