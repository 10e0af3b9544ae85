package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The e2e certificate for 127.0.0.1, made once by TestMain: nodes started
// with tlsArgs serve HTTPS with it, and every HTTP and WebSocket client of
// this package trusts it and the lab's CA (lab_test.go) through
// http.DefaultTransport.
var e2eCertFile, e2eKeyFile string

// tlsArgs are the flags of a node serving HTTPS on -http.
func tlsArgs() []string { return []string{"-tls-cert", e2eCertFile, "-tls-key", e2eKeyFile} }

func makeE2ECert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	e2eCertFile, e2eKeyFile = filepath.Join(dir, "e2e-cert.pem"), filepath.Join(dir, "e2e-key.pem")
	if err := writeCert(e2eCertFile, e2eKeyFile, der, key); err != nil {
		return err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	pool.AddCert(cert)
	if err := addLabCA(pool); err != nil {
		return err
	}
	http.DefaultTransport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
	return nil
}

// writeCert writes a certificate (DER) and its key as PEM files.
func writeCert(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

// TestClusterServesHTTPS: every node of a cluster serves HTTPS (and wss://)
// on -http, with HSTS, and answers plain HTTP with an error: the nodes
// themselves never use each other's -http listener (they talk over the
// node link), so replication and relays work as on plain HTTP.
func TestClusterServesHTTPS(t *testing.T) {
	tc := startCluster(t, 3, tlsArgs()...) // eu, us, ap
	for _, nd := range tc.nodes {
		resp, err := http.Get(nd.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.TLS == nil || resp.Header.Get("Strict-Transport-Security") == "" {
			t.Fatalf("%s: TLS %v, HSTS %q", nd.URL, resp.TLS != nil, resp.Header.Get("Strict-Transport-Security"))
		}
		if plain, err := http.Get("http://" + nd.Addr + "/healthz"); err == nil {
			plain.Body.Close()
			if plain.StatusCode == http.StatusOK {
				t.Fatalf("%s answered plain HTTP", nd.Addr)
			}
		}
	}
	ctx := testCtx(t, 90*time.Second)
	// Unpinned: a visitor on n1 and an agent on n2, over a replication link.
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	// Pinned to eu (n1 only): a visitor on the us node and an agent on the
	// ap node, both relayed to n1.
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "euco", "name": "EU Co", "region": "eu", "plan": "team"}, nil)
	for _, c := range []struct {
		ws                 string
		visitorOn, agentOn *nodeProc
	}{{"acme", tc.nodes[0], tc.nodes[1]}, {"euco", tc.nodes[1], tc.nodes[2]}} {
		agent := tc.agentOn(t, ctx, tc.nodes[0], c.agentOn, c.ws, "ann"+c.ws)
		visitor, _, conv := startVisitor(t, ctx, c.visitorOn, c.ws)
		say(t, ctx, visitor, conv, "msg-"+c.ws+"-1", "over https, from the visitor")
		if _, err := agent.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "msg-"+c.ws+"-1" }); err != nil {
			t.Fatalf("%s: the agent on %s never got the visitor's message: %v", c.ws, c.agentOn.Addr, err)
		}
		say(t, ctx, agent, conv, "msg-"+c.ws+"-2", "over https, from the agent")
		if _, err := visitor.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "msg-"+c.ws+"-2" }); err != nil {
			t.Fatalf("%s: the visitor on %s never got the reply: %v", c.ws, c.visitorOn.Addr, err)
		}
		visitor.close()
	}
}
