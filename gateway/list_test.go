package gateway

import (
	"testing"
)

// TestListPagesPastTheFirstPage: with more conversations than one list
// answers with, an agent pages through every one of them with the cursor
// of each answer, newest first, each once; a visitor pages through their
// own the same way; a cursor no answer gave is bad_request.
func TestListPagesPastTheFirstPage(t *testing.T) {
	t.Parallel()
	// 231 starts from one address: past its start budget's burst.
	e := newEnv(t, func(c *Config) { c.FrameRate, c.FrameBurst, c.IPStartRate, c.IPStartBurst = 1e6, 1e6, 1e6, 1e6 })
	v, _ := e.visitor(t, "ws1", nil)
	const n = maxListed + 31
	started := map[string]bool{}
	for range n {
		started[v.start()] = true
	}
	for _, who := range []*client{e.agent(t, "ws1"), v} {
		seen := map[string]bool{}
		cursor, pages := "", 0
		lastUpdated := int64(1 << 62)
		for {
			r := who.ref()
			frame := map[string]any{"type": "list", "ref": r}
			if cursor != "" {
				frame["cursor"] = cursor
			}
			who.send(frame)
			page := who.expect("conversations", refIs(r))
			items := page["items"].([]any)
			pages++
			if pages == 1 && len(items) != maxListed {
				t.Fatalf("first page: %d items, want %d", len(items), maxListed)
			}
			for _, it := range items {
				c := it.(map[string]any)
				id, up := c["id"].(string), int64(c["updated"].(float64))
				if seen[id] {
					t.Fatalf("page %d lists %s again", pages, id)
				}
				if up > lastUpdated {
					t.Fatalf("page %d: %s updated %d after one updated %d", pages, id, up, lastUpdated)
				}
				seen[id], lastUpdated = true, up
			}
			next, _ := page["next"].(string)
			if next == "" {
				break
			}
			cursor = next
		}
		if pages != 2 || len(seen) != n {
			t.Fatalf("%d pages listed %d conversations, want 2 pages and %d", pages, len(seen), n)
		}
		for id := range started {
			if !seen[id] {
				t.Fatalf("%s never listed", id)
			}
		}
	}
	ag := e.agent(t, "ws1")
	r := ag.ref()
	ag.send(map[string]any{"type": "list", "ref": r, "cursor": "12.not-a-conversation"})
	if m := ag.expect("error", refIs(r)); m["code"] != "bad_request" {
		t.Fatalf("bad cursor answered %v", m)
	}
}
