package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/gateway/client"

	"parley/cluster"
)

// call makes an admin API request and returns the status, the error code
// and the decoded body.
func call(t *testing.T, base, method, path, token string, body any) (int, string, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	code := ""
	if e, ok := m["error"].(map[string]any); ok {
		code, _ = e["code"].(string)
		if msg, _ := e["message"].(string); msg == "" {
			t.Errorf("%s %s: error %q without a message", method, path, code)
		}
	}
	return resp.StatusCode, code, m
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := runNode(t, Config{DataDir: dir, NoDemo: true, Region: "eu", passwordIterations: cluster.MinPasswordIterations})
	root, err := AdminToken(filepath.Join(dir, "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	b := r.base
	must := func(method, path, token string, body any) map[string]any {
		t.Helper()
		st, code, m := call(t, b, method, path, token, body)
		if st != 200 {
			t.Fatalf("%s %s: %d %s %v", method, path, st, code, m)
		}
		return m
	}
	must("POST", "/v1/admin/workspaces", root, map[string]any{"id": "acme", "name": "Acme", "region": "eu", "plan": "team"})
	must("POST", "/v1/admin/workspaces", root, map[string]any{"id": "globex", "name": "Globex"})
	inv := must("POST", "/v1/admin/workspaces/acme/operators", root, map[string]any{"id": "ada", "email": "ada@acme.test", "name": "Ada", "role": "admin", "password": "correct horse battery"})
	if inv["password"] != nil {
		t.Fatalf("a given password was echoed: %v", inv)
	}
	gen := must("POST", "/v1/admin/workspaces/acme/operators", root, map[string]any{"id": "bob", "email": "bob@acme.test", "name": "Bob"})
	bobPass, _ := gen["password"].(string)
	if len(bobPass) < 16 {
		t.Fatalf("invitation without a one-time password: %v", gen)
	}
	admin := must("POST", "/v1/login", "", map[string]any{"workspace": "acme", "email": "ada@acme.test", "password": "correct horse battery"})["token"].(string)
	agent := must("POST", "/v1/login", "", map[string]any{"workspace": "acme", "email": "bob@acme.test", "password": bobPass})["token"].(string)
	key := must("POST", "/v1/admin/workspaces/acme/keys", admin, map[string]any{"name": "crm"})["key"].(string)
	if !strings.HasPrefix(key, "pk_") {
		t.Fatalf("key %q", key)
	}

	cases := []struct {
		name, method, path, token string
		body                      any
		status                    int
		code                      string
	}{
		{"no token", "GET", "/v1/admin/workspaces/acme", "", nil, 401, "unauthorized"},
		{"unknown token", "GET", "/v1/admin/workspaces/acme", "nope", nil, 401, "unauthorized"},
		{"unknown key", "GET", "/v1/admin/workspaces/acme", "pk_nope", nil, 401, "unauthorized"},
		{"bad workspace id", "POST", "/v1/admin/workspaces", root, map[string]any{"id": "Bad ID!", "name": "x"}, 400, "invalid"},
		{"unknown field", "POST", "/v1/admin/workspaces", root, map[string]any{"id": "x1", "name": "x", "colour": "red"}, 400, "invalid"},
		{"not JSON", "POST", "/v1/admin/workspaces", root, "{", 400, "invalid"},
		{"two values", "POST", "/v1/admin/workspaces", root, `{"id":"x2","name":"x"} {}`, 400, "invalid"},
		{"bad region", "POST", "/v1/admin/workspaces", root, map[string]any{"id": "x3", "name": "x", "region": "EU WEST"}, 400, "invalid"},
		{"unknown plan", "POST", "/v1/admin/workspaces", root, map[string]any{"id": "x4", "name": "x", "plan": "gold"}, 404, "not_found"},
		{"exists", "POST", "/v1/admin/workspaces", root, map[string]any{"id": "acme", "name": "Acme"}, 409, "exists"},
		{"admin creates workspaces", "POST", "/v1/admin/workspaces", admin, map[string]any{"id": "x5", "name": "x"}, 403, "forbidden"},
		{"admin of another workspace", "GET", "/v1/admin/workspaces/globex", admin, nil, 403, "forbidden"},
		{"key of another workspace", "GET", "/v1/admin/workspaces/globex/usage", key, nil, 403, "forbidden"},
		{"agent mints a key", "POST", "/v1/admin/workspaces/acme/keys", agent, map[string]any{"name": "k"}, 403, "forbidden"},
		{"key mints a key", "POST", "/v1/admin/workspaces/acme/keys", key, map[string]any{"name": "k"}, 403, "forbidden"},
		{"agent invites", "POST", "/v1/admin/workspaces/acme/operators", agent, map[string]any{"id": "eve", "email": "e@a.test", "name": "Eve"}, 403, "forbidden"},
		// A key must not make itself an admin session that outlives it.
		{"key invites an admin", "POST", "/v1/admin/workspaces/acme/operators", key, map[string]any{"id": "eve", "email": "e@a.test", "name": "Eve", "role": "admin", "password": "chosen by the key"}, 403, "forbidden"},
		{"key sets a password", "PUT", "/v1/admin/workspaces/acme/operators/ada/password", key, map[string]any{"password": "chosen by the key"}, 403, "forbidden"},
		{"key removes an operator", "DELETE", "/v1/admin/workspaces/acme/operators/bob", key, nil, 403, "forbidden"},
		{"remove a non-member", "DELETE", "/v1/admin/cluster/members/n9", root, nil, 404, "not_found"},
		{"admin moves region", "PATCH", "/v1/admin/workspaces/acme", admin, map[string]any{"region": "us"}, 403, "forbidden"},
		{"bad email", "POST", "/v1/admin/workspaces/acme/operators", admin, map[string]any{"id": "eve", "email": "nope", "name": "Eve"}, 400, "invalid"},
		{"short password", "POST", "/v1/admin/workspaces/acme/operators", admin, map[string]any{"id": "eve", "email": "e@a.test", "name": "Eve", "password": "short"}, 400, "invalid"},
		{"email taken", "POST", "/v1/admin/workspaces/acme/operators", admin, map[string]any{"id": "ada2", "email": "ada@acme.test", "name": "Ada"}, 409, "exists"},
		{"bad period", "GET", "/v1/admin/workspaces/acme/usage?period=2026-13", admin, nil, 400, "invalid"},
		{"agent reads billing", "GET", "/v1/admin/workspaces/acme/billing", agent, nil, 403, "forbidden"},
		{"admin records billing", "POST", "/v1/admin/workspaces/acme/billing", admin, map[string]any{"idempotency_key": "k1", "kind": "charge", "amount": 1}, 403, "forbidden"},
		{"bad billing kind", "POST", "/v1/admin/workspaces/acme/billing", root, map[string]any{"idempotency_key": "k1", "kind": "Charge!", "amount": 1}, 400, "invalid"},
		{"session of another workspace", "DELETE", "/v1/admin/workspaces/globex/sessions/s_000000000000000000000000", root, nil, 404, "not_found"},
		{"key not found", "DELETE", "/v1/admin/workspaces/acme/keys/k_000000000000000000000000", admin, nil, 404, "not_found"},
		{"unknown workspace", "GET", "/v1/admin/workspaces/nope", root, nil, 404, "not_found"},
		// The runtime's profiles, on the same listener: the root's only.
		{"profile without a token", "GET", "/debug/pprof/heap", "", nil, 401, "unauthorized"},
		{"admin takes a profile", "GET", "/debug/pprof/heap", admin, nil, 403, "forbidden"},
		{"key takes a profile", "GET", "/debug/pprof/goroutine", key, nil, 403, "forbidden"},
		{"root takes a profile", "GET", "/debug/pprof/goroutine?debug=1", root, nil, 200, ""},
		{"wrong password", "POST", "/v1/login", "", map[string]any{"workspace": "acme", "email": "ada@acme.test", "password": "wrong password"}, 401, "unauthorized"},
		{"unknown email", "POST", "/v1/login", "", map[string]any{"workspace": "acme", "email": "who@acme.test", "password": "wrong password"}, 401, "unauthorized"},
	}
	for _, c := range cases {
		st, code, m := call(t, b, c.method, c.path, c.token, c.body)
		if st != c.status || code != c.code {
			t.Errorf("%s: %d %q, want %d %q (%v)", c.name, st, code, c.status, c.code, m)
		}
	}

	// Reads within one's own workspace work for every kind of credential.
	for _, tok := range []string{root, admin, agent, key} {
		must("GET", "/v1/admin/workspaces/acme/usage", tok, nil)
	}
	// Billing events apply once per idempotency key; a changed payload
	// under the same key is a conflict.
	ev := map[string]any{"idempotency_key": "inv-2026-11", "kind": "charge", "amount": 4900, "currency": "EUR"}
	if dup := must("POST", "/v1/admin/workspaces/acme/billing", root, ev)["result"].(map[string]any)["duplicate"]; dup != nil {
		t.Fatalf("first event a duplicate: %v", dup)
	}
	if dup := must("POST", "/v1/admin/workspaces/acme/billing", root, ev)["result"].(map[string]any)["duplicate"]; dup != true {
		t.Fatalf("retry not a duplicate: %v", dup)
	}
	ev["amount"] = 1
	if st, code, _ := call(t, b, "POST", "/v1/admin/workspaces/acme/billing", root, ev); st != 409 || code != "conflict" {
		t.Fatalf("same key, other amount: %d %s", st, code)
	}
	// Optimistic assignment: the second assignment expecting version 0 loses.
	conv := "/v1/admin/workspaces/acme/assignments/c_0123456789abcdef01234567"
	must("PUT", conv, agent, map[string]any{"operator": "bob", "expect_version": 0})
	if st, code, m := call(t, b, "PUT", conv, admin, map[string]any{"operator": "ada", "expect_version": 0}); st != 409 || code != "conflict" || !strings.Contains(fmt.Sprint(m), "current version 1") {
		t.Fatalf("second assignment: %d %s %v", st, code, m)
	}
	if got := must("GET", conv, key, nil); got["operator"] != "bob" || got["version"] != 1.0 {
		t.Fatalf("assignment %v", got)
	}
	// Revoking a key or a session takes effect before the call returns.
	var list []map[string]any
	req, _ := http.NewRequest("GET", b+"/v1/admin/workspaces/acme/keys", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list) != 1 {
		t.Fatalf("keys %v", list)
	}
	conf := must("DELETE", "/v1/admin/workspaces/acme/keys/"+list[0]["id"].(string), admin, nil)
	if fmt.Sprint(conf["confirmed"]) != "[n1]" {
		t.Fatalf("revocation confirmed by %v", conf)
	}
	if st, code, _ := call(t, b, "GET", "/v1/admin/workspaces/acme", key, nil); st != 401 || code != "revoked" {
		t.Fatalf("revoked key: %d %s", st, code)
	}
	// An agent connected with a session loses the connection when the
	// session ends.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws := dialTest(t, ctx, b, client.Options{})
	ws.send(map[string]any{"type": "hello", "v": 1, "workspace": "acme", "role": "agent", "token": agent})
	if welcome, err := ws.c.Next(ctx); err != nil || welcome.Type != "welcome" {
		t.Fatalf("agent hello with a session: %s %v", welcome.Raw, err)
	}
	must("POST", "/v1/logout", agent, nil)
	for {
		f, err := ws.c.Next(ctx)
		if err != nil {
			if code, err := ws.c.CloseCode(ctx); code != 4403 {
				t.Fatalf("connection of an ended session: close %d: %v", code, err)
			}
			break
		}
		if f.Type == "error" && f.Code != "auth_failed" {
			t.Fatalf("connection of an ended session got %s", f.Raw)
		}
	}
	if st, _, _ := call(t, b, "GET", "/v1/admin/workspaces/acme", agent, nil); st != 401 {
		t.Fatalf("session after logout: %d", st)
	}
	// A new password ends the operator's sessions.
	must("PUT", "/v1/admin/workspaces/acme/operators/ada/password", admin, map[string]any{"password": "another good password"})
	if st, _, _ := call(t, b, "GET", "/v1/admin/workspaces/acme", admin, nil); st != 401 {
		t.Fatalf("session after a password change: %d", st)
	}
	// Sign-in attempts are limited per address.
	statuses := make(chan int, 20)
	for range 20 {
		go func() {
			st, _, _ := call(t, b, "POST", "/v1/login", "", map[string]any{"workspace": "acme", "email": "ada@acme.test", "password": "guess guess"})
			statuses <- st
		}()
	}
	limited := 0
	for range 20 {
		if <-statuses == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("20 wrong passwords at once were never rate limited")
	}
}

// Guessing one account's password from many addresses, each under its
// own limit, meets the account's back-off: after 5 failures every address
// is refused, the right password too, without a check; other accounts and
// unknown emails are treated alike (the limit tells nothing of which exist).
func TestSignInBackoffAcrossAddresses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The back-off's clock stands still: under load the guesses below may
	// take longer than the first back-off (1 s), which would let the right
	// password through before the test asks.
	frozen := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	r := runNode(t, Config{DataDir: dir, NoDemo: true, Region: "eu", passwordIterations: cluster.MinPasswordIterations,
		signInClock: func() time.Time { return frozen }})
	root, err := AdminToken(filepath.Join(dir, "cluster.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []struct {
		path string
		body map[string]any
	}{
		{"/v1/admin/workspaces", map[string]any{"id": "acme", "name": "Acme", "region": "eu", "plan": "team"}},
		{"/v1/admin/workspaces/acme/operators", map[string]any{"id": "ada", "email": "ada@acme.test", "name": "Ada", "role": "admin", "password": "correct horse battery"}},
		{"/v1/admin/workspaces/acme/operators", map[string]any{"id": "bob", "email": "bob@acme.test", "name": "Bob", "password": "another good password"}},
	} {
		if st, code, m := call(t, r.base, "POST", req.path, root, req.body); st != 200 {
			t.Fatalf("%s: %d %s %v", req.path, st, code, m)
		}
	}
	login := func(ip, email, password string) (int, string, string) {
		b, _ := json.Marshal(map[string]any{"workspace": "acme", "email": email, "password": password})
		resp, err := clientFrom(ip, nil).Post(r.base+"/v1/login", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Error struct{ Code string } }
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error.Code, resp.Header.Get("Retry-After")
	}
	for _, email := range []string{"ada@acme.test", "nobody@acme.test"} {
		for i := range 8 {
			ip := fmt.Sprintf("127.0.%d.%d", 20+len(email)%2, i+1)
			st, code, retry := login(ip, email, "a wrong guess")
			if i < 5 && (st != 401 || code != "unauthorized") {
				t.Fatalf("%s: guess %d from %s: %d %s", email, i+1, ip, st, code)
			}
			if i >= 5 && (st != 429 || code != "rate_limited" || retry == "") {
				t.Fatalf("%s: guess %d from %s after 5 failures: %d %s Retry-After %q", email, i+1, ip, st, code, retry)
			}
		}
	}
	if st, code, _ := login("127.0.30.1", "ada@acme.test", "correct horse battery"); st != 429 || code != "rate_limited" {
		t.Fatalf("the right password during the back-off: %d %s", st, code)
	}
	if st, code, _ := login("127.0.20.1", "bob@acme.test", "another good password"); st != 200 {
		t.Fatalf("another account from a guessing address: %d %s", st, code)
	}
}
