package adminapi_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"parley/cluster"
	"parley/node/adminapi"
)

// fakeCluster answers the reads one test needs; any other method panics
// (the embedded interface is nil).
type fakeCluster struct {
	adminapi.Cluster
	sessions int
}

func (f *fakeCluster) Plans() []cluster.Plan { return []cluster.Plan{{Name: "free"}} }

func (f *fakeCluster) AuthenticateSession(string) (cluster.Operator, error) {
	f.sessions++
	return cluster.Operator{Workspace: "acme", ID: "ada", Role: cluster.RoleAdmin}, nil
}

type staleConfirmer struct{ adminapi.Confirmer }

func (staleConfirmer) Fresh() error { return errors.New("control plane out of reach") }

// The API is built from its Config alone: on a node out of touch with the
// control plane, sessions are refused before they are looked up, while the
// cluster administrator's token still works.
func TestStaleNodeRefusesSessionsNotTheRoot(t *testing.T) {
	c := &fakeCluster{}
	mux := http.NewServeMux()
	adminapi.New(adminapi.Config{AdminToken: "root-token", Cluster: c, Confirmer: staleConfirmer{}}).Register(mux)
	get := func(token string) (*httptest.ResponseRecorder, map[string]any) {
		r := httptest.NewRequest("GET", "/v1/admin/plans", nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		var body map[string]any
		json.Unmarshal(w.Body.Bytes(), &body)
		return w, body
	}
	if w, _ := get("root-token"); w.Code != 200 {
		t.Fatalf("root on a stale node: %d %s", w.Code, w.Body)
	}
	w, body := get("a-session-token")
	e, _ := body["error"].(map[string]any)
	if w.Code != 503 || e["code"] != "unavailable" || e["message"] != "control plane out of reach" {
		t.Fatalf("session on a stale node: %d %s", w.Code, w.Body)
	}
	if c.sessions != 0 {
		t.Fatalf("a stale node looked the session up %d times", c.sessions)
	}
	w, _ = get("")
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="parley"` {
		t.Fatalf("no token: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
}
