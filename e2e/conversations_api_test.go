package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"testing"
	"time"

	"parley/internal/eventually"
)

// convAnswer is an answer of the conversations API: its status, its
// Retry-After, and its error code (the agents' API's {"code","message"}).
type convAnswer struct {
	status     int
	retryAfter string
	code       string
	msg        string
}

// convAPI calls the conversations API of a node and decodes a 200 into out.
func convAPI(t testing.TB, nd *nodeProc, method, path, token string, body, out any) convAnswer {
	t.Helper()
	resp, b, err := request(context.Background(), nd, method, path, token, body)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, nd.ID, err)
	}
	a := convAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode != 200 {
		var e struct{ Code, Message string }
		json.Unmarshal(b, &e)
		a.code, a.msg = e.Code, e.Message
		return a
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return a
}

func mustConvAPI(t testing.TB, nd *nodeProc, method, path, token string, body, out any) {
	t.Helper()
	if a := convAPI(t, nd, method, path, token, body, out); a.status != 200 {
		t.Fatalf("%s %s on %s: %d %s %s", method, path, nd.ID, a.status, a.code, a.msg)
	}
}

type postedMessage struct {
	Conversation string `json:"conversation"`
	Seq          uint64 `json:"seq"`
	Dup          bool   `json:"dup"`
	Message      struct {
		ID, Author, Role, Name, Body string
		Deleted                      bool
	} `json:"message"`
}

// TestConversationsAPIPostReachesAVisitorOnAnotherNode: a bot posts with
// an API key through node A; the visitor, connected to node B, sees it
// live, as any agent's message. The same POST again stores nothing; an
// edit and a delete reach the visitor; a post is answered only once a
// second replica holds it (with both other nodes frozen it is refused
// unavailable, and its resend after they thaw is the stored one); a key
// past its rate is answered 429 with Retry-After.
func TestConversationsAPIPostReachesAVisitorOnAnotherNode(t *testing.T) {
	// B holds each credential to a request a second (bursts of 2); A and
	// C let the test's own requests through.
	tc := startClusterOn(t, clusterSpec{bin: parleyBin, n: 3, argsFor: func(i int) []string {
		if i == 1 {
			return []string{"-api-rate", "1"}
		}
		return []string{"-api-rate", "1000"}
	}})
	a, b, c := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	tc.createWorkspace(t, map[string]any{"id": "acme", "name": "Acme", "plan": "team"})
	ctx := testCtx(t, 90*time.Second)
	mint := func(name string) (raw, id string) {
		var minted struct {
			Key  string `json:"key"`
			Info struct {
				ID string `json:"id"`
			} `json:"info"`
		}
		mustAPI(t, a, "POST", "/v1/admin/workspaces/acme/keys", tc.root, map[string]any{"name": name}, &minted)
		return minted.Key, minted.Info.ID
	}
	bot, botID := mint("Order bot")
	other, _ := mint("Another integration")

	visitor, welcome, conv := startVisitor(t, ctx, b, "acme")
	defer visitor.close()
	say(t, ctx, visitor, conv, "m-visitor-1", "where is my parcel?")
	base := "/v1/workspaces/acme/conversations/" + conv
	// Node A holds the conversation once it has replicated there.
	eventually.Holds(t, 10*time.Second, "node A holds the conversation", func() error {
		if ans := convAPI(t, a, "GET", base, bot, nil, nil); ans.status != 200 {
			return fmt.Errorf("%d %s", ans.status, ans.code)
		}
		return nil
	})

	// A bot's post on A reaches the visitor on B, live, as a bot's.
	post := map[string]any{"id": "m-bot-000001", "body": "Your parcel ships today", "bot": "Parcel bot"}
	var first postedMessage
	mustConvAPI(t, a, "POST", base+"/messages", bot, post, &first)
	if first.Dup || first.Message.Author != "b:"+botID || first.Message.Role != "bot" || first.Message.Name != "Parcel bot" {
		t.Fatalf("post: %+v", first)
	}
	d, err := visitor.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "m-bot-000001" })
	if err != nil {
		t.Fatalf("the visitor on B never got the bot's post: %v", err)
	}
	if m := d["message"].(map[string]any); m["role"] != "bot" || m["name"] != "Parcel bot" || m["body"] != "Your parcel ships today" {
		t.Fatalf("delivered: %v", d)
	}

	// The same POST again, through another node even, stores nothing.
	var again postedMessage
	mustConvAPI(t, a, "POST", base+"/messages", bot, post, &again)
	if !again.Dup || again.Seq != first.Seq || again.Message.Body != first.Message.Body {
		t.Fatalf("repeated post: %+v, first %+v", again, first)
	}
	var onC postedMessage
	mustConvAPI(t, c, "POST", base+"/messages", bot, map[string]any{"id": "m-bot-000001", "body": "a different text"}, &onC)
	if !onC.Dup || onC.Message.Body != "Your parcel ships today" {
		t.Fatalf("repeated post through C: %+v", onC)
	}
	tc.waitConverged(t, "acme", conv, 2, 10*time.Second)

	// Another key may not change the bot's message.
	if ans := convAPI(t, a, "PATCH", base+"/messages/m-bot-000001", other, map[string]any{"body": "hijacked"}, nil); ans.status != 403 || ans.code != "forbidden" {
		t.Fatalf("edit with another key: %+v", ans)
	}
	// An edit and a delete reach the visitor.
	var edited postedMessage
	mustConvAPI(t, a, "PATCH", base+"/messages/m-bot-000001", bot, map[string]any{"body": "Your parcel shipped"}, &edited)
	if _, err := visitor.await(ctx, "deliver", func(m map[string]any) bool {
		msg := m["message"].(map[string]any)
		return msgID(m) == "m-bot-000001" && msg["body"] == "Your parcel shipped" && msg["edited"] != nil
	}); err != nil {
		t.Fatalf("the visitor never got the edit: %v", err)
	}
	var editedAgain postedMessage
	mustConvAPI(t, a, "PATCH", base+"/messages/m-bot-000001", bot, map[string]any{"body": "Your parcel shipped"}, &editedAgain)
	if !editedAgain.Dup || editedAgain.Seq != edited.Seq {
		t.Fatalf("the same edit again: %+v, first %+v", editedAgain, edited)
	}
	var deleted postedMessage
	mustConvAPI(t, a, "DELETE", base+"/messages/m-bot-000001", bot, nil, &deleted)
	if _, err := visitor.await(ctx, "deliver", func(m map[string]any) bool {
		msg := m["message"].(map[string]any)
		return msgID(m) == "m-bot-000001" && msg["deleted"] == true && msg["body"] == ""
	}); err != nil {
		t.Fatalf("the visitor never got the delete: %v", err)
	}
	var deletedAgain postedMessage
	mustConvAPI(t, a, "DELETE", base+"/messages/m-bot-000001", bot, nil, &deletedAgain)
	if !deletedAgain.Dup || deletedAgain.Seq != deleted.Seq || !deletedAgain.Message.Deleted {
		t.Fatalf("the same delete again: %+v, first %+v", deletedAgain, deleted)
	}
	tc.waitConverged(t, "acme", conv, 2, 10*time.Second)

	// A and C read the messages the same: the visitor's, and the bot's,
	// deleted, once (B's copy is in the digests above).
	for _, nd := range []*nodeProc{a, c} {
		var page struct {
			Items []struct {
				Seq     uint64
				Message struct {
					ID      string
					Deleted bool
				}
			}
		}
		eventually.Holds(t, 10*time.Second, "every node reads two messages", func() error {
			mustConvAPI(t, nd, "GET", base+"/messages?limit=200", bot, nil, &page)
			if len(page.Items) != 2 || page.Items[0].Message.ID != "m-visitor-1" || page.Items[1].Message.ID != "m-bot-000001" || !page.Items[1].Message.Deleted {
				return fmt.Errorf("%s: %+v", nd.ID, page.Items)
			}
			return nil
		})
	}

	// The list's filters.
	var list struct {
		Items []struct{ ID, Owner, Assignee string }
	}
	mustConvAPI(t, c, "GET", "/v1/workspaces/acme/conversations?assignee=-&visitor="+url.QueryEscape(welcome["participant"].(string)), bot, nil, &list)
	if len(list.Items) != 1 || list.Items[0].ID != conv {
		t.Fatalf("the visitor's unassigned conversations: %+v", list.Items)
	}
	future := url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	mustConvAPI(t, c, "GET", "/v1/workspaces/acme/conversations?updated_since="+future, bot, nil, &list)
	if len(list.Items) != 0 {
		t.Fatalf("updated in the future: %+v", list.Items)
	}
	if ans := convAPI(t, c, "GET", "/v1/workspaces/acme/conversations?priority=high", bot, nil, nil); ans.status != 400 || ans.code != "bad_request" {
		t.Fatalf("an unknown filter: %+v", ans)
	}
	// The status filter: a new conversation is open.
	mustConvAPI(t, c, "GET", "/v1/workspaces/acme/conversations?status=open&visitor="+url.QueryEscape(welcome["participant"].(string)), bot, nil, &list)
	if len(list.Items) != 1 {
		t.Fatalf("the visitor's open conversations: %+v", list.Items)
	}
	mustConvAPI(t, c, "GET", "/v1/workspaces/acme/conversations?status=resolved", bot, nil, &list)
	if len(list.Items) != 0 {
		t.Fatalf("resolved ones: %+v", list.Items)
	}

	// An agent's session posts as the agent.
	session := tc.login(t, a, a, "acme", "sam")
	var byAgent postedMessage
	mustConvAPI(t, a, "POST", base+"/messages", session, map[string]any{"id": "m-agent-000001", "body": "Sam here"}, &byAgent)
	if byAgent.Message.Author != "a:sam" || byAgent.Message.Role != "agent" {
		t.Fatalf("agent's post: %+v", byAgent)
	}
	if _, err := visitor.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "m-agent-000001" }); err != nil {
		t.Fatalf("the visitor never got the agent's post: %v", err)
	}

	// With both other nodes frozen, no second replica confirms a post: it
	// is refused unavailable, though stored on A; once they thaw, its
	// resend is the stored message, not a second one.
	for _, nd := range []*nodeProc{b, c} {
		if err := nd.Suspend(); err != nil {
			t.Fatal(err)
		}
	}
	frozen := convAPI(t, a, "POST", base+"/messages", bot, map[string]any{"id": "m-bot-000002", "body": "while they sleep"}, nil)
	for _, nd := range []*nodeProc{b, c} {
		if _, err := nd.Continue(); err != nil {
			t.Fatal(err)
		}
	}
	if frozen.status != 503 || frozen.code != "unavailable" {
		t.Fatalf("a post no replica confirmed: %+v", frozen)
	}
	var resent postedMessage
	eventually.Holds(t, 20*time.Second, "the resend is confirmed", func() error {
		if ans := convAPI(t, a, "POST", base+"/messages", bot, map[string]any{"id": "m-bot-000002", "body": "while they sleep"}, &resent); ans.status != 200 {
			return fmt.Errorf("%+v", ans)
		}
		return nil
	})
	if !resent.Dup {
		t.Fatalf("the resend stored the message again: %+v", resent)
	}
	if _, err := visitor.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "m-bot-000002" }); err != nil {
		t.Fatalf("the visitor never got the post made while B was frozen: %v", err)
	}
	tc.waitConverged(t, "acme", conv, 4, 20*time.Second)

	// A key past its rate on B (a second, bursts of 2) is answered 429
	// with Retry-After; another key is not held back.
	var limited convAnswer
	for i := range 10 {
		ans := convAPI(t, b, "GET", "/v1/workspaces/acme/conversations", other, nil, nil)
		if ans.status == 429 {
			limited = ans
			break
		}
		if ans.status != 200 {
			t.Fatalf("request %d: %+v", i, ans)
		}
	}
	if limited.code != "rate_limited" {
		t.Fatalf("10 requests at once were never limited: %+v", limited)
	}
	if s, err := strconv.Atoi(limited.retryAfter); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", limited.retryAfter)
	}
	mustConvAPI(t, b, "GET", "/v1/workspaces/acme/conversations", bot, nil, nil)
}
