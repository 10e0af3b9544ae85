package node

import (
	"strings"
	"testing"
)

// TestEmailAdminRoutes: an API key may read the SMTP settings but not set
// them; tls none is refused on a node without -email-allow-plaintext; no
// read shows the password, and a change without one keeps it.
func TestEmailAdminRoutes(t *testing.T) {
	t.Parallel()
	r, root, key, must := acmeWithKey(t)
	const secret = "smtp-secret-0123456789"
	good := map[string]any{"host": "smtp.acme.test", "port": 587, "tls": "starttls", "user": "apikey", "password": secret, "from": "help@acme.test"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, c := range []struct {
		name, token string
		body        map[string]any
		status      int
	}{
		{"a key sets the secret", key, good, 403},
		{"tls none", root, with("tls", "none"), 400},
		{"tls ssl", root, with("tls", "ssl"), 400},
		{"port 0", root, with("port", 0), 400},
		{"from with a name", root, with("from", "Help <help@acme.test>"), 400},
		{"host with a path", root, with("host", "smtp.acme.test/x"), 400},
	} {
		if st, _, m := call(t, r.base, "PUT", "/v1/admin/workspaces/acme/email", c.token, c.body); st != c.status {
			t.Errorf("%s: %d %v, want %d", c.name, st, m, c.status)
		}
	}
	if m := must("PUT", "/v1/admin/workspaces/acme/email", root, good); m["password_set"] != true {
		t.Fatalf("PUT: %v", m)
	}
	delete(good, "password")
	good["host"] = "smtp2.acme.test"
	must("PUT", "/v1/admin/workspaces/acme/email", root, good)
	for _, tok := range []string{root, key} {
		m := must("GET", "/v1/admin/workspaces/acme/email", tok, nil)
		if b, _ := jsonString(m); strings.Contains(b, secret) || strings.Contains(b, "sealed") || m["password_set"] != true || m["host"] != "smtp2.acme.test" {
			t.Fatalf("GET shows %s", b)
		}
	}
	if st, _, _ := call(t, r.base, "DELETE", "/v1/admin/workspaces/acme/email", key, nil); st != 403 {
		t.Fatalf("a key deleted the settings: %d", st)
	}
	must("DELETE", "/v1/admin/workspaces/acme/email", root, nil)
	if st, _, _ := call(t, r.base, "GET", "/v1/admin/workspaces/acme/email", root, nil); st != 404 {
		t.Fatalf("GET after DELETE: %d", st)
	}
}
