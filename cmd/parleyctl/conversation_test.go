package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestCLIConversations: the conversation commands send the conversations
// API's requests (filters, a post's id and bot, paths of edit and
// delete), follow pages, and explain its {"code","message"} errors.
func TestCLIConversations(t *testing.T) {
	const conv = "c_0123456789abcdef01234567"
	f := newFakeNode(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "GET" && r.URL.Path == "/v1/workspaces/acme/conversations" && r.URL.Query().Get("cursor") == "":
			json.NewEncoder(w).Encode(map[string]any{"items": []any{map[string]any{"id": conv, "owner": "v:ab", "assignee": "bob", "updated": 1, "preview": "where is it?"}}, "next": "1." + conv})
		case r.Method == "GET" && r.URL.Path == "/v1/workspaces/acme/conversations":
			json.NewEncoder(w).Encode(map[string]any{"items": []any{}})
		case r.Method == "POST" && strings.Contains(r.URL.Path, "/c_ffffffffffffffffffffffff/"):
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"code":"unavailable","message":"stored, not yet confirmed by a second replica: retry with the same id"}`)
		default:
			json.NewEncoder(w).Encode(map[string]any{"conversation": conv, "seq": 3, "dup": true,
				"message": map[string]any{"id": "m-bot-0001", "author": "b:k_1", "role": "bot"}})
		}
	})
	cli := func(args ...string) (string, string, int) {
		return runCLI(t, "", append([]string{"-node", f.URL, "-token", "pk_x"}, args...)...)
	}
	out, errOut, code := cli("conversation", "list", "-workspace", "acme", "-assignee", "-", "-visitor", "v:ab", "-since", "2026-12-06T10:00:00Z", "-all")
	if code != 0 || !strings.Contains(out, conv) || !strings.Contains(out, "where is it?") || len(f.reqs) != 2 {
		t.Fatalf("list: exit %d %s%s %q", code, out, errOut, f.reqs)
	}
	if want := "GET /v1/workspaces/acme/conversations?assignee=-&limit=50&updated_since=2026-12-06T10%3A00%3A00Z&visitor=v%3Aab Bearer pk_x "; f.reqs[0] != want {
		t.Fatalf("sent %q, want %q", f.reqs[0], want)
	}
	out, errOut, code = cli("conversation", "post", "-workspace", "acme", conv, "-id", "m-bot-0001", "-bot", "Parcel bot", "Your", "parcel")
	if code != 0 || !strings.Contains(out, "already posted: nothing new stored") {
		t.Fatalf("post: exit %d %s%s", code, out, errOut)
	}
	if want := `POST /v1/workspaces/acme/conversations/` + conv + `/messages Bearer pk_x {"body":"Your parcel","bot":"Parcel bot","id":"m-bot-0001"}`; f.reqs[2] != want {
		t.Fatalf("sent %q, want %q", f.reqs[2], want)
	}
	cli("conversation", "edit", "-workspace", "acme", conv, "m-bot-0001", "shipped")
	cli("conversation", "delete", "-workspace", "acme", conv, "m-bot-0001")
	if !strings.HasPrefix(f.reqs[3], "PATCH /v1/workspaces/acme/conversations/"+conv+`/messages/m-bot-0001 Bearer pk_x {"body":"shipped"}`) ||
		!strings.HasPrefix(f.reqs[4], "DELETE /v1/workspaces/acme/conversations/"+conv+"/messages/m-bot-0001 ") {
		t.Fatalf("edit and delete sent %q", f.reqs[3:])
	}
	_, errOut, code = cli("conversation", "post", "-workspace", "acme", "c_ffffffffffffffffffffffff", "-id", "m-retry-001", "hi")
	if code != 1 || !strings.Contains(errOut, "(unavailable, HTTP 503)") || !strings.Contains(errOut, "-id m-retry-001") {
		t.Fatalf("an unconfirmed post: exit %d %s", code, errOut)
	}
	n := len(f.reqs)
	for _, args := range [][]string{
		{"conversation", "post", "-workspace", "acme", "c1", "hi"},                 // conversation format
		{"conversation", "post", "-workspace", "acme", conv, "-id", "short", "hi"}, // id format
		{"conversation", "edit", "-workspace", "acme", conv, "m-bot-0001"},         // no text
		{"conversation", "list", "-workspace", "acme", "-assignee", "Bob"},         // operator format
		{"conversation", "list", "-workspace", "acme", "-since", "yesterday"},      // time
	} {
		if _, errOut, code := cli(args...); code != 2 || !strings.Contains(errOut, "usage: parleyctl") {
			t.Errorf("%v: exit %d, want 2 with usage\n%s", args, code, errOut)
		}
	}
	if len(f.reqs) != n {
		t.Fatalf("wrong command lines sent %q", f.reqs[n:])
	}
}
