package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeNode answers the admin API's paths with canned replies and records
// what it was sent.
type fakeNode struct {
	*httptest.Server
	reqs []string // "METHOD /path?query auth body"
}

func newFakeNode(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *fakeNode {
	f := &fakeNode{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.reqs = append(f.reqs, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization")+" "+string(b))
		h(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	t.Setenv("PARLEY_NODE_URL", "")
	t.Setenv("PARLEY_TOKEN", "")
	t.Setenv("PARLEY_CLUSTER_KEY_FILE", "")
	t.Setenv("PARLEY_WORKSPACE", "")
	t.Chdir(t.TempDir())
	var o, e bytes.Buffer
	code = run(args, strings.NewReader(stdin), &o, &e)
	return o.String(), e.String(), code
}

// TestCLIFlagsAnywhere: global flags before or after the command, command
// flags before or after positional arguments, "--" ending the flags; the
// request carries the token, the escaped path and min_index.
func TestCLIFlagsAnywhere(t *testing.T) {
	f := newFakeNode(t, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"index": 9, "confirmed": []string{"n1", "n2"}})
	})
	out, errOut, code := runCLI(t, "", "key", "revoke", "k_0123456789abcdef01234567", "-workspace", "acme", "-node", f.URL, "-token", "tok", "-min-index", "7")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if want := "DELETE /v1/admin/workspaces/acme/keys/k_0123456789abcdef01234567?min_index=7 Bearer tok "; len(f.reqs) != 1 || f.reqs[0] != want {
		t.Fatalf("sent %q, want %q", f.reqs, want)
	}
	if !strings.Contains(out, "confirmed by:   n1, n2") {
		t.Fatalf("output:\n%s", out)
	}
	// "--" makes what follows positional, even if it looks like a flag
	// ("-json" is a valid workspace ID).
	out, errOut, code = runCLI(t, "", "-node", f.URL, "-token", "t", "workspace", "show", "--", "-json")
	if code != 0 || !strings.HasPrefix(f.reqs[1], "GET /v1/admin/workspaces/-json ") || strings.HasPrefix(out, "{") {
		t.Fatalf("exit %d, sent %q, output %s%s", code, f.reqs[1:], out, errOut)
	}
}

// TestCLIErrorsExplained: an API error body is exit 1 with its code, status
// and a hint; a reply that is not the API's (wrong -node) says so; a
// wrong command line is exit 2 and sends nothing.
func TestCLIErrorsExplained(t *testing.T) {
	f := newFakeNode(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/admin/workspaces/") {
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error":{"code":"conflict","message":"conversation acme/c1 is at version 3, not 2: conflict (current version 3)"}}`)
			return
		}
		http.NotFound(w, r)
	})
	_, errOut, code := runCLI(t, "", "-node", f.URL, "-token", "t", "assign", "-workspace", "acme", "c1", "bob", "-expect-version", "2")
	if code != 1 || !strings.Contains(errOut, "current version 3") || !strings.Contains(errOut, "(conflict, HTTP 409)") || !strings.Contains(errOut, "read it again") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	_, errOut, code = runCLI(t, "", "-node", f.URL, "-token", "t", "plans", "list")
	if code != 1 || !strings.Contains(errOut, "HTTP 404") || !strings.Contains(errOut, "is -node a Parley node") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	n := len(f.reqs)
	for _, args := range [][]string{
		{"assign", "-workspace", "acme", "c1"},                         // neither operator nor -unassign
		{"assign", "-workspace", "acme", "c/1", "bob"},                 // conversation format
		{"plans", "set", "Gold", "-seats", "1"},                        // plan name
		{"billing", "record", "-workspace", "acme", "-kind", "charge"}, // missing key and amount
		{"billing", "record", "-workspace", "acme", "-key", "k", "-kind", "charge", "-amount", "1", "-currency", "eur"},
		{"operator", "invite", "-workspace", "acme", "-email", "Bob <bob@x.test>", "-name", "Bob"},
		{"operator", "invite", "-workspace", "acme", "-email", "bob@x.test", "-name", "Bob", "-role", "owner"},
		{"workspace", "delete", "acme"},    // no -yes
		{"workspace", "update", "acme"},    // nothing to change
		{"cluster", "remove-member", "n3"}, // no -yes
	} {
		_, errOut, code := runCLI(t, "", append([]string{"-node", f.URL, "-token", "t"}, args...)...)
		if code != 2 || !strings.Contains(errOut, "usage: parleyctl") {
			t.Errorf("%v: exit %d, want 2 with usage\n%s", args, code, errOut)
		}
	}
	if len(f.reqs) != n {
		t.Fatalf("wrong command lines sent %q", f.reqs[n:])
	}
}
