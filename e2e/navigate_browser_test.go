package e2e

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestNavigateLoadsAgainAfterAFailedScript: a page whose script's first
// request fails (as Chromium fails its requests in flight with
// net::ERR_NETWORK_CHANGED) is loaded again by navigate, and its script
// runs; with chromedp.Navigate alone it never ran.
func TestNavigateLoadsAgainAfterAFailedScript(t *testing.T) {
	needBrowser(t)
	var scripts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(`<!doctype html><title>t</title><script src="/a.js"></script>`))
		case "/a.js":
			if scripts.Add(1) == 1 {
				// The first load fails (Chromium loads a request cut off on
				// a reused connection again by itself, so not that way).
				http.Error(w, "try again", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "text/javascript")
			w.Write([]byte(`window.scriptRan = true;`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := testCtx(t, time.Minute)
	b := newBrowser(t, ctx, "navigate", 800, 600)
	ct := &chatTest{t: t, dir: t.TempDir(), all: []*browser{b}}
	ct.do(b, "opening the page", navigate(srv.URL+"/"))
	if !eval[bool](ct, b, "the script's mark", `window.scriptRan === true`) {
		t.Fatalf("the script did not run after %d requests for it", scripts.Load())
	}
	if n := scripts.Load(); n != 2 {
		t.Fatalf("%d requests for the script, want 2", n)
	}
}
