package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"parley/cluster/schema"
	"parley/crdt"
	"parley/gateway"
	"parley/gateway/wire"
	"parley/ident"
	"parley/node/httpapi"
	"parley/store"

	"golang.org/x/time/rate"
)

// The conversations API (docs/api.md, "Conversations API"): a workspace's
// conversations and messages for API keys and operators' sessions. A
// message it posts, edits or deletes takes the path of a message sent over
// the wire (gateway.Server.Post): durable, confirmed by a second replica on
// a cluster, and fanned out live to every subscriber.

// Key is an API key that authenticated a request.
type Key struct {
	ID   string // k_…
	Name string // the key's name: a bot's name unless the post gives one
}

// Keys checks an API key for a workspace (the node's control plane):
// gateway.ErrAuth when refused (unknown, revoked, another workspace's),
// another error when it cannot tell now.
type Keys interface {
	Key(ctx context.Context, workspace, raw string) (Key, error)
}

// Poster makes message changes outside a connection (a *gateway.Server).
type Poster interface {
	Post(ctx context.Context, p gateway.Post) (gateway.Posted, error)
}

// Limits of the conversations API.
const (
	defaultRate = 20
	// MaxPostBody bounds a post's or an edit's body: a message of 4000
	// characters of up to 4 bytes, escaped, and the fields around it.
	MaxPostBody      = 64 << 10
	maxBotName       = 80
	defaultPageLimit = 50
	maxPageLimit     = 200
	// limitIdle is how long a credential's bucket is kept unused: by then
	// it is full again at any rate of at least a token a minute.
	limitIdle = 10 * time.Minute
)

// credential names whose budget a call spends: an API key's ID, or an
// operator's session.
func (c *apiCall) credential() string {
	if c.key.ID != "" {
		return c.key.ID
	}
	if c.agent.Credential != "" {
		return c.agent.Credential
	}
	return "a:" + c.ws + "/" + c.agent.ID
}

// participant is who a call writes as: "b:<key ID>", a bot, for an API
// key; "a:<operator>" for an operator's session.
func (c *apiCall) participant() (string, ident.Role) {
	if c.key.ID != "" {
		return "b:" + c.key.ID, ident.Bot
	}
	return "a:" + c.agent.ID, ident.Agent
}

// credentialLimits is a token bucket per credential.
type credentialLimits struct {
	rate   rate.Limit
	burst  int
	mu     sync.Mutex
	lims   map[string]*credLimit
	pruned time.Time
}

type credLimit struct {
	lim  *rate.Limiter
	used time.Time
}

func newCredentialLimits(r float64, burst int) *credentialLimits {
	return &credentialLimits{rate: rate.Limit(r), burst: burst, lims: map[string]*credLimit{}}
}

// wait takes a token of cred's bucket and returns 0, or, when it is
// empty, how long until it has one (taking nothing).
func (l *credentialLimits) wait(cred string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.pruned) > time.Minute {
		l.pruned = now
		for k, c := range l.lims {
			if now.Sub(c.used) > limitIdle {
				delete(l.lims, k)
			}
		}
	}
	c := l.lims[cred]
	if c == nil {
		c = &credLimit{lim: rate.NewLimiter(l.rate, l.burst)}
		l.lims[cred] = c
	}
	c.used = now
	r := c.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// listFilter is what a list keeps: each field given narrows it. A filter
// is a query parameter; one the list does not know is refused, so that
// adding one (a conversation's status, with the inbox) changes no
// answer a client had.
type listFilter struct {
	visitor  string // the owner, "v:…" or "u:…"
	assignee string // an operator's ID, or "-" for unassigned
	since    int64  // unix ms: updated at or after it; 0: any
	status   crdt.Status
	tag      string
}

// listParams are the list's query parameters.
var listParams = []string{"limit", "cursor", "visitor", "assignee", "updated_since", "status", "tag"}

func parseListFilter(q map[string][]string) (listFilter, error) {
	var f listFilter
	for k, v := range q {
		if !slices.Contains(listParams, k) {
			return f, badRequest("%s: not a parameter of the list (it takes %s)", k, strings.Join(listParams, ", "))
		}
		if len(v) != 1 {
			return f, badRequest("%s: give it once", k)
		}
	}
	get := func(k string) string {
		if v := q[k]; len(v) == 1 {
			return v[0]
		}
		return ""
	}
	if v := get("visitor"); v != "" {
		if err := schema.CheckVisitor(v); err != nil {
			return f, badRequest("visitor: v: and 32 hex digits, or u: and a user ID")
		}
		f.visitor = v
	}
	if v := get("assignee"); v != "" {
		if v != "-" && !ident.ValidID(v) {
			return f, badRequest("assignee: an operator's ID, or - for unassigned")
		}
		f.assignee = v
	}
	if v := get("updated_since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return f, badRequest("updated_since: an RFC 3339 time")
		}
		f.since = t.UnixMilli()
	}
	if v := get("status"); v != "" {
		if !crdt.Status(v).Valid() {
			return f, badRequest("status: open, pending, snoozed or resolved")
		}
		f.status = crdt.Status(v)
	}
	if v := get("tag"); v != "" {
		if !gateway.ValidTag(v) {
			return f, badRequest("tag: [a-z0-9][a-z0-9_-]{0,31}")
		}
		f.tag = v
	}
	return f, nil
}

// keep says whether the filter keeps c; assignee reads its assignment.
func (f listFilter) keep(c store.Conversation, assignee func(string) string) bool {
	if f.since != 0 && c.Updated < f.since {
		return false
	}
	if f.status != "" && c.InboxState().Status(time.Now().UnixMilli()) != f.status {
		return false
	}
	if f.tag != "" && !c.InboxState().HasTag(f.tag) {
		return false
	}
	if f.assignee != "" {
		a := assignee(c.ID)
		if (f.assignee == "-" && a != "") || (f.assignee != "-" && a != f.assignee) {
			return false
		}
	}
	return true
}

// assignee is the operator a conversation is assigned to, "" when none.
func (a *API) assignee(ws, conv string) string {
	as, err := a.cfg.Cluster.Assignment(ws, conv)
	if err != nil {
		return ""
	}
	return as.Operator
}

// pageLimit reads ?limit=, 1..maxPageLimit, default defaultPageLimit.
func pageLimit(r *http.Request) (int, error) {
	return intParam(r, "limit", defaultPageLimit, maxPageLimit)
}

// listItem of a conversation, with its assignee.
func (a *API) item(ws string, cv store.Conversation) listItem {
	it := listItem{ID: cv.ID, Owner: cv.Owner, OwnerName: cv.OwnerName, Created: cv.Created, Updated: cv.Updated, Head: cv.Head,
		Assignee: a.assignee(ws, cv.ID)}
	x := cv.InboxState()
	now := time.Now().UnixMilli()
	it.Status, it.Until, it.Tags = x.Status(now), x.Until(now), x.Tags()
	if cv.Last != nil && !cv.Last.IsDeleted() {
		it.Preview = truncateRunes(cv.Last.Body, previewRunes)
	}
	return it
}

// apiConversation: GET /v1/workspaces/{ws}/conversations/{conv}.
func (a *API) apiConversation(c *apiCall) (any, error) {
	conv, err := a.convParam(c)
	if err != nil {
		return nil, err
	}
	return a.item(c.ws, conv), nil
}

// messageItem is a message in a page, at its latest event of the page.
type messageItem struct {
	Seq     uint64       `json:"seq"`
	At      string       `json:"at,omitempty"`
	Message wire.Message `json:"message"`
}

// apiMessages: GET /v1/workspaces/{ws}/conversations/{conv}/messages
// ?cursor=<seq>&limit=50: the conversation's messages in this node's log
// order, each at its current state, once a page (at its last event in the
// page); next is the cursor of the next page, left out on the last.
func (a *API) apiMessages(c *apiCall) (any, error) {
	q := c.r.URL.Query()
	for k := range q {
		if k != "limit" && k != "cursor" {
			return nil, badRequest("%s: not a parameter of messages (it takes limit, cursor)", k)
		}
	}
	limit, err := pageLimit(c.r)
	if err != nil {
		return nil, err
	}
	var after uint64
	if raw := q.Get("cursor"); raw != "" {
		if after, err = strconv.ParseUint(raw, 10, 64); err != nil {
			return nil, badRequest("cursor: give back the next of a page")
		}
	}
	conv, err := a.convParam(c)
	if err != nil {
		return nil, err
	}
	evs, more, err := a.cfg.Store.Events(c.ws, conv.ID, after, limit)
	if err != nil {
		return nil, err
	}
	last := map[string]int{}
	for i, e := range evs {
		last[e.Message.ID] = i
	}
	items := make([]messageItem, 0, len(last))
	for i, e := range evs {
		if last[e.Message.ID] != i {
			continue
		}
		at := ""
		if e.Stamp.Origin != "" {
			at = e.Stamp.Origin + "." + strconv.FormatUint(e.Stamp.OSeq, 10)
		}
		items = append(items, messageItem{Seq: e.Seq, At: at, Message: gateway.WireMessage(e.Message)})
	}
	ans := struct {
		Conversation string        `json:"conversation"`
		Items        []messageItem `json:"items"`
		Next         string        `json:"next,omitempty"`
	}{Conversation: conv.ID, Items: items}
	if more && len(evs) > 0 {
		ans.Next = strconv.FormatUint(evs[len(evs)-1].Seq, 10)
	}
	return ans, nil
}

// postAnswer is what a post, an edit and a delete answer.
type postAnswer struct {
	Conversation string       `json:"conversation"`
	Seq          uint64       `json:"seq"`
	Dup          bool         `json:"dup"`
	Message      wire.Message `json:"message"`
}

// decodeBody reads a strict JSON object of at most MaxPostBody bytes.
func decodeBody(c *apiCall, v any, fields string) error {
	dec := json.NewDecoder(http.MaxBytesReader(c.w, c.r.Body, MaxPostBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		return badRequest("body: one JSON object %s of at most %d bytes", fields, MaxPostBody)
	}
	return nil
}

// apiPost: POST /v1/workspaces/{ws}/conversations/{conv}/messages
// {"id","body","bot"}: a message as the caller's agent, or, with an API
// key, as a bot named bot (the key's name when left out). id is the
// message's and the request's idempotency key: the same id again stores
// nothing and answers the stored message with dup.
func (a *API) apiPost(c *apiCall) (any, error) {
	var in struct {
		ID   string  `json:"id"`
		Body *string `json:"body"`
		Bot  *string `json:"bot"`
	}
	if err := decodeBody(c, &in, `{"id","body","bot"}`); err != nil {
		return nil, err
	}
	if in.Body == nil {
		return nil, badRequest("body: required")
	}
	p := gateway.Post{Kind: wire.TypeSend, ID: in.ID, Body: *in.Body}
	p.Participant, p.Role = c.participant()
	p.Name = c.agent.Name
	if c.key.ID != "" {
		p.Name = c.key.Name
		if in.Bot != nil {
			p.Name = *in.Bot
		}
		if n := utf8.RuneCountInString(p.Name); n < 1 || n > maxBotName || strings.TrimSpace(p.Name) != p.Name || !ident.PrintableName(p.Name) {
			return nil, badRequest("bot: 1..%d printable characters, no leading or trailing space", maxBotName)
		}
	} else if in.Bot != nil {
		return nil, &httpapi.Error{Status: http.StatusForbidden, Code: codeForbidden, Message: "bot: only an API key posts as a bot; an operator posts as themself"}
	}
	return a.post(c, p)
}

// apiEdit: PATCH /v1/workspaces/{ws}/conversations/{conv}/messages/{id}
// {"body"}: replaces the text of the caller's own message.
func (a *API) apiEdit(c *apiCall) (any, error) {
	var in struct {
		Body *string `json:"body"`
	}
	if err := decodeBody(c, &in, `{"body"}`); err != nil {
		return nil, err
	}
	if in.Body == nil {
		return nil, badRequest("body: required")
	}
	p := gateway.Post{Kind: wire.TypeEdit, ID: c.r.PathValue("id"), Body: *in.Body}
	p.Participant, p.Role = c.participant()
	return a.post(c, p)
}

// apiDelete: DELETE /v1/workspaces/{ws}/conversations/{conv}/messages/{id}:
// deletes the caller's own message (its text is erased, its id stays).
func (a *API) apiDelete(c *apiCall) (any, error) {
	p := gateway.Post{Kind: wire.TypeDelete, ID: c.r.PathValue("id")}
	p.Participant, p.Role = c.participant()
	return a.post(c, p)
}

// post hands a change to the gateway and answers what it did.
func (a *API) post(c *apiCall, p gateway.Post) (any, error) {
	if a.cfg.Poster == nil {
		return nil, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: "posting is not served by this node"}
	}
	p.Workspace, p.Conversation = c.ws, c.r.PathValue("conv")
	res, err := a.cfg.Poster.Post(c.r.Context(), p)
	var pe *gateway.PostError
	if errors.As(err, &pe) {
		return nil, &httpapi.Error{Status: postStatus[pe.Code], Code: pe.Code, Message: pe.Message, RetryAfter: pe.Retry}
	}
	if err != nil {
		return nil, fmt.Errorf("post: %w", err)
	}
	return postAnswer{Conversation: p.Conversation, Seq: res.Seq, Dup: res.Dup, Message: res.Message}, nil
}

// postStatus is the HTTP status of each wire error a post may meet
// (docs/protocol.md's codes, docs/api.md's statuses).
var postStatus = map[string]int{
	wire.CodeBadRequest:  http.StatusBadRequest,
	wire.CodeForbidden:   http.StatusForbidden,
	wire.CodeNotFound:    http.StatusNotFound,
	wire.CodeRateLimited: http.StatusTooManyRequests,
	wire.CodeOverLimit:   http.StatusForbidden,
	wire.CodeOverloaded:  http.StatusServiceUnavailable,
	wire.CodeUnavailable: http.StatusServiceUnavailable,
	wire.CodeInternal:    http.StatusInternalServerError,
}
