package adminapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/cluster"
	"parley/internal/eventually"
	"parley/node/adminapi"
)

// auditCluster authenticates "agent-token" as bob, an agent of acme, and
// keeps the commands applied.
type auditCluster struct {
	adminapi.Cluster
	mu      sync.Mutex
	applied []cluster.Command
}

func (f *auditCluster) AuthenticateSession(raw string) (cluster.Operator, error) {
	if raw != "agent-token" {
		return cluster.Operator{}, cluster.ErrUnauthorized
	}
	return cluster.Operator{Workspace: "acme", ID: "bob", Role: cluster.RoleAgent}, nil
}

func (f *auditCluster) Plans() []cluster.Plan { return nil }

func (f *auditCluster) Apply(_ context.Context, cmd cluster.Command) (cluster.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, cmd)
	return cluster.Result{Index: uint64(len(f.applied))}, nil
}

// entries are the audit entries recorded so far, in order.
func (f *auditCluster) entries() []cluster.AuditEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []cluster.AuditEntry
	for _, cmd := range f.applied {
		if rec, ok := cmd.(cluster.RecordAudit); ok {
			out = append(out, rec.Entries...)
		}
	}
	return out
}

type freshConfirmer struct{ adminapi.Confirmer }

func (freshConfirmer) Fresh() error { return nil }

// What a request through the admin API did without applying a command is
// recorded by the route wrapper: a refused attempt whatever its method, a
// refused write; a read is not.
func TestRefusalsAreAudited(t *testing.T) {
	c := &auditCluster{}
	mux := http.NewServeMux()
	adminapi.New(adminapi.Config{AdminToken: "root-token", Cluster: c, Confirmer: freshConfirmer{}}).Register(mux)
	do := func(method, path, token, body string) int {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.RemoteAddr = "127.0.0.7:4000"
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w.Code
	}
	if code := do("POST", "/v1/admin/workspaces/acme/keys", "agent-token", `{"name":"mine"}`); code != 403 {
		t.Fatalf("agent mints a key: %d", code)
	}
	if code := do("GET", "/v1/admin/workspaces/acme/keys", "agent-token", ""); code != 403 {
		t.Fatalf("agent lists keys: %d", code)
	}
	if code := do("GET", "/v1/admin/plans", "agent-token", ""); code != 200 {
		t.Fatalf("agent lists plans: %d", code)
	}
	if code := do("GET", "/v1/admin/plans", "stolen-token", ""); code != 401 {
		t.Fatalf("bad token reads: %d", code)
	}
	if code := do("DELETE", "/v1/admin/workspaces/acme/keys/k_0123456789abcdef", "stolen-token", ""); code != 401 {
		t.Fatalf("bad token revokes: %d", code)
	}
	got := c.entries()
	bob := cluster.Actor{Kind: cluster.ActorOperator, Workspace: "acme", ID: "bob"}
	want := []struct {
		actor         cluster.Actor
		route, target string
		outcome       string
	}{
		{bob, "POST /v1/admin/workspaces/{ws}/keys", "", "forbidden"},
		{bob, "GET /v1/admin/workspaces/{ws}/keys", "", "forbidden"},
		{cluster.Actor{Kind: cluster.ActorAnonymous}, "DELETE /v1/admin/workspaces/{ws}/keys/{id}", "k_0123456789abcdef", "unauthorized"},
	}
	if len(got) != len(want) {
		t.Fatalf("recorded %+v", got)
	}
	for i, w := range want {
		e := got[i]
		if e.Actor != w.actor || e.Route != w.route || e.Target != w.target || e.Outcome != w.outcome || e.Action != "request" || e.Workspace != "acme" || e.Address != "127.0.0.7" {
			t.Errorf("entry %d: %+v, want %+v", i, e, w)
		}
	}
}

// A flood of refused attempts makes a bounded number of writes: beyond
// the burst they are counted, and a later entry says how many were not
// recorded.
func TestAuditFloodIsBounded(t *testing.T) {
	c := &auditCluster{}
	mux := http.NewServeMux()
	adminapi.New(adminapi.Config{AdminToken: "root-token", Cluster: c, Confirmer: freshConfirmer{}, Logger: slog.New(slog.DiscardHandler)}).Register(mux)
	attempt := func() {
		r := httptest.NewRequest("DELETE", "/v1/admin/workspaces/acme", nil)
		r.RemoteAddr = "127.0.0.8:4000"
		r.Header.Set("Authorization", "Bearer agent-token")
		mux.ServeHTTP(httptest.NewRecorder(), r)
	}
	const flood = 500
	start := time.Now()
	for range flood {
		attempt()
	}
	limit := 50 + int(10*time.Since(start).Seconds()) + 1 // burst + rate × time
	c.mu.Lock()
	writes := len(c.applied)
	c.mu.Unlock()
	if writes > limit || writes < 50 {
		t.Fatalf("%d attempts made %d writes, want the burst of 50 to %d", flood, writes, limit)
	}
	// Nothing is lost: every attempt is recorded or counted in a later
	// audit_dropped entry, which the next attempt recorded brings.
	eventually.Holds(t, 10*time.Second, "every attempt accounted for", func() error {
		attempt()
		recorded, dropped := 0, 0
		for _, e := range c.entries() {
			if e.Action == "audit_dropped" {
				dropped += e.Count
			} else {
				recorded++
			}
		}
		if recorded+dropped < flood {
			return fmt.Errorf("recorded %d + dropped %d of %d+ attempts", recorded, dropped, flood)
		}
		return nil
	})
}
