package adminapi_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"parley/node/adminapi"
)

// The backup route streams what Config.Backup writes, to the cluster
// administrator only; a failure before the first byte is an error reply.
func TestBackupRouteIsTheRootsAndStreams(t *testing.T) {
	var fail error
	calls := 0
	c := &auditCluster{}
	mux := http.NewServeMux()
	adminapi.New(adminapi.Config{NodeID: "n1", AdminToken: "root-token", Cluster: c, Confirmer: freshConfirmer{}, Logger: slog.New(slog.DiscardHandler),
		Backup: func(ctx context.Context, w io.Writer) error {
			calls++
			if fail != nil {
				return fail
			}
			_, err := io.WriteString(w, "tar bytes")
			return err
		}}).Register(mux)
	get := func(token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/v1/admin/cluster/backup", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	w := get("root-token")
	if w.Code != 200 || w.Body.String() != "tar bytes" || w.Header().Get("Content-Type") != "application/x-tar" ||
		!strings.Contains(w.Header().Get("Content-Disposition"), `filename="parley-n1-`) {
		t.Fatalf("root: %d %q %v", w.Code, w.Body, w.Header())
	}
	// An operator of a workspace is not the cluster's administrator: the
	// copy holds every workspace's data.
	if w := get("agent-token"); w.Code != 403 || !strings.Contains(w.Body.String(), `"forbidden"`) {
		t.Fatalf("session: %d %s", w.Code, w.Body)
	}
	// Both are in the audit log, like an export.
	var got []string
	for _, e := range c.entries() {
		got = append(got, e.Route+" "+string(e.Actor.Kind)+" "+e.Outcome)
	}
	if want := "GET /v1/admin/cluster/backup root ok|GET /v1/admin/cluster/backup operator forbidden"; strings.Join(got, "|") != want {
		t.Fatalf("audited %q, want %q", got, want)
	}
	if calls != 1 {
		t.Fatalf("Backup called %d times", calls)
	}
	fail = errors.New("snapshot failed")
	if w := get("root-token"); w.Code != 500 || !strings.Contains(w.Body.String(), "snapshot failed") || w.Header().Get("Content-Type") == "application/x-tar" {
		t.Fatalf("failed backup: %d %q %v", w.Code, w.Body, w.Header())
	}
}
