package gateway

import (
	"context"
	"errors"
	"testing"

	"parley/gateway/wire"
	"parley/ident"
)

// TestPostTakesTheWiresPath: a Post is validated as a frame is, reaches
// the conversation's subscribers live as a deliver, is stored once
// however often it is sent, may change only its author's message, and is
// refused by the workspace's budget as a connection's change is.
func TestPostTakesTheWiresPath(t *testing.T) {
	m := &countMetrics{n: map[string]int{}}
	e := newEnv(t, func(c *Config) { c.WorkspaceRate, c.WorkspaceBurst, c.Metrics = 0.001, 9, m })
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	v.say(conv, "m-visitor-1", "hello")
	ctx := context.Background()
	bot := Post{Kind: wire.TypeSend, Workspace: "ws1", Conversation: conv, ID: "m-bot-0001", Body: "Your parcel ships today",
		Participant: "b:k_1", Role: ident.Bot, Name: "Parcel bot"}

	first, err := e.gw.Post(ctx, bot)
	if err != nil || first.Dup || first.Message.Role != ident.Bot || first.Message.Author != "b:k_1" || first.Message.Name != "Parcel bot" {
		t.Fatalf("post: %+v %v", first, err)
	}
	d := v.expect("deliver", msgIs("m-bot-0001"))
	if m := d["message"].(map[string]any); m["role"] != "bot" || m["body"] != "Your parcel ships today" {
		t.Fatalf("delivered %v", d)
	}
	again := bot
	again.Body = "another text"
	if res, err := e.gw.Post(ctx, again); err != nil || !res.Dup || res.Seq != first.Seq || res.Message.Body != bot.Body {
		t.Fatalf("the same id again: %+v %v", res, err)
	}
	if evs, _, _ := e.st.Events("ws1", conv, 0, 100); len(evs) != 2 {
		t.Fatalf("%d events stored, want 2", len(evs))
	}

	refused := func(what string, p Post, code string) {
		t.Helper()
		_, err := e.gw.Post(ctx, p)
		var pe *PostError
		if !errors.As(err, &pe) || pe.Code != code {
			t.Fatalf("%s: %v, want %s", what, err, code)
		}
	}
	badID := bot
	badID.ID = "short"
	refused("a malformed id", badID, wire.CodeBadRequest)
	badBody := bot
	badBody.ID, badBody.Body = "m-bot-0002", "a\u202etxt.exe"
	refused("a bidirectional override", badBody, wire.CodeBadRequest)
	hijack := Post{Kind: wire.TypeEdit, Workspace: "ws1", Conversation: conv, ID: "m-visitor-1", Body: "x", Participant: "b:k_1", Role: ident.Bot}
	refused("an edit of the visitor's message", hijack, wire.CodeForbidden)
	elsewhere := bot
	elsewhere.Workspace, elsewhere.ID = "ws2", "m-bot-0003"
	refused("a conversation of another workspace", elsewhere, wire.CodeNotFound)

	edit := Post{Kind: wire.TypeEdit, Workspace: "ws1", Conversation: conv, ID: "m-bot-0001", Body: "Your parcel shipped", Participant: "b:k_1", Role: ident.Bot}
	if res, err := e.gw.Post(ctx, edit); err != nil || res.Dup || res.Message.Edited == nil {
		t.Fatalf("edit: %+v %v", res, err)
	}
	v.expect("deliver", func(m map[string]any) bool {
		return msgIs("m-bot-0001")(m) && m["message"].(map[string]any)["body"] == "Your parcel shipped"
	})
	if res, err := e.gw.Post(ctx, edit); err != nil || !res.Dup {
		t.Fatalf("the same edit again: %+v %v", res, err)
	}
	del := Post{Kind: wire.TypeDelete, Workspace: "ws1", Conversation: conv, ID: "m-bot-0001", Participant: "b:k_1", Role: ident.Bot}
	if res, err := e.gw.Post(ctx, del); err != nil || res.Dup || !res.Message.Deleted {
		t.Fatalf("delete: %+v %v", res, err)
	}
	if res, err := e.gw.Post(ctx, del); err != nil || !res.Dup {
		t.Fatalf("the same delete again: %+v %v", res, err)
	}
	// The start and eight changes spent the workspace's burst of 9 (a
	// refused edit and the repeats were served, so they drew on it): the
	// budget refuses the next, with how long to wait.
	next := bot
	next.ID = "m-bot-0004"
	_, err = e.gw.Post(ctx, next)
	var pe *PostError
	if !errors.As(err, &pe) || pe.Code != wire.CodeRateLimited || pe.Retry <= 0 {
		t.Fatalf("past the workspace's budget: %v", err)
	}
	// Counted as a connection's messages and refusals are.
	if got := m.get("messages/" + PostTransport); got != 2 {
		t.Errorf("%d messages counted on transport %s, want the two sends taken (a resend counts, as a frame's does)", got, PostTransport)
	}
	if got := m.get("error/" + wire.CodeRateLimited); got != 1 {
		t.Errorf("%d refusals counted rate_limited, want 1", got)
	}
}
