package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"parley/ident"
)

// The conversations API (docs/api.md, "Conversations API"): with an API
// key (-token pk_…) a program's bot, with a session an operator.

func init() {
	register(
		command{"conversation list", "-workspace WS [-visitor V] [-assignee OPERATOR|-] [-since TIME] [-limit N] [-all]",
			"list a workspace's conversations, the most recently changed first, filtered (a session's or an API key's -token)", conversationList},
		command{"conversation show", "-workspace WS CONVERSATION", "show a conversation and every message it holds, in its current state", conversationShow},
		command{"conversation post", "-workspace WS CONVERSATION [-id ID] [-bot NAME] TEXT...",
			"post a message: as the session's operator, or with an API key as a bot; -id makes a retry safe (the same id stores nothing new)", conversationPost},
		command{"conversation edit", "-workspace WS CONVERSATION MESSAGE TEXT...", "replace the text of one's own message", conversationEdit},
		command{"conversation delete", "-workspace WS CONVERSATION MESSAGE", "delete one's own message (its text is erased)", conversationDelete},
	)
}

var reMessageID = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)

// convPath is /v1/workspaces/{ws}/conversations and more segments, escaped.
func convPath(ws string, more ...string) string {
	p := "/v1/workspaces/" + url.PathEscape(ws) + "/conversations"
	for _, m := range more {
		p += "/" + url.PathEscape(m)
	}
	return p
}

type convItem struct {
	ID        string `json:"id"`
	Owner     string `json:"owner"`
	OwnerName string `json:"owner_name"`
	Created   int64  `json:"created"`
	Updated   int64  `json:"updated"`
	Head      uint64 `json:"head"`
	Preview   string `json:"preview"`
	Assignee  string `json:"assignee"`
}

type convMessage struct {
	ID     string `json:"id"`
	Author string `json:"author"`
	Role   string `json:"role"`
	Name   string `json:"name"`
	Body   string `json:"body"`
	TS     struct {
		W int64 `json:"w"`
	} `json:"ts"`
	Edited  *struct{} `json:"edited"`
	Deleted bool      `json:"deleted"`
}

func ms(t int64) string { return day(time.UnixMilli(t)) }

func conversationList(e *env, args []string) error {
	f := e.flags("conversation list")
	ws := f.workspaceFlag()
	visitor := f.String("visitor", "", "only this visitor's conversations: v:<visitor_id> or u:<user_id>")
	assignee := f.String("assignee", "", "only those assigned to this operator; - for the unassigned")
	since := f.String("since", "", "only those changed at or after this RFC 3339 time, or this long ago (like 24h)")
	limit := f.Int("limit", 50, "conversations a page, 1..200")
	all := f.Bool("all", false, "every page, not only the first")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	if *limit < 1 || *limit > 200 {
		return usagef("-limit %d: want 1..200", *limit)
	}
	q := url.Values{"limit": {fmt.Sprint(*limit)}}
	if *visitor != "" {
		q.Set("visitor", *visitor)
	}
	if *assignee != "" {
		if *assignee != "-" && !ident.ValidID(*assignee) {
			return usagef("-assignee %q: an operator's ID, or -", *assignee)
		}
		q.Set("assignee", *assignee)
	}
	if *since != "" {
		t, err := sinceTime(*since)
		if err != nil {
			return err
		}
		q.Set("updated_since", t)
	}
	var rows [][]string
	for {
		var page struct {
			Items []convItem `json:"items"`
			Next  string     `json:"next"`
		}
		raw, err := e.call(http.MethodGet, convPath(*ws), q, nil, &page, true)
		if err != nil {
			return err
		}
		if e.g.json {
			if err := printJSON(e.stdout, raw); err != nil {
				return err
			}
		}
		for _, c := range page.Items {
			rows = append(rows, []string{c.ID, c.Owner, c.OwnerName, c.Assignee, ms(c.Updated), c.Preview})
		}
		if page.Next == "" || !*all {
			if !e.g.json {
				table(e.stdout, []string{"CONVERSATION", "VISITOR", "NAME", "ASSIGNEE", "UPDATED", "LAST MESSAGE"}, rows)
				if page.Next != "" {
					fmt.Fprintln(e.stdout, "more: -all lists every page")
				}
			}
			return nil
		}
		q.Set("cursor", page.Next)
	}
}

func conversationShow(e *env, args []string) error {
	ws, conv, err := wsAndID(e, "conversation show", "conversation", args)
	if err != nil {
		return err
	}
	if !ident.ValidConversation(conv) {
		return usagef("conversation %q: want c_ and 24 lowercase hex digits", conv)
	}
	var c convItem
	raw, err := e.call(http.MethodGet, convPath(ws, conv), nil, nil, &c, true)
	if err != nil {
		return err
	}
	if e.g.json {
		if err := printJSON(e.stdout, raw); err != nil {
			return err
		}
	} else {
		fields(e.stdout, "conversation", c.ID, "visitor", c.Owner, "name", c.OwnerName, "assignee", orNone(c.Assignee, "unassigned"),
			"started", ms(c.Created), "updated", ms(c.Updated))
		fmt.Fprintln(e.stdout)
	}
	// Every page; a message changed after its page comes again: keep the
	// last state of each, in the order first seen.
	var order []string
	msgs := map[string]convMessage{}
	q := url.Values{"limit": {"200"}}
	for {
		var page struct {
			Items []struct {
				Message convMessage `json:"message"`
			} `json:"items"`
			Next string `json:"next"`
		}
		raw, err := e.call(http.MethodGet, convPath(ws, conv, "messages"), q, nil, &page, true)
		if err != nil {
			return err
		}
		if e.g.json {
			if err := printJSON(e.stdout, raw); err != nil {
				return err
			}
		}
		for _, it := range page.Items {
			if _, ok := msgs[it.Message.ID]; !ok {
				order = append(order, it.Message.ID)
			}
			msgs[it.Message.ID] = it.Message
		}
		if page.Next == "" {
			break
		}
		q.Set("cursor", page.Next)
	}
	if e.g.json {
		return nil
	}
	var rows [][]string
	for _, id := range order {
		m := msgs[id]
		body := m.Body
		switch {
		case m.Deleted:
			body = "(deleted)"
		case m.Edited != nil:
			body += " (edited)"
		}
		rows = append(rows, []string{ms(m.TS.W), m.Role, orNone(m.Name, m.Author), id, body})
	}
	table(e.stdout, []string{"SENT", "ROLE", "FROM", "ID", "TEXT"}, rows)
	return nil
}

// posted is a post's, an edit's or a delete's reply.
type posted struct {
	Conversation string      `json:"conversation"`
	Seq          uint64      `json:"seq"`
	Dup          bool        `json:"dup"`
	Message      convMessage `json:"message"`
}

func (p posted) print(e *env, raw []byte, what string) error {
	return e.out(raw, func() {
		state := what
		if p.Dup {
			state = "already " + what + ": nothing new stored"
		}
		fields(e.stdout, "message", p.Message.ID, "conversation", p.Conversation, "from", p.Message.Author+" ("+p.Message.Role+")",
			"state", state, "seq", fmt.Sprint(p.Seq))
	})
}

func conversationPost(e *env, args []string) error {
	f := e.flags("conversation post")
	ws := f.workspaceFlag()
	id := f.String("id", "", "the message's id, [A-Za-z0-9_-]{8,64}: give the same one to retry (default: a new random one, printed)")
	bot := f.String("bot", "", "the bot's name (an API key only; default the key's name)")
	pos, err := f.parse(args, 2, -1)
	if err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	conv, text := pos[0], strings.Join(pos[1:], " ")
	if !ident.ValidConversation(conv) {
		return usagef("conversation %q: want c_ and 24 lowercase hex digits", conv)
	}
	if *id == "" {
		b := make([]byte, 12)
		rand.Read(b)
		*id = "m-" + hex.EncodeToString(b)
	}
	if !reMessageID.MatchString(*id) {
		return usagef("-id %q: want 8 to 64 of A-Z a-z 0-9 _ -", *id)
	}
	body := map[string]any{"id": *id, "body": text}
	if f.given("bot") {
		body["bot"] = *bot
	}
	var p posted
	raw, err := e.call(http.MethodPost, convPath(*ws, conv, "messages"), nil, body, &p, true)
	var ue *usageError
	if err != nil && !errors.As(err, &ue) {
		return fmt.Errorf("%w\n  message id %s: a retry with -id %s never stores it twice", err, *id, *id)
	}
	if err != nil {
		return err
	}
	return p.print(e, raw, "posted")
}

// messageArgs reads CONVERSATION MESSAGE [TEXT...].
func messageArgs(e *env, name string, args []string, text bool) (ws, conv, msg, body string, err error) {
	f := e.flags(name)
	w := f.workspaceFlag()
	min, max := 2, 2
	if text {
		min, max = 3, -1
	}
	pos, err := f.parse(args, min, max)
	if err != nil {
		return "", "", "", "", err
	}
	if err := needWorkspace(*w); err != nil {
		return "", "", "", "", err
	}
	if !ident.ValidConversation(pos[0]) {
		return "", "", "", "", usagef("conversation %q: want c_ and 24 lowercase hex digits", pos[0])
	}
	if !reMessageID.MatchString(pos[1]) {
		return "", "", "", "", usagef("message %q: want 8 to 64 of A-Z a-z 0-9 _ -", pos[1])
	}
	return *w, pos[0], pos[1], strings.Join(pos[2:], " "), nil
}

func conversationEdit(e *env, args []string) error {
	ws, conv, msg, text, err := messageArgs(e, "conversation edit", args, true)
	if err != nil {
		return err
	}
	var p posted
	raw, err := e.call(http.MethodPatch, convPath(ws, conv, "messages", msg), nil, map[string]any{"body": text}, &p, true)
	if err != nil {
		return err
	}
	return p.print(e, raw, "edited")
}

func conversationDelete(e *env, args []string) error {
	ws, conv, msg, _, err := messageArgs(e, "conversation delete", args, false)
	if err != nil {
		return err
	}
	var p posted
	raw, err := e.call(http.MethodDelete, convPath(ws, conv, "messages", msg), nil, nil, &p, true)
	if err != nil {
		return err
	}
	return p.print(e, raw, "deleted")
}
