package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"parley/internal/eventually"
)

// exportAllPage is a page of an export with what the fan-out says of the
// region's nodes.
type exportAllPage struct {
	exportPage
	Nodes       []string `json:"nodes"`
	Unreachable []string `json:"unreachable"`
	Missing     []string `json:"missing"`
}

// TestExportThroughOneNodeIsComplete: in a region of five nodes, where each
// conversation lives on three, conversations started through every node;
// an export through a node that does not hold them all, a page of two at a
// time, still holds every conversation exactly once with what was written,
// and no secret. With a node killed, the export names it as
// unreachable (and still holds everything, from the other replicas), and
// parleyctl export prints it all and fails naming it.
func TestExportThroughOneNodeIsComplete(t *testing.T) {
	tc := startClusterOn(t, clusterSpec{bin: parleyBin, n: 5, regions: []string{"eu"}})
	n1 := tc.nodes[0]
	var created struct {
		IdentitySecret string `json:"identity_secret"`
	}
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team", "region": "eu"}, &created)
	var key struct{ Key string }
	mustAPI(t, n1, "POST", "/v1/admin/workspaces/acme/keys", tc.root, map[string]any{"name": "export"}, &key)
	ctx := testCtx(t, 180*time.Second)

	// Three conversations started through each node, a message in each.
	want := map[string]string{} // conversation → its message's text
	for i, nd := range tc.nodes {
		for j := range 3 {
			v, _, conv := startVisitor(t, ctx, nd, "acme")
			body := fmt.Sprintf("from node %d, visitor %d", i+1, j)
			say(t, ctx, v, conv, fmt.Sprintf("m-%d-%d-000001", i, j), body)
			v.close()
			want[conv] = body
		}
	}
	// Once replicated, each is on three nodes or more; the export goes
	// through the node that holds the fewest, which lacks some.
	var via *nodeProc
	eventually.Holds(t, 60*time.Second, "each conversation on 3 nodes", func() error {
		ds := tc.digests(t, "acme")
		for conv := range want {
			n := 0
			for _, d := range ds {
				if d[conv].Messages == 1 {
					n++
				}
			}
			if n < 3 {
				return fmt.Errorf("%s on %d nodes", conv, n)
			}
		}
		fewest := 0
		for i, d := range ds {
			if len(d) < len(ds[fewest]) {
				fewest = i
			}
		}
		via = tc.nodes[fewest]
		if len(ds[fewest]) >= len(want) {
			return fmt.Errorf("every node holds all %d", len(want))
		}
		return nil
	})
	down := tc.nodes[4]
	if down == via {
		down = tc.nodes[3]
	}
	t.Logf("export through %s, then with %s down", via.ID, down.ID)

	exportAll := func() ([]exportAllPage, string) {
		t.Helper()
		var pages []exportAllPage
		var raws []string
		cursor := ""
		for range 20 {
			var p exportAllPage
			code, body := api(via, "GET", "/v1/admin/workspaces/acme/export?limit=2&cursor="+url.QueryEscape(cursor), key.Key, nil, &p)
			if code != 200 {
				t.Fatalf("export: %d %s", code, body)
			}
			pages, raws = append(pages, p), append(raws, body)
			if p.Next == "" {
				return pages, strings.Join(raws, "\n")
			}
			cursor = p.Next
		}
		t.Fatal("export: more than 20 pages")
		return nil, ""
	}
	// check says what is wrong with an export: each conversation once,
	// with what was written, in ID order.
	check := func(pages []exportAllPage) error {
		got := map[string]string{}
		var ids []string
		for _, p := range pages {
			for _, c := range p.Conversations {
				if _, ok := got[c.ID]; ok {
					return fmt.Errorf("%s exported twice", c.ID)
				}
				ids = append(ids, c.ID)
				var texts []string
				for _, m := range c.Messages {
					texts = append(texts, m.Body)
				}
				got[c.ID] = strings.Join(texts, "|")
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("exported %d conversations:\n got %v\nwant %v", len(got), got, want)
		}
		if !slices.IsSorted(ids) {
			return fmt.Errorf("conversations not in ID order: %v", ids)
		}
		return nil
	}

	var raw string
	eventually.Holds(t, 30*time.Second, "the export through one node holds every conversation once", func() error {
		var pages []exportAllPage
		pages, raw = exportAll()
		if err := check(pages); err != nil {
			return err
		}
		for _, p := range pages {
			if len(p.Unreachable) != 0 || len(p.Missing) != 0 || len(p.Nodes) != 5 {
				return fmt.Errorf("a page answered by %v, unreachable %v, missing %v", p.Nodes, p.Unreachable, p.Missing)
			}
		}
		return nil
	})
	for what, secret := range map[string]string{
		"identity secret": created.IdentitySecret, "API key": key.Key,
		"hash field": "hash", "secret field": "secret",
	} {
		if strings.Contains(raw, secret) {
			t.Errorf("the export holds the %s", what)
		}
	}

	// A node killed: every page names it; the others' replicas still
	// give every conversation.
	down.Kill9(t)
	pages, _ := exportAll()
	for i, p := range pages {
		if fmt.Sprint(p.Unreachable) != "["+down.ID+"]" || slices.Contains(p.Nodes, down.ID) {
			t.Fatalf("page %d with %s down: nodes %v, unreachable %v", i, down.ID, p.Nodes, p.Unreachable)
		}
	}
	if err := check(pages); err != nil {
		t.Fatal(errors.New("with a node down: " + err.Error()))
	}
	// parleyctl prints every page, then fails naming the node down.
	r := newCtl(t).fails(1, []string{"unreachable: " + down.ID}, "-node", via.URL, "-token", key.Key, "export", "-workspace", "acme", "-limit", "3")
	var ctlPages []exportAllPage
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var p exportAllPage
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("parleyctl export line %q: %v", line, err)
		}
		ctlPages = append(ctlPages, p)
	}
	if err := check(ctlPages); err != nil {
		t.Fatal(errors.New("parleyctl export with a node down: " + err.Error()))
	}
}
