package nodelink

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// ServerName is the name every node certificate carries and every node
// checks when it dials another: the certificate's issuer is what
// identifies a cluster member, not its address.
const ServerName = "node.parley.internal"

// MinSeed is the length of the CA seed: an Ed25519 private key seed.
const MinSeed = ed25519.SeedSize

// Leaf certificates live leafLifetime and are replaced once half of it has
// passed; their validity starts an hour early for clocks that lag.
const (
	leafLifetime = 30 * 24 * time.Hour
	clockSlack   = time.Hour
)

// ca is the cluster's certificate authority. Its Ed25519 key is derived from
// the seed, so every node holding the cluster key computes the same
// authority without any exchange, and nobody else can sign for it.
type ca struct {
	key  ed25519.PrivateKey
	cert *x509.Certificate
	pool *x509.CertPool
}

func newCA(seed []byte) (*ca, error) {
	if len(seed) < MinSeed {
		return nil, fmt.Errorf("nodelink: CA seed of %d bytes, want %d", len(seed), MinSeed)
	}
	key := ed25519.NewKeyFromSeed(seed[:MinSeed])
	pub := key.Public().(ed25519.PublicKey)
	skid := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Parley cluster CA"},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
		SubjectKeyId:          skid[:20],
	}
	// Ed25519 signatures are deterministic: every node makes the same bytes.
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("nodelink: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &ca{key: key, cert: cert, pool: pool}, nil
}

// issue makes a certificate for nodeID, valid for both ends of a link, with
// a fresh key that never leaves the process.
func (a *ca) issue(nodeID string, now time.Time, ext []pkix.Extension) (*tls.Certificate, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: nodeID},
		DNSNames:        []string{ServerName},
		NotBefore:       now.Add(-clockSlack),
		NotAfter:        now.Add(leafLifetime),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		AuthorityKeyId:  a.cert.SubjectKeyId,
		ExtraExtensions: ext,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		return nil, fmt.Errorf("nodelink: node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// leafSource hands out this node's certificate, replacing it once half its
// life has passed.
type leafSource struct {
	ca     *ca
	nodeID string
	now    func() time.Time
	ext    []pkix.Extension // versionExtension's

	mu   sync.Mutex
	cert *tls.Certificate
}

func (s *leafSource) get() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.cert != nil && now.Before(s.cert.Leaf.NotBefore.Add(clockSlack+leafLifetime/2)) {
		return s.cert, nil
	}
	c, err := s.ca.issue(s.nodeID, now, s.ext)
	if err != nil {
		return nil, err
	}
	s.cert = c
	return c, nil
}

// PeerNode returns the node ID a verified peer certificate names.
func PeerNode(cs tls.ConnectionState) (string, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return "", errors.New("nodelink: peer not verified")
	}
	return cs.PeerCertificates[0].Subject.CommonName, nil
}
