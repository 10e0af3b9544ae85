package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"testing"
	"time"
)

func TestSelfSignedCertsForWebTransport(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	c := &Source{selfSigned: true, hosts: []string{"127.0.0.1", "::1", "localhost"}, log: nil, now: func() time.Time { return now }}
	cert, sum, err := selfSigned(c.hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	c.cur, c.curHash, c.curAt = cert, sum, now
	leaf := cert.Leaf
	// What Chromium requires of serverCertificateHashes.
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if v := leaf.NotAfter.Sub(leaf.NotBefore); v >= 14*24*time.Hour || v < 7*24*time.Hour {
		t.Fatalf("validity %v", v)
	}
	if !leaf.NotBefore.Before(now) || !leaf.NotAfter.After(now.Add(SelfSignedRotate+SelfSignedOverlap)) {
		t.Fatalf("not valid until the rotation: %v..%v", leaf.NotBefore, leaf.NotAfter)
	}
	if len(leaf.IPAddresses) != 2 || len(leaf.DNSNames) != 1 || leaf.VerifyHostname("127.0.0.1") != nil || leaf.VerifyHostname("::1") != nil {
		t.Fatalf("names %v %v", leaf.IPAddresses, leaf.DNSNames)
	}
	h0 := c.Hashes()
	if want := base64.StdEncoding.EncodeToString(sha256Of(cert.Certificate[0])); len(h0) != 1 || h0[0] != want {
		t.Fatalf("hashes %v, want [%s]", h0, want)
	}
	c.log = slog.New(slog.DiscardHandler)
	// Rotation: the next certificate is published first, then served alone.
	now = now.Add(SelfSignedRotate)
	c.tick()
	h1 := c.Hashes()
	if len(h1) != 2 || h1[0] != h0[0] {
		t.Fatalf("after the rotation time: %v", h1)
	}
	served, _ := c.TLSConfig().GetCertificate(nil)
	if served != cert {
		t.Fatal("switched before the overlap")
	}
	now = now.Add(SelfSignedOverlap)
	c.tick()
	h2 := c.Hashes()
	if len(h2) != 1 || h2[0] != h1[1] {
		t.Fatalf("after the overlap: %v, want [%s]", h2, h1[1])
	}
	served, _ = c.TLSConfig().GetCertificate(nil)
	if served == cert || !served.Leaf.NotAfter.After(now.Add(SelfSignedRotate)) {
		t.Fatal("not serving the new certificate")
	}
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
