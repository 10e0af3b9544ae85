package adminapi_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"parley/node/adminapi"
)

// The runtime's profiles are the cluster administrator's: no token is
// 401, a workspace admin's session 403, and only the root token gets a
// profile.
func TestProfilesNeedTheRootToken(t *testing.T) {
	c := &auditCluster{}
	mux := http.NewServeMux()
	api := adminapi.New(adminapi.Config{AdminToken: "root-token", Cluster: c, Confirmer: freshConfirmer{}})
	api.Register(mux)
	api.RegisterDebug(mux)
	get := func(path, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/allocs", "/debug/pprof/goroutine?debug=1",
		"/debug/pprof/mutex?seconds=1", "/debug/pprof/block?seconds=1", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=0.1",
		"/debug/pprof/threadcreate", "/debug/pprof/cmdline", "/debug/pprof/symbol"} {
		if w := get(path, ""); w.Code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", path, w.Code)
		}
		if w := get(path, "agent-token"); w.Code != http.StatusForbidden {
			t.Errorf("%s with an operator's session: %d, want 403", path, w.Code)
		}
		w := get(path, "root-token")
		if w.Code != http.StatusOK || w.Body.Len() == 0 {
			t.Errorf("%s with the root token: %d, %d bytes", path, w.Code, w.Body.Len())
		}
	}
	if w := get("/debug/pprof/goroutine?debug=1", "root-token"); !strings.Contains(w.Body.String(), "goroutine profile:") {
		t.Errorf("goroutine profile: %.200s", w.Body)
	}
	if len(c.entries()) == 0 {
		t.Error("no refusal was audited")
	}
	// Sampling is on only while a mutex or block profile is taken.
	if f := runtime.SetMutexProfileFraction(-1); f != 0 {
		t.Errorf("mutex profile fraction after the profile: %d, want 0", f)
	}
}
