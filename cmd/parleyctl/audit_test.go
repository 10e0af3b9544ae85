package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// `audit -pages 0` follows the cursor to the last page, passing the
// filters on every request; a workspace's log is read at its own route.
func TestAuditFollowsTheCursor(t *testing.T) {
	f := newFakeNode(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		entry := func(seq int) string {
			return fmt.Sprintf(`{"seq":%d,"index":%d,"at":"2026-12-06T10:00:00Z","actor":{"kind":"operator","workspace":"acme","id":"bob"},"address":"127.0.0.7","route":"POST /v1/admin/workspaces/{ws}/keys","action":"request","workspace":"acme","outcome":"forbidden"}`, seq, seq)
		}
		switch r.URL.Query().Get("before") {
		case "":
			fmt.Fprintf(w, `{"entries":[%s,%s],"next":2}`, entry(3), entry(2))
		case "2":
			fmt.Fprintf(w, `{"entries":[%s]}`, entry(1))
		default:
			w.WriteHeader(400)
		}
	})
	out, errOut, code := runCLI(t, "", "-node", f.URL, "-token", "tok", "audit", "-workspace", "acme", "-actor", "bob", "-limit", "2", "-pages", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if len(f.reqs) != 2 || !strings.HasPrefix(f.reqs[0], "GET /v1/admin/workspaces/acme/audit?actor=bob&limit=2 ") || !strings.HasPrefix(f.reqs[1], "GET /v1/admin/workspaces/acme/audit?actor=bob&before=2&limit=2 ") {
		t.Fatalf("requests %q", f.reqs)
	}
	if strings.Count(out, "forbidden") != 3 || !strings.Contains(out, "operator acme/bob") || !strings.Contains(out, "127.0.0.7") {
		t.Fatalf("output:\n%s", out)
	}
	out, _, code = runCLI(t, "", "-node", f.URL, "-token", "tok", "audit", "-cluster", "-limit", "2")
	if code != 0 || !strings.Contains(out, "more: add -before 2") || !strings.Contains(f.reqs[2], "/v1/admin/audit?limit=2&workspace=-") {
		t.Fatalf("one page of the cluster's log: %d %q\n%s", code, f.reqs[2], out)
	}
}
