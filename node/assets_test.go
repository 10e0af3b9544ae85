package node

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"testing"

	"parley/web"
)

// TestStaticFilesCompressedAndRevalidated: widget.js, the console's files
// and the pages go gzipped to a browser that accepts it, carry an ETag, and
// a client holding the current copy gets 304 and no body; a URL with the
// file's hash may be cached for a year.
func TestStaticFilesCompressedAndRevalidated(t *testing.T) {
	t.Parallel()
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token"})
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	do := func(path string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", r.base+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for _, c := range []struct{ path, file string }{
		{"/widget.js", "widget.js"},
		{"/static/client.js", "static/client.js"},
		{"/static/agent.js", "static/agent.js"},
		{"/static/widget.css", "static/widget.css"},
		{"/demo", "demo.html"},
	} {
		raw, err := readStatic(web.FS(), c.file)
		if err != nil {
			t.Fatal(err)
		}
		resp, body := do(c.path, map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
			t.Fatalf("%s: %d, encoding %q, vary %q", c.path, resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		if !bytes.Equal(plain, raw) {
			t.Fatalf("%s: gzipped body is not the file", c.path)
		}
		t.Logf("%s: %d bytes, %d gzipped", c.path, len(raw), len(body))
		etag := resp.Header.Get("ETag")
		if etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("%s: ETag %q, Cache-Control %q", c.path, etag, resp.Header.Get("Cache-Control"))
		}
		// A returning visitor downloads nothing.
		if resp, body := do(c.path, map[string]string{"Accept-Encoding": "gzip", "If-None-Match": etag}); resp.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Fatalf("%s: revalidation %d with %d bytes", c.path, resp.StatusCode, len(body))
		}
		if resp, _ := do(c.path, map[string]string{"If-None-Match": `"stale"`}); resp.StatusCode != 200 {
			t.Fatalf("%s: a stale ETag got %d", c.path, resp.StatusCode)
		}
		// No gzip asked, or refused with q=0: the file as it is.
		for _, ae := range []string{"", "gzip;q=0, identity"} {
			if resp, body := do(c.path, map[string]string{"Accept-Encoding": ae}); resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, raw) {
				t.Fatalf("%s with Accept-Encoding %q: encoding %q", c.path, ae, resp.Header.Get("Content-Encoding"))
			}
		}
		// A content-hashed URL is immutable; another hash is not.
		hash := strings.Trim(etag, `"`)
		if resp, _ := do(c.path+"?v="+hash, nil); !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			t.Fatalf("%s?v=hash: Cache-Control %q", c.path, resp.Header.Get("Cache-Control"))
		}
		if resp, _ := do(c.path+"?v=0123", nil); resp.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("%s?v=other: Cache-Control %q", c.path, resp.Header.Get("Cache-Control"))
		}
	}
}

// TestClientModuleSharedOnce: the code the widget and the console share is
// in static/client.js only. The node serves /widget.js as that module and
// the widget's own code, each once, in one block, so that customers keep one
// script tag and the module's name stays off their pages; the console's
// page loads /static/client.js once, before agent.js; neither widget.js nor
// agent.js on disk holds the shared code again.
func TestClientModuleSharedOnce(t *testing.T) {
	t.Parallel()
	read := func(name string) string {
		t.Helper()
		b, err := fs.ReadFile(web.FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	client, widget, agent := read("static/client.js"), read("widget.js"), read("static/agent.js")

	// The shared code: its declarations and the transports it alone opens.
	shared := []string{
		"const ParleyClient = ",
		"function mergeMessage(", "function hlcCompare(", "function noteStamp(", "const vectorString = ",
		"function tsCompare(", "function transport(", "new WebTransport(", "new WebSocket(", "'/v1/transport'",
		"const storage = {", "function newId(", "function h(tag",
	}
	for _, s := range shared {
		if n := strings.Count(client, s); n != 1 {
			t.Errorf("client.js has %q %d times, want once", s, n)
		}
		for name, src := range map[string]string{"widget.js": widget, "static/agent.js": agent} {
			if strings.Contains(src, s) {
				t.Errorf("%s has %q: shared code is in client.js only", name, s)
			}
		}
	}
	for name, src := range map[string]string{"widget.js": widget, "static/agent.js": agent} {
		if !strings.Contains(src, "const C = ParleyClient;") {
			t.Errorf("%s does not use ParleyClient", name)
		}
	}

	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token"})
	resp, served := get(t, r.base+"/widget.js")
	if resp.StatusCode != 200 {
		t.Fatalf("/widget.js: %d", resp.StatusCode)
	}
	for _, part := range []struct{ name, src string }{{"client.js", client}, {"widget.js", widget}} {
		if n := strings.Count(served, part.src); n != 1 {
			t.Errorf("/widget.js holds %s %d times, want once", part.name, n)
		}
	}
	if n := strings.Count(served, "const ParleyClient = "); n != 1 {
		t.Errorf("/widget.js declares ParleyClient %d times", n)
	}
	// One block around both, client.js first: the widget's code sees the
	// module; the page does not.
	i, j := strings.Index(served, client), strings.Index(served, widget)
	open := strings.Index(served, "\n{\n")
	if open < 0 || !(open < i && i < j) || !strings.HasSuffix(served, widget+"}\n") {
		t.Errorf("/widget.js is not client.js then widget.js in one block (block at %d, client.js at %d, widget.js at %d)", open, i, j)
	}

	resp, page := get(t, r.base+"/agent")
	if resp.StatusCode != 200 {
		t.Fatalf("/agent: %d", resp.StatusCode)
	}
	const clientTag, agentTag = `<script src="/static/client.js" defer></script>`, `<script src="/static/agent.js" defer></script>`
	if n := strings.Count(page, "client.js"); n != 1 || !strings.Contains(page, clientTag) {
		t.Errorf("the console's page names client.js %d times, want once as %s", n, clientTag)
	}
	if ci, ai := strings.Index(page, clientTag), strings.Index(page, agentTag); ci < 0 || ai < 0 || ci > ai {
		t.Errorf("the console's page loads client.js at %d, agent.js at %d: client.js must come first", ci, ai)
	}
	if resp, body := get(t, r.base+"/static/client.js"); resp.StatusCode != 200 || body != client ||
		!strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Errorf("/static/client.js: %d %s, is the file: %v", resp.StatusCode, resp.Header.Get("Content-Type"), body == client)
	}
}
