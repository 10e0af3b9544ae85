package node

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"parley/cluster"
)

// The admin API's webhook routes: the secret is shown by the creation and
// the rotation only, never by an API key's request; a literal private
// address is refused unless the node allows them.
func TestWebhookAdminRoutes(t *testing.T) {
	t.Parallel()
	r, root, key, must := acmeWithKey(t)
	events := []string{"conversation.created", "message.created"}
	for _, c := range []struct {
		name, token string
		body        map[string]any
		status      int
	}{
		{"key makes a secret", key, map[string]any{"url": "https://crm.example/hook", "events": events}, 403},
		{"loopback", root, map[string]any{"url": "http://127.0.0.1:9/hook", "events": events}, 400},
		{"localhost", root, map[string]any{"url": "http://localhost:9/hook", "events": events}, 400},
		{"metadata address", root, map[string]any{"url": "http://169.254.169.254/", "events": events}, 400},
		{"unknown event", root, map[string]any{"url": "https://crm.example/hook", "events": []string{"message.sent"}}, 400},
		{"ftp", root, map[string]any{"url": "ftp://crm.example/hook", "events": events}, 400},
	} {
		if st, _, m := call(t, r.base, "POST", "/v1/admin/workspaces/acme/webhooks", c.token, c.body); st != c.status {
			t.Errorf("%s: %d %v, want %d", c.name, st, m, c.status)
		}
	}
	made := must("POST", "/v1/admin/workspaces/acme/webhooks", root, map[string]any{"url": "https://crm.example/hook", "events": events})
	secret, _ := made["secret"].(string)
	hook := made["webhook"].(map[string]any)
	id := hook["id"].(string)
	if !strings.HasPrefix(secret, "whsec_") || !strings.HasPrefix(id, "wh_") {
		t.Fatalf("created: %v", made)
	}
	st, _, list := call(t, r.base, "GET", "/v1/admin/workspaces/acme/webhooks", key, nil)
	if st != 200 {
		t.Fatalf("key lists: %d", st)
	}
	_ = list
	for _, path := range []string{"/v1/admin/workspaces/acme/webhooks", "/v1/admin/workspaces/acme/webhooks/" + id} {
		_, _, m := call(t, r.base, "GET", path, root, nil)
		if b, _ := jsonString(m); strings.Contains(b, secret) || strings.Contains(b, "sealed") {
			t.Fatalf("%s shows the secret: %s", path, b)
		}
	}
	if st, _, _ := call(t, r.base, "POST", "/v1/admin/workspaces/acme/webhooks/"+id+"/rotate", key, map[string]any{"overlap": "1h"}); st != 403 {
		t.Fatalf("a key rotated the secret: %d", st)
	}
	rot := must("POST", "/v1/admin/workspaces/acme/webhooks/"+id+"/rotate", root, map[string]any{"overlap": "1h"})
	if s2, _ := rot["secret"].(string); !strings.HasPrefix(s2, "whsec_") || s2 == secret || rot["previous_valid_until"] == nil {
		t.Fatalf("rotated: %v", rot)
	}
	if d := must("GET", "/v1/admin/workspaces/acme/webhooks/"+id+"/dead-letters", key, nil); len(d["dead_letters"].([]any)) != 0 {
		t.Fatalf("dead letters: %v", d)
	}
	must("POST", "/v1/admin/workspaces/acme/webhooks/"+id+"/redeliver", key, nil)
	must("DELETE", "/v1/admin/workspaces/acme/webhooks/"+id, key, nil)
	if st, code, _ := call(t, r.base, "GET", "/v1/admin/workspaces/acme/webhooks/"+id, root, nil); st != 404 {
		t.Fatalf("deleted webhook: %d %s", st, code)
	}
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// acmeWithKey runs a node with workspace acme and an API key of it; must
// calls the admin API and fails the test unless it answers 200.
func acmeWithKey(t *testing.T) (r *running, root, key string, must func(method, path, token string, body any) map[string]any) {
	t.Helper()
	dir := t.TempDir()
	r = runNode(t, Config{DataDir: dir, NoDemo: true, passwordIterations: cluster.MinPasswordIterations})
	root, err := AdminToken(filepath.Join(dir, "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	must = func(method, path, token string, body any) map[string]any {
		t.Helper()
		st, code, m := call(t, r.base, method, path, token, body)
		if st != 200 {
			t.Fatalf("%s %s: %d %s %v", method, path, st, code, m)
		}
		return m
	}
	must("POST", "/v1/admin/workspaces", root, map[string]any{"id": "acme", "name": "Acme"})
	key = must("POST", "/v1/admin/workspaces/acme/keys", root, map[string]any{"name": "crm"})["key"].(string)
	return r, root, key, must
}
