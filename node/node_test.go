package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/cluster"
	"parley/gateway"
	"parley/internal/syncbuf"
)

// syncBuffer is a bytes.Buffer safe for the node's concurrent writers.
type syncBuffer = syncbuf.Buffer

type running struct {
	n      *Node
	base   string
	logs   *syncBuffer
	out    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func runNode(t *testing.T, cfg Config) *running {
	t.Helper()
	cfg.HTTPAddr = "127.0.0.1:0"
	if cfg.Embedder == "" {
		// Only the tests of the embedding feature load the model.
		cfg.Embedder = embedderOff
	}
	logs, out := &syncBuffer{}, &syncBuffer{}
	n, err := New(cfg, logs, out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{n: n, base: "http://" + n.Addr(), logs: logs, out: out, cancel: cancel, done: make(chan error, 1)}
	ready := http.DefaultClient
	if n.https {
		// Tests that check the certificate make clients of their own.
		r.base = "https://" + n.Addr()
		ready = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	go func() { r.done <- n.Run(ctx) }()
	t.Cleanup(r.stop)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := ready.Get(r.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return r
			}
		}
	}
	t.Fatal("node never ready")
	return nil
}

func (r *running) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel = nil
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestNodeServesPagesWithSecurityHeaders(t *testing.T) {
	t.Parallel()
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token"})
	cases := []struct {
		path, wantType, wantBody string
		crossOrigin              bool
	}{
		{"/demo", "text/html", `src="/widget.js"`, false},
		{"/agent", "text/html", "agent.js", false},
		{"/widget.js", "javascript", "hello", true},
		{"/static/agent.js", "javascript", "", true},
		{"/static/widget.css", "text/css", "", true},
	}
	for _, c := range cases {
		resp, body := get(t, r.base+c.path)
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), c.wantType) || !strings.Contains(body, c.wantBody) {
			t.Errorf("%s: %d %s, body has %q: %v", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.wantBody, strings.Contains(body, c.wantBody))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", c.path, csp)
		}
		if hsts := resp.Header.Get("Strict-Transport-Security"); hsts != "" {
			t.Errorf("%s: HSTS %q over plain HTTP", c.path, hsts)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: missing security headers: %v", c.path, resp.Header)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin") == "*"; got != c.crossOrigin {
			t.Errorf("%s: cross-origin %v, want %v", c.path, got, c.crossOrigin)
		}
	}
	if resp, _ := get(t, r.base+"/static/"); resp.StatusCode != 404 {
		t.Errorf("directory listing served: %d", resp.StatusCode)
	}
	if resp, _ := get(t, r.base+"/static/../node.go"); resp.StatusCode == 200 {
		t.Errorf("path traversal served a file")
	}
}

func TestNodeHealthAndMetrics(t *testing.T) {
	t.Parallel()
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token"})
	if resp, body := get(t, r.base+"/healthz"); resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	_, body := get(t, r.base+"/metrics")
	for _, name := range []string{"parley_store_commit_seconds", "parley_store_batch_size", "go_goroutines", "process_resident_memory_bytes",
		"parley_raft_leader 1", "parley_raft_term", "parley_raft_commit_index", "parley_raft_applied_index", `parley_raft_state{state="Leader"} 1`,
		"parley_raft_apply_seconds_count", "parley_raft_voters 1"} {
		if !strings.Contains(body, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	r.stop()
	if _, err := http.Get(r.base + "/readyz"); err == nil {
		t.Fatal("still serving after stop")
	}
}

func TestDemoWorkspaceSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := runNode(t, Config{DataDir: dir})
	if !strings.Contains(r.out.String(), "/agent#token=") {
		t.Fatalf("banner lacks the console URL: %s", r.out.String())
	}
	token, err := os.ReadFile(filepath.Join(dir, "demo-agent-token"))
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(token))
	r.stop()
	// The token itself is in no database file (store, Raft log,
	// snapshots): only its hash.
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "demo-agent-token" {
			return err
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(tok)) {
			t.Errorf("the operator token is stored in clear in %s", p)
		}
		return nil
	})
	r2 := runNode(t, Config{DataDir: dir})
	if !strings.Contains(r2.out.String(), tok) {
		t.Fatalf("restart changed the demo token: %s", r2.out.String())
	}
	ag, err := r2.n.auth.Agent(context.Background(), "demo", tok)
	if err != nil || ag.ID == "" {
		t.Fatalf("stored token refused after restart: %v", err)
	}
	for _, c := range []struct{ ws, tok string }{{"demo", tok + "x"}, {"other", tok}, {"demo", ""}} {
		if _, err := r2.n.auth.Agent(context.Background(), c.ws, c.tok); !errors.Is(err, gateway.ErrAuth) {
			t.Errorf("workspace %q, token %q: %v, want ErrAuth", c.ws, c.tok, err)
		}
	}
}

func TestNodeLogsAreRedacted(t *testing.T) {
	t.Parallel()
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token"})
	r.n.log.Info("visitor wrote ada@example.com and +44 20 7946 0958", "name", "Ada Lovelace", "conversation", "c_0123")
	logs := r.logs.String()
	// Pieces of the logged text that no timestamp or port can contain.
	for _, pii := range []string{"ada@example.com", "20 7946", "7946 0958", "Lovelace"} {
		if strings.Contains(logs, pii) {
			t.Errorf("log holds %q: %s", pii, logs)
		}
	}
	if !strings.Contains(logs, "c_0123") {
		t.Errorf("log lost non-personal data: %s", logs)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"-agent-token", "short"}, false},
		{[]string{"-log-level", "loud"}, false},
		{[]string{"extra"}, false},
		{[]string{"-http", "127.0.0.1:9999", "-node", "n7"}, true},
		{[]string{"-join", "127.0.0.1:8080,127.0.0.2:8080", "-raft-addr", "127.0.0.1:7000", "-region", "eu", "-voter", "no"}, true},
		{[]string{"-join", "nohostport"}, false},
		{[]string{"-raft-addr", "7000"}, false},
		{[]string{"-voter", "maybe"}, false},
		{[]string{"-region", "EU West"}, false},
		{[]string{"-lease", "-1s"}, false},
		{[]string{"-ip-message-rate", "5", "-ip-message-burst", "20", "-ip-start-rate", "0.1", "-ip-start-burst", "5", "-address-share", "0.5"}, true},
		{[]string{"-address-share", "1.5"}, false},
		{[]string{"-send-queue-bytes", "1048576"}, true},
		{[]string{"-send-queue-bytes", "1000"}, false},
		{[]string{"-shed-behind", "256"}, true},
		{[]string{"-shed-behind", "8"}, false},
		{[]string{"-shed-behind", "-1"}, false},
		{[]string{"-heap-floor", "0"}, true},
		{[]string{"-heap-floor", "-1"}, false},
		{[]string{"-heap-floor", "17179869185"}, false},
	}
	for _, c := range cases {
		_, err := ParseFlags(c.args)
		if (err == nil) != c.ok {
			t.Errorf("%v: err %v", c.args, err)
		}
	}
}

func TestNotReadyWhenTheStoreFails(t *testing.T) {
	t.Parallel()
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token"})
	r.n.store.Close() // as a broken store would: it takes no more changes
	resp, body := get(t, r.base+"/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "store") {
		t.Fatalf("readyz with a dead store: %d %q", resp.StatusCode, body)
	}
}

// A step of New that fails closes what the steps before it opened: the
// same data directory opens again at once (bbolt's file locks of the
// store and the Raft log are free, the listeners' ports too).
func TestNewClosesWhatItOpenedOnError(t *testing.T) {
	t.Parallel()
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	cfg := Config{DataDir: dir, NoDemo: true, Region: "eu", HTTPAddr: "127.0.0.1:0", H3Addr: busy.LocalAddr().String(), Embedder: embedderOff, passwordIterations: cluster.MinPasswordIterations}
	if _, err := New(cfg, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "listen udp") {
		t.Fatalf("New with its HTTP/3 port taken: %v", err)
	}
	cfg.H3Addr = h3Off
	n, err := New(cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("New again on the same directory: %v", err)
	}
	if err := n.opened.close(); err != nil {
		t.Fatal(err)
	}
}
