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
		{"/static/agent.js", "static/agent.js"},
		{"/static/widget.css", "static/widget.css"},
		{"/demo", "demo.html"},
	} {
		raw, err := fs.ReadFile(web.FS(), c.file)
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
