package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/internal/eventually"
	"parley/internal/gotool"
	"parley/internal/localcluster"

	"github.com/quic-go/quic-go/http3"
)

// pebbleVersion is the ACME test server the ACME test runs; `make
// test-deps` installs it into ~/.cache/parley/pebble/VERSION (PEBBLE_DIR).
const pebbleVersion = "v2.10.3"

// pebbleBinary finds pebble: $PARLEY_PEBBLE, else the cache `make
// test-deps` fills, else it is built there now from the module proxy.
func pebbleBinary(t *testing.T) string {
	t.Helper()
	dir, err := gotool.CacheDir("pebble", pebbleVersion)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := gotool.Binary("PARLEY_PEBBLE", dir, "pebble", "github.com/letsencrypt/pebble/v2/cmd/pebble@"+pebbleVersion, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// testCA makes a CA and a certificate it signs for 127.0.0.1 and
// localhost, for pebble's own HTTPS listeners.
func testCA(t *testing.T, dir string) (caFile, certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return caFile, certFile, keyFile, pool
}

// loopbackDNS answers every A question with 127.0.0.1 and every other
// with no record, over TCP (pebble's resolver asks over TCP), so that
// pebble validates the TLS-ALPN-01 challenge against the node on loopback.
func loopbackDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				for {
					var l [2]byte
					if _, err := io.ReadFull(c, l[:]); err != nil {
						return
					}
					q := make([]byte, binary.BigEndian.Uint16(l[:]))
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					out := dnsAnswer(q)
					if out == nil {
						return
					}
					c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(out))))
					c.Write(out)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// dnsAnswer answers a query of one question: 127.0.0.1 for A, nothing
// for any other type; nil for what it cannot read.
func dnsAnswer(q []byte) []byte {
	n := len(q)
	if n < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	end := 12 // the question's name, then type and class
	for end < n && q[end] != 0 {
		end += int(q[end]) + 1
	}
	end += 5
	if end > n {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[end-4 : end-2])
	out := append([]byte{}, q[:2]...)
	out = append(out, 0x84, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // response, authoritative
	out = append(out, q[12:end]...)
	if qtype == 1 {
		binary.BigEndian.PutUint16(out[6:8], 1)
		out = append(out, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
	}
	return out
}

// freePort is a port on 127.0.0.1 below the kernel's ephemeral range
// (localcluster.FreeAddr): one taken from ":0" and given back could be
// handed to another test's connection before the node bound it (seen as
// "address already in use" in TestJoinListNamingItselfBootstraps).
func freePort(t *testing.T) int {
	t.Helper()
	addr, err := localcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(addr)
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestACMECertificateFromPebble: a node with -acme-domains gets its
// certificate from a real ACME server (pebble, validating the TLS-ALPN-01
// challenge for real against the node's TCP listener on loopback) and
// serves it on HTTPS, WebSocket and HTTP/3; the certificate is kept in the
// data directory.
func TestACMECertificateFromPebble(t *testing.T) {
	t.Parallel()
	const domain = "edge.parley.test"
	bin := pebbleBinary(t)
	dir := t.TempDir()
	caFile, certFile, keyFile, caPool := testCA(t, dir)

	// The node first: pebble must know the port to validate on.
	dataDir := t.TempDir()
	acmePort, mgmtPort := freePort(t), freePort(t)
	cfg := Config{
		DataDir: dataDir, AgentToken: "0123456789abcdef-token", HTTPAddr: "127.0.0.1:0", Embedder: embedderOff,
		ACMEDomains: []string{domain}, ACMEDir: fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort), ACMECA: caFile,
		TLSReload: 200 * time.Millisecond,
	}
	logs := &syncBuffer{}
	n, err := New(cfg, logs, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	nodePort := n.ln.Addr().(*net.TCPAddr).Port

	pcfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       freePort(t),
		"tlsPort":                        nodePort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"profiles":                       map[string]any{"default": map[string]any{"description": "test", "validityPeriod": 7776000}},
	}}
	b, _ := json.Marshal(pcfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	os.WriteFile(cfgFile, b, 0o600)
	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", loopbackDNS(t))
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	pebbleLog := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = pebbleLog, pebbleLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("pebble:\n%s\nnode:\n%s", pebbleLog, logs)
		}
	})
	// Pebble's root, which it makes at start; then the node runs (a
	// failed order is retried only a minute later).
	mgmt := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}}, Timeout: 5 * time.Second}
	var rootPEM []byte
	eventually.Holds(t, 30*time.Second, "pebble's root", holds(func() bool {
		resp, err := mgmt.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		rootPEM, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == 200
	}))
	eventually.Holds(t, 30*time.Second, "pebble's directory", holds(func() bool {
		resp, err := mgmt.Get(cfg.ACMEDir)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble root: %q", rootPEM)
	}
	tlsCfg := &tls.Config{RootCAs: roots, ServerName: domain}

	// The node obtains its certificate by itself (no client asked yet).
	eventually.Holds(t, 60*time.Second, "certificate in the data directory", holds(func() bool {
		_, err := os.Stat(filepath.Join(dataDir, "acme", domain))
		return err == nil
	}))
	c, err := tls.Dial("tcp", n.Addr(), tlsCfg)
	if err != nil {
		t.Fatalf("TLS handshake verified against pebble's root: %v", err)
	}
	leaf := c.ConnectionState().PeerCertificates[0]
	c.Close()
	if !strings.Contains(leaf.Issuer.CommonName, "Pebble") || leaf.VerifyHostname(domain) != nil {
		t.Fatalf("certificate issued by %q for %v", leaf.Issuer.CommonName, leaf.DNSNames)
	}
	// A client that names no server (by address) gets the same.
	c, err = tls.Dial("tcp", n.Addr(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if !c.ConnectionState().PeerCertificates[0].Equal(leaf) {
		t.Error("no-SNI handshake: another certificate")
	}
	c.Close()

	base := "https://" + n.Addr()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
	eventually.Holds(t, 30*time.Second, "ready", holds(func() bool {
		resp, err := hc.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}))
	if _, code := dialWS(t, hc, base, nil); code != http.StatusSwitchingProtocols {
		t.Fatalf("wss with the ACME certificate: %d", code)
	}
	h3 := &http.Client{Transport: &http3.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
	defer h3.Transport.(*http3.Transport).Close()
	resp, err := h3.Get("https://" + n.H3Addr() + "/healthz")
	if err != nil {
		t.Fatalf("HTTP/3 with the ACME certificate: %v", err)
	}
	resp.Body.Close()
	if resp.TLS == nil || !resp.TLS.PeerCertificates[0].Equal(leaf) {
		t.Error("HTTP/3 served another certificate")
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over HTTP/3 with an ACME certificate")
	}
}
