package node

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
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"parley/gateway/client"

	"github.com/quic-go/quic-go/http3"
)

type transportDoc struct {
	WebTransport *struct {
		URL        string   `json:"url"`
		CertHashes []string `json:"cert_hashes"`
	} `json:"webtransport"`
}

func transportOf(t *testing.T, base, host string) (transportDoc, *http.Response) {
	t.Helper()
	return transportWith(t, http.DefaultClient, base, host)
}

func transportWith(t *testing.T, client *http.Client, base, host string) (transportDoc, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/transport", nil)
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d transportDoc
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d, resp
}

// pinTLS verifies the server by its certificate's SHA-256, as a browser
// does with serverCertificateHashes.
func pinTLS(hashes []string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // replaced by the pin below
		NextProtos:         []string{http3.NextProtoH3},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			sum := sha256.Sum256(raw[0])
			for _, h := range hashes {
				if h == base64.StdEncoding.EncodeToString(sum[:]) {
					return nil
				}
			}
			return errors.New("certificate hash not published")
		},
	}
}

// TestWebTransportThroughTheNode: /v1/transport publishes the URL and the
// hash of the certificate the node serves; a client pinning that hash chats
// over WebTransport, HTTP/3 serves the pages too, and /metrics counts the
// connection and its messages under transport="wt".
func TestWebTransportThroughTheNode(t *testing.T) {
	t.Parallel()
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token"})
	_, tcpPort, _ := net.SplitHostPort(r.n.Addr())
	_, udpPort, _ := net.SplitHostPort(r.n.H3Addr())
	if udpPort != tcpPort {
		t.Logf("the HTTP port was taken on UDP: HTTP/3 on %s", udpPort)
	}
	doc, resp := transportOf(t, r.base, "")
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("/v1/transport headers: %v", resp.Header)
	}
	if doc.WebTransport == nil || doc.WebTransport.URL != "https://127.0.0.1:"+udpPort+"/v1/wt" || len(doc.WebTransport.CertHashes) != 1 {
		t.Fatalf("/v1/transport: %+v", doc.WebTransport)
	}
	// Every response advertises HTTP/3, and the CSP needs nothing more
	// when HTTP/3 has the HTTP port's number.
	page, _ := get(t, r.base+"/demo")
	if got, want := page.Header.Get("Alt-Svc"), `h3=":`+udpPort+`"; ma=86400`; got != want {
		t.Errorf("Alt-Svc %q, want %q", got, want)
	}
	if udpPort == tcpPort && page.Header.Get("Content-Security-Policy") != contentSecurityPolicy {
		t.Errorf("CSP %q", page.Header.Get("Content-Security-Policy"))
	}
	// localhost becomes the listening address; so does a Host that is not
	// a name (it would go into the CSP header otherwise).
	if d, _ := transportOf(t, r.base, "localhost:"+tcpPort); d.WebTransport.URL != "https://127.0.0.1:"+udpPort+"/v1/wt" {
		t.Errorf("URL for localhost: %s", d.WebTransport.URL)
	}
	raw, err := net.Dial("tcp", r.n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(raw, "GET /v1/transport HTTP/1.1\r\nHost: a;script-src=*\r\nConnection: close\r\n\r\n")
	answer, _ := io.ReadAll(raw)
	raw.Close()
	if !strings.HasPrefix(string(answer), "HTTP/1.1 400") && !strings.Contains(string(answer), `"url":"https://127.0.0.1:`+udpPort+`/v1/wt"`) {
		t.Errorf("odd Host answered %q", answer)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// HTTP/3 serves the same routes.
	h3 := &http3.Transport{TLSClientConfig: pinTLS(doc.WebTransport.CertHashes)}
	defer h3.Close()
	hresp, err := (&http.Client{Transport: h3}).Get("https://127.0.0.1:" + udpPort + "/healthz")
	if err != nil {
		t.Fatalf("GET over HTTP/3: %v", err)
	}
	body, _ := io.ReadAll(hresp.Body)
	hresp.Body.Close()
	if hresp.StatusCode != 200 || string(body) != "ok\n" || hresp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("HTTP/3 healthz: %d %q %v", hresp.StatusCode, body, hresp.Header)
	}

	// The client pins the hashes the node published.
	var pins [][]byte
	for _, h := range doc.WebTransport.CertHashes {
		b, _ := base64.StdEncoding.DecodeString(h)
		pins = append(pins, b)
	}
	d := client.NewWTDialer(client.WTConfig{CertHashes: pins, Sockets: 1})
	defer d.Close()
	c, err := d.Dial(ctx, doc.WebTransport.URL, client.Options{})
	if err != nil {
		t.Fatalf("webtransport: %v", err)
	}
	defer c.CloseNow()
	await := func(typ string) map[string]any {
		t.Helper()
		f, err := c.Await(ctx, func(f client.Frame) bool { return f.Type == typ }, nil)
		if err != nil {
			t.Fatalf("stream ended waiting for %s: %v", typ, err)
		}
		m, _ := f.Map()
		return m
	}
	// Two frames in one write, as lines.
	if err := c.WriteRaw(ctx, []byte(`{"type":"hello","v":1,"workspace":"demo","role":"visitor","name":"Ada"}`+"\n"+`{"type":"start","ref":"s"}`+"\n")); err != nil {
		t.Fatal(err)
	}
	await("welcome")
	conv := await("started")["conversation"].(string)
	if err := c.Write(ctx, []byte(`{"type":"send","ref":"m","conversation":"`+conv+`","id":"m-00000001","body":"hi over QUIC"}`)); err != nil {
		t.Fatal(err)
	}
	await("ack")

	_, metrics := get(t, r.base+"/metrics")
	for _, w := range []struct {
		re  string
		min float64
	}{
		{`parley_connections\{transport="wt"\} (\S+)`, 1},
		{`parley_connections_total\{transport="wt"\} (\S+)`, 1},
		{`parley_messages_in_total\{transport="wt"\} (\S+)`, 1},
		{`parley_delivery_seconds_count\{transport="wt"\} (\S+)`, 1},
	} {
		m := regexp.MustCompile(w.re).FindStringSubmatch(metrics)
		if m == nil {
			t.Errorf("metric %s missing", w.re)
			continue
		}
		if v, _ := strconv.ParseFloat(m[1], 64); v < w.min {
			t.Errorf("%s = %v, want >= %v", w.re, v, w.min)
		}
	}
	// Stopping the node tells the client to reconnect (1012) and closes
	// HTTP/3.
	r.stop()
	if e := await("error"); e["code"] != "unavailable" {
		t.Fatalf("got %v", e)
	}
	if code, err := c.CloseCode(ctx); code != 1012 {
		t.Fatalf("session closed with %d (%v), want 1012", code, err)
	}
}

// TestHTTP3OnItsOwnPort: with -h3 on another port, the CSP adds exactly
// that origin; with -h3 off there is no HTTP/3 at all.
func TestHTTP3OnItsOwnPortAndOff(t *testing.T) {
	t.Parallel()
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token", H3Addr: "127.0.0.1:0"})
	_, udpPort, _ := net.SplitHostPort(r.n.H3Addr())
	page, _ := get(t, r.base+"/agent")
	csp := page.Header.Get("Content-Security-Policy")
	if want := "connect-src 'self' https://127.0.0.1:" + udpPort + ";"; !strings.Contains(csp, want) {
		t.Errorf("CSP %q lacks %q", csp, want)
	}
	if strings.Count(csp, "https://") != 1 || page.Header.Get("Alt-Svc") != `h3=":`+udpPort+`"; ma=86400` {
		t.Errorf("CSP %q, Alt-Svc %q", csp, page.Header.Get("Alt-Svc"))
	}

	off := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token", H3Addr: "off"})
	doc, _ := transportOf(t, off.base, "")
	if doc.WebTransport != nil || off.n.H3Addr() != "" {
		t.Fatalf("-h3 off still offers %+v", doc.WebTransport)
	}
	page, _ = get(t, off.base+"/demo")
	if page.Header.Get("Alt-Svc") != "" || page.Header.Get("Content-Security-Policy") != contentSecurityPolicy {
		t.Errorf("-h3 off: Alt-Svc %q, CSP %q", page.Header.Get("Alt-Svc"), page.Header.Get("Content-Security-Policy"))
	}
	if strings.Contains(off.out.String(), "webtransport") {
		t.Errorf("banner mentions WebTransport: %s", off.out.String())
	}
}

// TestHTTP3WithCertificateFiles: with -tls-cert and -tls-key the node
// serves that certificate, verified the usual way, and publishes no hash.
func TestHTTP3WithCertificateFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, pool := writeTestCert(t, dir)
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token", TLSCert: certFile, TLSKey: keyFile})
	doc, _ := transportWith(t, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, r.base, "")
	if doc.WebTransport == nil || len(doc.WebTransport.CertHashes) != 0 {
		t.Fatalf("/v1/transport: %+v", doc.WebTransport)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := client.NewWTDialer(client.WTConfig{TLS: &tls.Config{RootCAs: pool}, Sockets: 1})
	defer d.Close()
	wc, err := d.Dial(ctx, doc.WebTransport.URL, client.Options{})
	if err != nil {
		t.Fatalf("webtransport with a CA-verified certificate: %v", err)
	}
	wc.CloseNow()
	u, _ := url.Parse(doc.WebTransport.URL)
	if u.Hostname() != "127.0.0.1" {
		t.Errorf("URL %s", doc.WebTransport.URL)
	}
}

func writeTestCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "parley test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTransportFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"-h3", "off"}, true},
		{[]string{"-h3", "127.0.0.1:9443"}, true},
		{[]string{"-h3", "nonsense"}, false},
		{[]string{"-tls-cert", "c.pem"}, false},
		{[]string{"-tls-key", "k.pem"}, false},
		{[]string{"-tls-cert", "c.pem", "-tls-key", "k.pem"}, true},
	} {
		if _, err := ParseFlags(c.args); (err == nil) != c.ok {
			t.Errorf("%v: err %v", c.args, err)
		}
	}
	if _, err := New(Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", TLSCert: "/nonexistent.pem", TLSKey: "/nonexistent.key"}, io.Discard, io.Discard); err == nil {
		t.Error("a node started with missing certificate files")
	}
}
