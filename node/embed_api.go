package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"parley/cluster"
	"parley/embedder"
	"parley/gateway"
	"parley/ident"
	"parley/node/httpapi"
	"parley/store"
)

// The agents' HTTP API of similar conversations, semantic search, saved
// replies, suggestions and erasure. A request is authenticated exactly as
// the console's hello is: the operator token (Authorization: Bearer) checked
// by the node's gateway.Authenticator for the workspace in the path, and it
// only ever reads or changes that workspace. Errors are JSON:
// {"code":"bad_request","message":"k: must be 1..50"}.

// API error codes.
const (
	codeBadRequest      = "bad_request"
	codeUnauthenticated = "unauthenticated"
	codeAuthFailed      = "auth_failed"
	codeNotFound        = "not_found"
	codeEmbedderOff     = "embedder_off"
	codeUnavailable     = "unavailable"
	codeInternal        = "internal"
)

// Input limits.
const (
	defaultK        = 5
	maxK            = 50
	maxQueryRunes   = 500
	maxTokenBytes   = 512
	maxTitleRunes   = 80
	maxReplyRunes   = 2000
	maxReplyBody    = 16 << 10
	previewRunes    = 140
	apiEmbedTimeout = 10 * time.Second
)

var (
	reReplyID = regexp.MustCompile(`^r_[0-9a-f]{16}$`)
)

func (n *Node) embedRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/embeddings", n.embedStatus)
	mux.Handle("GET /v1/workspaces/{ws}/conversations/{conv}/similar", n.agentAPI(n.apiSimilar))
	mux.Handle("GET /v1/workspaces/{ws}/conversations/{conv}/suggestions", n.agentAPI(n.apiSuggestions))
	mux.Handle("DELETE /v1/workspaces/{ws}/conversations/{conv}", n.agentAPI(n.apiErase))
	mux.Handle("GET /v1/workspaces/{ws}/search", n.agentAPI(n.apiSearch))
	mux.Handle("GET /v1/workspaces/{ws}/replies", n.agentAPI(n.apiReplies))
	mux.Handle("POST /v1/workspaces/{ws}/replies", n.agentAPI(n.apiCreateReply))
	mux.Handle("DELETE /v1/workspaces/{ws}/replies/{id}", n.agentAPI(n.apiDeleteReply))
}

// Errors are httpapi.Error: the same body on every JSON route.

func badRequest(format string, args ...any) *httpapi.Error {
	return &httpapi.Error{Status: http.StatusBadRequest, Code: codeBadRequest, Message: fmt.Sprintf(format, args...)}
}

// apiCall is an authenticated request to one workspace.
type apiCall struct {
	w     http.ResponseWriter
	r     *http.Request
	ws    string
	agent gateway.Agent
}

// agentAPI authenticates the agent for the workspace of the path, then
// calls h, which answers with a value (200) or an *httpapi.Error.
func (n *Node) agentAPI(h func(*apiCall) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ws := r.PathValue("ws"); ident.ValidID(ws) && n.relay.proxyAPI(w, r, ws) {
			return
		}
		v, err := n.authorizeAPI(w, r, h)
		if err != nil {
			var ae *httpapi.Error
			if !errors.As(err, &ae) {
				n.log.Error("api", "path", r.URL.Path, "err", err)
				ae = &httpapi.Error{Status: http.StatusInternalServerError, Code: codeInternal, Message: "internal error"}
			}
			httpapi.WriteJSON(w, ae.Status, ae)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, v)
	})
}

func (n *Node) authorizeAPI(w http.ResponseWriter, r *http.Request, h func(*apiCall) (any, error)) (any, error) {
	ws := r.PathValue("ws")
	if !ident.ValidID(ws) {
		return nil, badRequest("workspace: 1 to 64 characters of a-z, 0-9, _ and -")
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" || len(token) > maxTokenBytes {
		return nil, &httpapi.Error{Status: http.StatusUnauthorized, Code: codeUnauthenticated, Message: "send the operator token as Authorization: Bearer <token>"}
	}
	ag, err := n.auth.Agent(r.Context(), ws, token)
	if errors.Is(err, gateway.ErrAuth) {
		// The same answer for an unknown workspace and a wrong token.
		return nil, &httpapi.Error{Status: http.StatusUnauthorized, Code: codeAuthFailed, Message: "operator token refused for this workspace"}
	}
	if err != nil {
		n.log.Warn("api: authentication unavailable", "err", err)
		return nil, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: "authentication unavailable: retry later"}
	}
	return h(&apiCall{w: w, r: r, ws: ws, agent: ag})
}

// embedOn refuses a request that needs the model when the feature is off.
func (n *Node) embedOn() error {
	if n.emb.on() {
		return nil
	}
	reason := "not started"
	if n.emb != nil {
		reason = n.emb.off
	}
	return &httpapi.Error{Status: http.StatusServiceUnavailable, Code: codeEmbedderOff, Message: "similar conversations and suggestions are off on this node: " + reason}
}

// embedStatus tells the console whether the feature works here:
// GET /v1/embeddings. It says nothing about any workspace.
func (n *Node) embedStatus(w http.ResponseWriter, r *http.Request) {
	type status struct {
		Enabled bool   `json:"enabled"`
		Reason  string `json:"reason,omitempty"`
		Model   string `json:"model,omitempty"`
		Dim     int    `json:"dim,omitempty"`
		Pending int    `json:"pending"`
	}
	var s status
	switch {
	case n.emb.on():
		s = status{Enabled: true, Model: "all-MiniLM-L6-v2", Dim: n.emb.enc.Dim(), Pending: n.emb.worker.Stats().Pending}
	case n.emb != nil:
		s.Reason = n.emb.off
	default:
		s.Reason = "not started"
	}
	httpapi.WriteJSON(w, http.StatusOK, s)
}

// kParam reads ?k=, 1..maxK, default defaultK.
func kParam(r *http.Request) (int, error) {
	raw := r.URL.Query().Get("k")
	if raw == "" {
		return defaultK, nil
	}
	k, err := strconv.Atoi(raw)
	if err != nil || k < 1 || k > maxK {
		return 0, badRequest("k: must be an integer 1..%d", maxK)
	}
	return k, nil
}

// convParam reads the conversation of the path; it must exist in the
// workspace.
func (n *Node) convParam(c *apiCall) (store.Conversation, error) {
	id := c.r.PathValue("conv")
	if !ident.ValidConversation(id) {
		return store.Conversation{}, badRequest("conversation: c_ and 24 lowercase hex digits")
	}
	conv, err := n.store.Conversation(c.ws, id)
	if errors.Is(err, store.ErrNotFound) {
		return conv, &httpapi.Error{Status: http.StatusNotFound, Code: codeNotFound, Message: "conversation not found in this workspace"}
	}
	return conv, err
}

// convHit is a conversation in a result.
type convHit struct {
	Conversation string  `json:"conversation"`
	Score        float32 `json:"score"`
	OwnerName    string  `json:"owner_name,omitempty"`
	Owner        string  `json:"owner"`
	Preview      string  `json:"preview"`
	Updated      int64   `json:"updated"`
}

// convHits turns index hits into results, leaving out skip and whatever
// was erased since it was indexed, at most k.
func (n *Node) convHits(ws string, hits []embedder.Hit, skip string, k int) []convHit {
	out := []convHit{}
	for _, h := range hits {
		if h.ID == skip || len(out) == k {
			continue
		}
		c, err := n.store.Conversation(ws, h.ID)
		if err != nil {
			continue
		}
		hit := convHit{Conversation: c.ID, Score: h.Score, Owner: c.Owner, OwnerName: c.OwnerName, Updated: c.Updated}
		if c.Last != nil && !c.Last.IsDeleted() {
			hit.Preview = truncateRunes(c.Last.Body, previewRunes)
		}
		out = append(out, hit)
	}
	return out
}

func truncateRunes(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j] + "…"
		}
		i++
	}
	return s
}

// embedNow embeds texts for a request, bounded in time.
func (n *Node) embedNow(ctx context.Context, texts ...string) ([][]float32, error) {
	ctx, cancel := context.WithTimeout(ctx, apiEmbedTimeout)
	defer cancel()
	vecs, err := n.emb.enc.Embed(ctx, texts)
	if err != nil {
		return nil, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: "the model is busy: retry later"}
	}
	return vecs, nil
}

type similarAnswer struct {
	Conversation string    `json:"conversation"`
	Items        []convHit `json:"items"`
	// Indexed is false when the conversation's vector was computed for
	// this answer because the worker had not stored one yet.
	Indexed bool `json:"indexed"`
}

// apiSimilar: GET /v1/workspaces/{ws}/conversations/{conv}/similar?k=5,
// the past conversations of the workspace most like this one.
func (n *Node) apiSimilar(c *apiCall) (any, error) {
	if err := n.embedOn(); err != nil {
		return nil, err
	}
	k, err := kParam(c.r)
	if err != nil {
		return nil, err
	}
	conv, err := n.convParam(c)
	if err != nil {
		return nil, err
	}
	ans := similarAnswer{Conversation: conv.ID, Items: []convHit{}}
	x := n.emb.lookup(n.emb.convs, c.ws)
	var vec []float32
	if x != nil {
		vec, ans.Indexed = x.Vector(conv.ID)
	}
	if vec == nil {
		msgs, err := n.emb.messages(c.ws, conv.ID)
		if err != nil {
			return nil, err
		}
		text := conversationText(msgs)
		if text == "" || x == nil {
			return ans, nil
		}
		vecs, err := n.embedNow(c.r.Context(), text)
		if err != nil {
			return nil, err
		}
		vec = vecs[0]
	}
	if x != nil {
		ans.Items = n.convHits(c.ws, x.Search(vec, k+1), conv.ID, k)
	}
	return ans, nil
}

// apiSearch: GET /v1/workspaces/{ws}/search?q=...&k=10, the workspace's
// conversations closest in meaning to q.
func (n *Node) apiSearch(c *apiCall) (any, error) {
	if err := n.embedOn(); err != nil {
		return nil, err
	}
	k, err := kParam(c.r)
	if err != nil {
		return nil, err
	}
	q := strings.TrimSpace(c.r.URL.Query().Get("q"))
	if q == "" || !utf8.ValidString(q) || utf8.RuneCountInString(q) > maxQueryRunes {
		return nil, badRequest("q: 1..%d characters of valid UTF-8", maxQueryRunes)
	}
	ans := struct {
		Items []convHit `json:"items"`
	}{Items: []convHit{}}
	x := n.emb.lookup(n.emb.convs, c.ws)
	if x == nil || x.Len() == 0 {
		return ans, nil
	}
	vecs, err := n.embedNow(c.r.Context(), q)
	if err != nil {
		return nil, err
	}
	ans.Items = n.convHits(c.ws, x.Search(vecs[0], k), "", k)
	return ans, nil
}

type replyHit struct {
	ID    string  `json:"id"`
	Title string  `json:"title"`
	Body  string  `json:"body"`
	Score float32 `json:"score"`
}

// apiSuggestions: GET /v1/workspaces/{ws}/conversations/{conv}/suggestions?k=3,
// the saved replies of the workspace ranked by similarity to the visitor's
// last messages in the conversation.
func (n *Node) apiSuggestions(c *apiCall) (any, error) {
	if err := n.embedOn(); err != nil {
		return nil, err
	}
	k, err := kParam(c.r)
	if err != nil {
		return nil, err
	}
	conv, err := n.convParam(c)
	if err != nil {
		return nil, err
	}
	ans := struct {
		Conversation string     `json:"conversation"`
		Items        []replyHit `json:"items"`
	}{Conversation: conv.ID, Items: []replyHit{}}
	x := n.emb.lookup(n.emb.replies, c.ws)
	if x == nil || x.Len() == 0 {
		return ans, nil
	}
	msgs, err := n.emb.messages(c.ws, conv.ID)
	if err != nil {
		return nil, err
	}
	tail := visitorTail(msgs, suggestFrom)
	if tail == "" {
		return ans, nil
	}
	vecs, err := n.embedNow(c.r.Context(), tail)
	if err != nil {
		return nil, err
	}
	byID := map[string]store.Reply{}
	rs, err := n.store.Replies(c.ws)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		byID[r.ID] = r
	}
	for _, h := range x.Search(vecs[0], k) {
		if r, ok := byID[h.ID]; ok {
			ans.Items = append(ans.Items, replyHit{ID: r.ID, Title: r.Title, Body: r.Body, Score: h.Score})
		}
	}
	return ans, nil
}

type replyOut struct {
	ID      string `json:"id"`
	Title   string `json:"title"`
	Body    string `json:"body"`
	Created int64  `json:"created"`
}

// apiReplies: GET /v1/workspaces/{ws}/replies.
func (n *Node) apiReplies(c *apiCall) (any, error) {
	rs, err := n.store.Replies(c.ws)
	if err != nil {
		return nil, err
	}
	out := struct {
		Items []replyOut `json:"items"`
	}{Items: []replyOut{}}
	for _, r := range rs {
		out.Items = append(out.Items, replyOut{r.ID, r.Title, r.Body, r.Created})
	}
	return out, nil
}

// validText checks a required text field.
func validText(field, s string, maxRunes int) error {
	if strings.TrimSpace(s) == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxRunes {
		return badRequest("%s: 1..%d characters of valid UTF-8", field, maxRunes)
	}
	for _, r := range s {
		if r != '\n' && r != '\t' && (r < 0x20 || (r >= 0x7f && r < 0xa0)) {
			return badRequest("%s: control characters are not allowed", field)
		}
	}
	return nil
}

// apiCreateReply: POST /v1/workspaces/{ws}/replies {"title":..,"body":..}.
func (n *Node) apiCreateReply(c *apiCall) (any, error) {
	var in struct {
		Title string `json:"title"`
		Body  string `json:"body"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.w, c.r.Body, maxReplyBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, badRequest("body: a JSON object {\"title\",\"body\"} of at most %d bytes", maxReplyBody)
	}
	if dec.More() {
		return nil, badRequest("body: one JSON object")
	}
	in.Title, in.Body = strings.TrimSpace(in.Title), strings.TrimSpace(in.Body)
	if err := validText("title", in.Title, maxTitleRunes); err != nil {
		return nil, err
	}
	if err := validText("body", in.Body, maxReplyRunes); err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	r := store.Reply{ID: "r_" + fmt.Sprintf("%x", random(8)), Title: in.Title, Body: in.Body, Created: now, Updated: now}
	if n.emb.on() {
		vecs, err := n.embedNow(c.r.Context(), replyText(r))
		if err != nil {
			return nil, err
		}
		r.Vector = vecs[0]
	}
	if err := n.store.PutReply(c.r.Context(), c.ws, r, maxReplies); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return nil, badRequest("this workspace has %d saved replies, the most allowed", maxReplies)
		}
		return nil, err
	}
	if n.emb.on() {
		if err := n.emb.replyIndex(c.ws).Add(r.ID, r.Vector); err != nil {
			return nil, err
		}
	}
	n.repl.replyChanged(c.ws, r)
	return replyOut{r.ID, r.Title, r.Body, r.Created}, nil
}

// repliesFromPeer keeps the saved-reply index in step with replies another
// node's signal changed here: tombstones leave it, new versions are
// embedded and enter it.
func (n *Node) repliesFromPeer(ws string, applied []store.Reply) {
	if !n.emb.on() {
		return
	}
	for _, r := range applied {
		if r.Deleted {
			if x := n.emb.lookup(n.emb.replies, ws); x != nil {
				x.Remove(r.ID)
			}
			continue
		}
		vecs, err := n.embedNow(context.Background(), replyText(r))
		if err != nil {
			n.log.Warn("saved reply from a peer not embedded; it is at the next start", "err", err)
			continue
		}
		n.emb.replyIndex(ws).Add(r.ID, vecs[0])
	}
}

// apiDeleteReply: DELETE /v1/workspaces/{ws}/replies/{id}.
func (n *Node) apiDeleteReply(c *apiCall) (any, error) {
	id := c.r.PathValue("id")
	if !reReplyID.MatchString(id) {
		return nil, badRequest("id: r_ and 16 lowercase hex digits")
	}
	tomb, err := n.store.DeleteReply(c.r.Context(), c.ws, id, time.Now().UnixMilli())
	if errors.Is(err, store.ErrNotFound) {
		return nil, &httpapi.Error{Status: http.StatusNotFound, Code: codeNotFound, Message: "saved reply not found in this workspace"}
	}
	if err != nil {
		return nil, err
	}
	if n.emb.on() {
		if x := n.emb.lookup(n.emb.replies, c.ws); x != nil {
			x.Remove(id)
		}
	}
	n.repl.replyChanged(c.ws, tomb)
	return struct {
		Deleted string `json:"deleted"`
	}{id}, nil
}

// apiErase: DELETE /v1/workspaces/{ws}/conversations/{conv} erases the
// conversation, its messages, receipts and vector, on every node: the
// erasure is a control-plane record (erasure.go) that each node applies,
// now or when it catches up. The answer says which nodes confirmed they
// erased it and which did not in time; erasing again answers the same way,
// with the first erasure's index.
func (n *Node) apiErase(c *apiCall) (any, error) {
	id := c.r.PathValue("conv")
	if !ident.ValidConversation(id) {
		return nil, badRequest("conversation: c_ and 24 lowercase hex digits")
	}
	index, erased, err := n.ctl.c.Erased(c.ws, id)
	if err != nil {
		return nil, err
	}
	if !erased {
		if _, err := n.convParam(c); err != nil {
			return nil, err
		}
		res, err := n.ctl.c.Apply(c.r.Context(), cluster.EraseConversation{Workspace: c.ws, Conversation: id})
		if err != nil {
			return nil, fmt.Errorf("erase: %w", err)
		}
		index = res.Index
		n.log.Info("conversation erased", "workspace", c.ws, "conversation", id, "agent", c.agent.ID, "index", index)
	}
	conf := n.erasures.confirm(c.r.Context(), index)
	return struct {
		Erased string `json:"erased"`
		Confirmation
	}{id, conf}, nil
}
