package adminapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

// loginCluster answers sign-ins with err.
type loginCluster struct {
	adminapi.Cluster
	err     error
	logins  int
	applied []cluster.Command
}

func (f *loginCluster) Login(context.Context, string, string, string) (string, cluster.Session, error) {
	f.logins++
	return "", cluster.Session{}, f.err
}

func (f *loginCluster) Apply(_ context.Context, cmd cluster.Command) (cluster.Result, error) {
	f.applied = append(f.applied, cmd)
	return cluster.Result{Index: uint64(len(f.applied))}, nil
}

// A node checking as many passwords as it allows answers 503 busy with a
// Retry-After; an account in its back-off is refused 429 with the seconds
// to wait, before its password is checked at all.
func TestSignInRefusals(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	c := &loginCluster{err: fmt.Errorf("login: %w", cluster.ErrBusy)}
	mux := http.NewServeMux()
	adminapi.New(adminapi.Config{Cluster: c, Now: func() time.Time { return now }}).Register(mux)
	login := func(ip, email string) (*httptest.ResponseRecorder, string) {
		r := httptest.NewRequest("POST", "/v1/login", strings.NewReader(`{"workspace":"acme","email":"`+email+`","password":"guess guess"}`))
		r.RemoteAddr = ip + ":5000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		var body struct{ Error struct{ Code string } }
		json.Unmarshal(w.Body.Bytes(), &body)
		return w, body.Error.Code
	}
	if w, code := login("127.0.0.2", "ada@acme.test"); w.Code != 503 || code != "busy" || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("busy: %d %q Retry-After %q", w.Code, code, w.Header().Get("Retry-After"))
	}
	c.err = fmt.Errorf("login: %w", cluster.ErrUnauthorized)
	for i := range 7 { // from as many addresses, under each one's limit
		w, code := login(fmt.Sprintf("127.0.1.%d", i+1), "ada@acme.test")
		switch {
		case i < 5 && (w.Code != 401 || code != "unauthorized"):
			t.Fatalf("failure %d: %d %q", i+1, w.Code, code)
		case i >= 5 && (w.Code != 429 || code != "rate_limited" || w.Header().Get("Retry-After") != "1"):
			t.Fatalf("attempt %d after 5 failures: %d %q Retry-After %q", i+1, w.Code, code, w.Header().Get("Retry-After"))
		}
	}
	if c.logins != 6 {
		t.Fatalf("%d passwords checked, want 6: refused attempts must not cost a check", c.logins)
	}
	// Every failed check is in the audit log, with the email and address
	// it came with and never the password; the limits' refusals are not.
	var outcomes []string
	for i, cmd := range c.applied {
		rec, ok := cmd.(cluster.RecordAudit)
		if !ok || len(rec.Entries) != 1 {
			t.Fatalf("write %d: %#v, want a RecordAudit of one entry", i, cmd)
		}
		e := rec.Entries[0]
		if b, _ := json.Marshal(e); strings.Contains(string(b), "guess") {
			t.Fatalf("entry holds the password: %s", b)
		}
		if e.Action != "create_session" || e.Route != "POST /v1/login" || e.Workspace != "acme" || e.Actor != (cluster.Actor{Kind: "anonymous", Workspace: "acme", Email: "ada@acme.test"}) || !e.At.Equal(now) {
			t.Fatalf("entry %d: %+v", i, e)
		}
		if want := fmt.Sprintf("127.0.1.%d", i); i > 0 && e.Address != want {
			t.Fatalf("entry %d from %q, want %q", i, e.Address, want)
		}
		outcomes = append(outcomes, e.Outcome)
	}
	if strings.Join(outcomes, " ") != "busy unauthorized unauthorized unauthorized unauthorized unauthorized" {
		t.Fatalf("audited outcomes %v", outcomes)
	}
}
