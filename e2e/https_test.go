package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"parley/internal/localcluster"

	"github.com/chromedp/chromedp"
)

// startHTTPSNode starts bin/parley serving HTTPS with a certificate of its
// own for 127.0.0.1 (no WebTransport: the browser's certificate exception
// covers TCP only), and returns it with the SHA-256 of the certificate's
// public key, which Chromium's --ignore-certificate-errors-spki-list takes.
func startHTTPSNode(t *testing.T, extraArgs ...string) (*nodeProc, string) {
	t.Helper()
	n, c := startTLSNode(t, parleyBin, extraArgs...)
	return n, c.spki
}

// selfSigned is a certificate for 127.0.0.1, its files and what a client
// needs to trust it.
type selfSigned struct {
	certFile, keyFile string
	pool              *x509.CertPool
	spki              string // base64 SHA-256 of the public key
}

func newSelfSigned(t testing.TB) selfSigned {
	t.Helper()
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	c := selfSigned{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool()}
	os.WriteFile(c.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	c.spki = base64.StdEncoding.EncodeToString(spki[:])
	c.pool.AddCert(cert)
	return c
}

// startTLSNode starts bin serving HTTPS only (-h3 off) with a self-signed
// certificate; the node's Client trusts it.
func startTLSNode(t testing.TB, bin string, extraArgs ...string) (*nodeProc, selfSigned) {
	t.Helper()
	c := newSelfSigned(t)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.pool}}, Timeout: 5 * time.Second}
	n := startNodeWith(t, localcluster.NodeConfig{Bin: bin, Addr: freeAddr(t), DataDir: t.TempDir(), Client: client,
		Args: append([]string{"-tls-cert", c.certFile, "-tls-key", c.keyFile, "-h3", "off"}, extraArgs...)})
	return n, c
}

// TestBrowserChatOverHTTPS: the real binary with -tls-cert serves the demo
// page and the console over HTTPS, and the widget and the console chat over
// wss:// on the same listener (a page loaded over HTTPS may not open ws://).
func TestBrowserChatOverHTTPS(t *testing.T) {
	if os.Getenv("PARLEY_SKIP_BROWSER") == "1" {
		t.Skip("PARLEY_SKIP_BROWSER=1")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is missing (%v): run `make test`, or set PARLEY_SKIP_BROWSER=1", err)
	}
	node, spki := startHTTPSNode(t)
	ctx := testCtx(t, 3*time.Minute)
	ct := &chatTest{t: t, node: node, dir: t.TempDir()}
	trust := chromedp.Flag("ignore-certificate-errors-spki-list", spki)
	agent := newBrowser(t, ctx, "agent", 1280, 820, trust)
	visitor := newBrowser(t, ctx, "visitor", 1100, 820, trust)
	ct.all = []*browser{agent, visitor}

	ct.do(agent, "opening the console", navigate(
		node.URL+"/agent#token="+url.QueryEscape(node.Token)+"&workspace=demo"))
	waitFor[bool](ct, agent, "the console to connect over wss",
		`location.protocol === 'https:' && document.querySelector('[data-testid=status]').dataset.state === 'ok'`)

	ct.do(visitor, "opening the demo page",
		navigate(node.URL+"/demo"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-launcher]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-panel]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=parley-agent-online][data-online=true]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=parley-input]`), visitorText),
		chromedp.Click(chromedp.CSS(`[data-testid=parley-send]`)),
	)
	waitFor[[]shownMessage](ct, visitor, "the visitor's message to be sent",
		messagesJS("parley-message", "parley-message-body", 1))
	convID := waitFor[string](ct, agent, "the conversation in the console",
		`(() => { const el = document.querySelector('[data-testid=conv-item]'); return el ? el.dataset.id : ''; })()`)
	ct.do(agent, "opening the conversation",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-testid=conv-item][data-id=%q]`, convID))))
	got := waitFor[[]shownMessage](ct, agent, "the visitor's message in the console",
		messagesJS("message", "message-body", 1))
	if got[0].Body != visitorText {
		ct.fail(agent, "the console shows %+v", got)
	}
	ct.checkPage(visitor, "after chatting over HTTPS")
	ct.checkPage(agent, "after chatting over HTTPS")
}
