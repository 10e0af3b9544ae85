package e2e

import (
	"fmt"
	"net/url"
	"testing"
	"time"
)

// TestAgentsListPagesPast200: a node holding 230 conversations of a
// workspace lists every one of them to an agent, newest first and each
// once, through the agents' API (limit 1..200, cursor) and through the
// wire's list (200 a frame, cursor).
func TestAgentsListPagesPast200(t *testing.T) {
	tc := startCluster(t, 1, "-frame-rate", "1000")
	n1 := tc.nodes[0]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 120*time.Second)
	v, _, first := startVisitor(t, ctx, n1, "acme")
	defer v.close()
	const n = 230
	started := map[string]bool{first: true}
	for i := 1; i < n; i++ {
		ref := fmt.Sprintf("s%d", i)
		v.send(ctx, map[string]any{"type": "start", "ref": ref})
		m, err := v.awaitRef(ctx, ref)
		if err != nil || m["type"] != "started" {
			t.Fatalf("start %d: %v %v", i, m, err)
		}
		started[m["conversation"].(string)] = true
	}
	token := tc.login(t, n1, n1, "acme", "sam")

	type item struct {
		ID      string `json:"id"`
		Updated int64  `json:"updated"`
	}
	check := func(how string, pages [][]item) {
		t.Helper()
		seen := map[string]bool{}
		last := int64(1 << 62)
		for _, p := range pages {
			for _, it := range p {
				if seen[it.ID] || !started[it.ID] || it.Updated > last {
					t.Fatalf("%s: %s listed twice, unknown or out of order", how, it.ID)
				}
				seen[it.ID], last = true, it.Updated
			}
		}
		if len(seen) != n {
			t.Fatalf("%s: %d pages list %d conversations, want %d", how, len(pages), len(seen), n)
		}
	}

	// The agents' API.
	var pages [][]item
	cursor := ""
	for {
		var page struct {
			Items []item `json:"items"`
			Next  string `json:"next"`
		}
		mustAPI(t, n1, "GET", "/v1/workspaces/acme/conversations?limit=200&cursor="+url.QueryEscape(cursor), token, nil, &page)
		pages = append(pages, page.Items)
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if len(pages) != 2 || len(pages[0]) != 200 {
		t.Fatalf("the API answered %d pages, the first of %d", len(pages), len(pages[0]))
	}
	check("agents' API", pages)
	if code, body := api(n1, "GET", "/v1/workspaces/acme/conversations?limit=201", token, nil, nil); code != 400 {
		t.Fatalf("limit=201 answered %d %s", code, body)
	}

	// The wire.
	ag := tc.agentOn(t, ctx, n1, n1, "acme", "ann")
	pages, cursor = nil, ""
	for i := 0; ; i++ {
		ref := fmt.Sprintf("l%d", i)
		f := map[string]any{"type": "list", "ref": ref}
		if cursor != "" {
			f["cursor"] = cursor
		}
		ag.send(ctx, f)
		m, err := ag.awaitRef(ctx, ref)
		if err != nil || m["type"] != "conversations" {
			t.Fatalf("list: %v %v", m, err)
		}
		var p []item
		for _, x := range m["items"].([]any) {
			c := x.(map[string]any)
			p = append(p, item{ID: c["id"].(string), Updated: int64(c["updated"].(float64))})
		}
		pages = append(pages, p)
		next, _ := m["next"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	check("wire", pages)
}
