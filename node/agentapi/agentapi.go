// Package agentapi is the agents' HTTP API of similar conversations,
// semantic search, saved replies, suggestions and erasure. A request is
// authenticated exactly as the console's hello is: the operator token
// (Authorization: Bearer) checked by the node's gateway.Authenticator for the
// workspace in the path, and it only ever reads or changes that workspace.
// Errors are JSON: {"code":"bad_request","message":"k: must be 1..50"}.
package agentapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// API error codes.
const (
	codeBadRequest      = "bad_request"
	codeUnauthenticated = "unauthenticated"
	codeAuthFailed      = "auth_failed"
	codeNotFound        = "not_found"
	codeForbidden       = "forbidden"
	codeRateLimited     = "rate_limited"
	codeEmbedderOff     = "embedder_off"
	codeUnavailable     = CodeUnavailable
	codeInternal        = "internal"
)

// CodeUnavailable is the error code of an answer to retry later, also
// sent by the node when it cannot relay a request to the workspace's region.
const CodeUnavailable = "unavailable"

// Input limits.
const (
	defaultK      = 5
	maxK          = 50
	MaxQueryRunes = 500
	MaxTokenBytes = 512
	MaxTitleRunes = 80
	MaxReplyRunes = 2000
	MaxReplyBody  = 16 << 10
	previewRunes  = 140
	// EmbedTimeout bounds the embedding of a request's texts.
	EmbedTimeout = 10 * time.Second
	// MaxReplies is the most saved replies a workspace may have.
	MaxReplies = 500
)

// Auth checks an agent's operator token for a workspace (the node's
// gateway.Authenticator).
type Auth interface {
	Agent(ctx context.Context, workspace, token string) (gateway.Agent, error)
}

// Relay sends a request about a workspace pinned to another region to a
// node of that region and answers with its answer; it reports false when
// the workspace is served here.
type Relay interface {
	ProxyAPI(w http.ResponseWriter, r *http.Request, workspace string) bool
}

// Fetcher reads a conversation, bringing it from its replicas first when
// this node does not hold it (the node's gateway.Server): an error wraps
// store.ErrNotFound when no replica holds it, gateway.ErrReplicasUnreachable
// when they could not be asked.
type Fetcher interface {
	Held(ctx context.Context, ws, conv string) (store.Conversation, error)
}

// Store is what the API reads and writes of the node's store (a
// *store.Store).
type Store interface {
	Conversation(ws, id string) (store.Conversation, error)
	ConversationsPageFunc(ws, owner string, after store.Cursor, limit int, keep func(store.Conversation) bool) ([]store.Conversation, store.Cursor, error)
	Events(ws, conv string, after uint64, limit int) ([]store.Event, bool, error)
	Replies(ws string) ([]store.Reply, error)
	PutReply(ctx context.Context, ws string, r store.Reply, max int) error
	DeleteReply(ctx context.Context, ws, id string, at int64) (store.Reply, error)
}

// Cluster is what the API needs of the control plane (a *cluster.Cluster):
// erasures are records of it.
type Cluster interface {
	Erased(workspace, conversation string) (index uint64, ok bool, err error)
	DeletionRequests(workspace string) ([]cluster.DeletionRequest, error)
	Assignment(workspace, conversation string) (cluster.Assignment, error)
	Apply(ctx context.Context, cmd cluster.Command) (cluster.Result, error)
}

// Erasures confirms an erasure on every node.
type Erasures interface {
	// Confirm asks every member to confirm it applied the erasure at index.
	Confirm(ctx context.Context, index uint64) httpapi.Confirmation
}

// Replies sends a changed saved reply to the other nodes.
type Replies interface {
	ReplyChanged(ws string, r store.Reply)
}

// Index is a workspace's top-k index of vectors (an *embedder.Index).
type Index interface {
	Len() int
	Add(id string, vec []float32) error
	Remove(id string) bool
	Vector(id string) ([]float32, bool)
	Search(q []float32, k int) []embedder.Hit
}

// Embeddings is the node's embedding feature.
type Embeddings interface {
	// Off says why the feature is off on this node; "", false when on.
	Off() (reason string, off bool)
	// Dim is the model's dimension and Pending the background worker's
	// backlog; only called when on.
	Dim() int
	Pending() int
	// Embed embeds texts with the model.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Conversations and Replies are a workspace's indexes of its
	// conversations and of its saved replies, nil when it has none;
	// ReplyIndex makes the latter when it has none.
	Conversations(ws string) Index
	Replies(ws string) Index
	ReplyIndex(ws string) Index
	// ConversationText is what a conversation is embedded as, and
	// VisitorTail the text of the visitor's last n messages in it.
	ConversationText(ws, conv string) (string, error)
	VisitorTail(ws, conv string, n int) (string, error)
	// ReplyText is what a saved reply is embedded as.
	ReplyText(r store.Reply) string
}

// Config is what an agents' API is made of; every field is required but
// those that say what their zero value is.
type Config struct {
	Auth       Auth
	Relay      Relay
	Store      Store
	Cluster    Cluster
	Erasures   Erasures
	Replies    Replies
	Embeddings Embeddings
	// Keys authenticates the API keys the conversations API
	// (conversations.go) accepts besides operator tokens. Nil: keys are
	// refused.
	Keys Keys
	// Fetcher reads the conversation a request names. Nil: Store's, and a
	// conversation not held here is not found.
	Fetcher Fetcher
	// Poster makes the messages the conversations API posts, edits and
	// deletes (the node's gateway.Server). Nil: those routes answer
	// unavailable.
	Poster Poster
	// Rate and Burst limit the conversations API's requests per
	// credential (an API key, an operator's session) on this node:
	// beyond, 429 rate_limited with Retry-After. Zero: 20 a second,
	// bursts of twice the rate.
	Rate   float64
	Burst  int
	Logger *slog.Logger
}

// API serves the agents' API of one node.
type API struct {
	cfg     Config
	limiter *credentialLimits
}

// New makes the agents' API of cfg; Register mounts it.
func New(cfg Config) *API {
	if cfg.Rate <= 0 {
		cfg.Rate = defaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, int(2*cfg.Rate))
	}
	return &API{cfg: cfg, limiter: newCredentialLimits(cfg.Rate, cfg.Burst)}
}

// on says whether the embedding feature works on this node.
func (a *API) on() bool {
	_, off := a.cfg.Embeddings.Off()
	return !off
}

var (
	reReplyID = regexp.MustCompile(`^r_[0-9a-f]{16}$`)
)

// Register mounts the agents' API on mux; docs/protocol.md documents it.
func (a *API) Register(mux httpapi.Mux) {
	mux.HandleFunc("GET /v1/embeddings", a.embedStatus)
	mux.Handle("GET /v1/workspaces/{ws}/conversations/{conv}/similar", a.handle(a.apiSimilar))
	mux.Handle("GET /v1/workspaces/{ws}/conversations/{conv}/suggestions", a.handle(a.apiSuggestions))
	mux.Handle("DELETE /v1/workspaces/{ws}/conversations/{conv}", a.handle(a.apiErase))
	mux.Handle("GET /v1/workspaces/{ws}/conversations", a.handleConv(a.apiList))
	mux.Handle("GET /v1/workspaces/{ws}/conversations/{conv}", a.handleConv(a.apiConversation))
	mux.Handle("GET /v1/workspaces/{ws}/conversations/{conv}/messages", a.handleConv(a.apiMessages))
	mux.Handle("POST /v1/workspaces/{ws}/conversations/{conv}/messages", a.handleConv(a.apiPost))
	mux.Handle("PATCH /v1/workspaces/{ws}/conversations/{conv}/messages/{id}", a.handleConv(a.apiEdit))
	mux.Handle("DELETE /v1/workspaces/{ws}/conversations/{conv}/messages/{id}", a.handleConv(a.apiDelete))
	mux.Handle("GET /v1/workspaces/{ws}/deletion-requests", a.handle(a.apiDeletionRequests))
	mux.Handle("POST /v1/workspaces/{ws}/deletion-requests/confirm", a.handle(a.apiConfirmDeletion))
	mux.Handle("GET /v1/workspaces/{ws}/search", a.handle(a.apiSearch))
	mux.Handle("GET /v1/workspaces/{ws}/replies", a.handle(a.apiReplies))
	mux.Handle("POST /v1/workspaces/{ws}/replies", a.handle(a.apiCreateReply))
	mux.Handle("DELETE /v1/workspaces/{ws}/replies/{id}", a.handle(a.apiDeleteReply))
}

// Errors are httpapi.Error: the same body on every JSON route.

func badRequest(format string, args ...any) *httpapi.Error {
	return &httpapi.Error{Status: http.StatusBadRequest, Code: codeBadRequest, Message: fmt.Sprintf(format, args...)}
}

// apiCall is an authenticated request to one workspace: an agent's (an
// operator token), or, on the conversations API, an API key's.
type apiCall struct {
	w     http.ResponseWriter
	r     *http.Request
	ws    string
	agent gateway.Agent
	key   Key // an API key's call: key.ID set, agent zero
}

// handle authenticates the agent for the workspace of the path, then
// calls h, which answers with a value (200) or an *httpapi.Error.
func (a *API) handle(h func(*apiCall) (any, error)) http.Handler {
	return a.serve(h, false)
}

// handleConv is handle for the conversations API: an API key of the
// workspace is accepted besides an operator token, and each credential's
// requests are rate limited.
func (a *API) handleConv(h func(*apiCall) (any, error)) http.Handler {
	return a.serve(h, true)
}

func (a *API) serve(h func(*apiCall) (any, error), conv bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ws := r.PathValue("ws"); ident.ValidID(ws) && a.cfg.Relay.ProxyAPI(w, r, ws) {
			return
		}
		v, err := a.authorizeAPI(w, r, h, conv)
		if err != nil {
			var ae *httpapi.Error
			switch {
			case errors.As(err, &ae):
			case errors.Is(err, cluster.ErrClusterUpgrading):
				// A command newer than a node of the cluster runs.
				ae = &httpapi.Error{Status: http.StatusConflict, Code: "cluster_upgrading", Message: err.Error()}
			default:
				a.cfg.Logger.Error("api", "path", r.URL.Path, "err", err)
				ae = &httpapi.Error{Status: http.StatusInternalServerError, Code: codeInternal, Message: "internal error"}
			}
			if ae.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.FormatInt(int64((ae.RetryAfter+time.Second-1)/time.Second), 10))
			}
			httpapi.WriteJSON(w, ae.Status, ae)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, v)
	})
}

func (a *API) authorizeAPI(w http.ResponseWriter, r *http.Request, h func(*apiCall) (any, error), conv bool) (any, error) {
	ws := r.PathValue("ws")
	if !ident.ValidID(ws) {
		return nil, badRequest("workspace: 1 to 64 characters of a-z, 0-9, _ and -")
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" || len(token) > MaxTokenBytes {
		return nil, &httpapi.Error{Status: http.StatusUnauthorized, Code: codeUnauthenticated, Message: "send the operator token as Authorization: Bearer <token>"}
	}
	c := &apiCall{w: w, ws: ws}
	var err error
	actor := cluster.Actor{Workspace: ws}
	if conv && a.cfg.Keys != nil && strings.HasPrefix(token, cluster.APIKeyPrefix) {
		c.key, err = a.cfg.Keys.Key(r.Context(), ws, token)
		actor.Kind, actor.ID = cluster.ActorKey, c.key.ID
	} else {
		c.agent, err = a.cfg.Auth.Agent(r.Context(), ws, token)
		actor.Kind, actor.ID = cluster.ActorOperator, c.agent.ID
	}
	if errors.Is(err, gateway.ErrAuth) {
		// The same answer for an unknown workspace and a wrong token.
		return nil, &httpapi.Error{Status: http.StatusUnauthorized, Code: codeAuthFailed, Message: "token refused for this workspace"}
	}
	if err != nil {
		a.cfg.Logger.Warn("api: authentication unavailable", "err", err)
		return nil, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: "authentication unavailable: retry later"}
	}
	if conv {
		if wait := a.limiter.wait(c.credential(), time.Now()); wait > 0 {
			return nil, &httpapi.Error{Status: http.StatusTooManyRequests, Code: codeRateLimited, RetryAfter: wait,
				Message: fmt.Sprintf("too many requests with this credential: retry in %d ms", wait.Milliseconds())}
		}
	}
	// Commands applied for the caller are audited (docs/api.md, "Audit log").
	call := cluster.NewAuditCall(actor, httpapi.ClientAddr(r), r.Pattern)
	c.r = r.WithContext(cluster.WithAudit(r.Context(), call))
	return h(c)
}

// embedOn refuses a request that needs the model when the feature is off.
func (a *API) embedOn() error {
	reason, off := a.cfg.Embeddings.Off()
	if !off {
		return nil
	}
	return &httpapi.Error{Status: http.StatusServiceUnavailable, Code: codeEmbedderOff, Message: "similar conversations and suggestions are off on this node: " + reason}
}

// embedStatus tells the console whether the feature works here:
// GET /v1/embeddings. It says nothing about any workspace.
func (a *API) embedStatus(w http.ResponseWriter, r *http.Request) {
	type status struct {
		Enabled bool   `json:"enabled"`
		Reason  string `json:"reason,omitempty"`
		Model   string `json:"model,omitempty"`
		Dim     int    `json:"dim,omitempty"`
		Pending int    `json:"pending"`
	}
	var s status
	if reason, off := a.cfg.Embeddings.Off(); off {
		s.Reason = reason
	} else {
		s = status{Enabled: true, Model: "all-MiniLM-L6-v2", Dim: a.cfg.Embeddings.Dim(), Pending: a.cfg.Embeddings.Pending()}
	}
	httpapi.WriteJSON(w, http.StatusOK, s)
}

// kParam reads ?k=, 1..maxK, default defaultK.
func kParam(r *http.Request) (int, error) { return intParam(r, "k", defaultK, maxK) }

// intParam reads the query parameter name, an integer 1..most, def when
// absent.
func intParam(r *http.Request, name string, def, most int) (int, error) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > most {
		return 0, badRequest("%s: must be an integer 1..%d", name, most)
	}
	return n, nil
}

// convParam reads the conversation of the path; it must exist in the
// workspace.
func (a *API) convParam(c *apiCall) (store.Conversation, error) {
	id := c.r.PathValue("conv")
	if !ident.ValidConversation(id) {
		return store.Conversation{}, badRequest("conversation: c_ and 24 lowercase hex digits")
	}
	var conv store.Conversation
	var err error
	if a.cfg.Fetcher != nil {
		conv, err = a.cfg.Fetcher.Held(c.r.Context(), c.ws, id)
	} else {
		conv, err = a.cfg.Store.Conversation(c.ws, id)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return conv, &httpapi.Error{Status: http.StatusNotFound, Code: codeNotFound, Message: "conversation not found in this workspace"}
	case errors.Is(err, gateway.ErrReplicasUnreachable):
		return conv, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: "conversation not held by this node and its replicas could not be asked: retry"}
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
func (a *API) convHits(ws string, hits []embedder.Hit, skip string, k int) []convHit {
	out := []convHit{}
	for _, h := range hits {
		if h.ID == skip || len(out) == k {
			continue
		}
		c, err := a.cfg.Store.Conversation(ws, h.ID)
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
func (a *API) embedNow(ctx context.Context, texts ...string) ([][]float32, error) {
	ctx, cancel := context.WithTimeout(ctx, EmbedTimeout)
	defer cancel()
	vecs, err := a.cfg.Embeddings.Embed(ctx, texts)
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
func (a *API) apiSimilar(c *apiCall) (any, error) {
	if err := a.embedOn(); err != nil {
		return nil, err
	}
	k, err := kParam(c.r)
	if err != nil {
		return nil, err
	}
	conv, err := a.convParam(c)
	if err != nil {
		return nil, err
	}
	ans := similarAnswer{Conversation: conv.ID, Items: []convHit{}}
	x := a.cfg.Embeddings.Conversations(c.ws)
	var vec []float32
	if x != nil {
		vec, ans.Indexed = x.Vector(conv.ID)
	}
	if vec == nil {
		text, err := a.cfg.Embeddings.ConversationText(c.ws, conv.ID)
		if err != nil {
			return nil, err
		}
		if text == "" || x == nil {
			return ans, nil
		}
		vecs, err := a.embedNow(c.r.Context(), text)
		if err != nil {
			return nil, err
		}
		vec = vecs[0]
	}
	if x != nil {
		ans.Items = a.convHits(c.ws, x.Search(vec, k+1), conv.ID, k)
	}
	return ans, nil
}

// apiSearch: GET /v1/workspaces/{ws}/search?q=...&k=10&mode=..., the
// workspace's conversations closest in meaning to q (mode=semantic, the
// default where the model is on) or holding each of its words
// (mode=keyword, the default where it is off).
func (a *API) apiSearch(c *apiCall) (any, error) {
	k, err := kParam(c.r)
	if err != nil {
		return nil, err
	}
	q := strings.TrimSpace(c.r.URL.Query().Get("q"))
	if q == "" || !utf8.ValidString(q) || utf8.RuneCountInString(q) > MaxQueryRunes {
		return nil, badRequest("q: 1..%d characters of valid UTF-8", MaxQueryRunes)
	}
	mode := c.r.URL.Query().Get("mode")
	switch mode {
	case "":
		mode = "semantic"
		if _, off := a.cfg.Embeddings.Off(); off {
			mode = "keyword"
		}
	case "semantic", "keyword":
	default:
		return nil, badRequest("mode: semantic or keyword")
	}
	if mode == "keyword" {
		terms := keywordTerms(q)
		if len(terms) == 0 {
			return nil, badRequest("q: no word to look for")
		}
		hits, complete, err := a.keywordSearch(c.ws, terms, k)
		if err != nil {
			return nil, err
		}
		return struct {
			Mode     string    `json:"mode"`
			Items    []convHit `json:"items"`
			Complete bool      `json:"complete"`
		}{mode, hits, complete}, nil
	}
	if err := a.embedOn(); err != nil {
		return nil, err
	}
	ans := struct {
		Mode  string    `json:"mode"`
		Items []convHit `json:"items"`
	}{Mode: mode, Items: []convHit{}}
	x := a.cfg.Embeddings.Conversations(c.ws)
	if x == nil || x.Len() == 0 {
		return ans, nil
	}
	vecs, err := a.embedNow(c.r.Context(), q)
	if err != nil {
		return nil, err
	}
	ans.Items = a.convHits(c.ws, x.Search(vecs[0], k), "", k)
	return ans, nil
}

type replyHit struct {
	ID    string  `json:"id"`
	Title string  `json:"title"`
	Body  string  `json:"body"`
	Score float32 `json:"score"`
}

// MinSuggestionScore is the least cosine similarity at which a saved reply
// is suggested unless the request asks for another (min_score). Below it,
// all-MiniLM-L6-v2's scores are noise: a reply about invoices scored 0.02–0.25
// against visitors writing about parcels, or in French (the model knows
// English only), while a reply on the visitor's subject scores 0.4 and up.
const MinSuggestionScore = 0.3

// apiSuggestions: GET /v1/workspaces/{ws}/conversations/{conv}/suggestions?k=3,
// the saved replies of the workspace ranked by similarity to the visitor's
// last messages in the conversation, those scoring below min_score
// (MinSuggestionScore unless given, 0..1) left out.
func (a *API) apiSuggestions(c *apiCall) (any, error) {
	if err := a.embedOn(); err != nil {
		return nil, err
	}
	k, err := kParam(c.r)
	if err != nil {
		return nil, err
	}
	minScore := float32(MinSuggestionScore)
	if raw := c.r.URL.Query().Get("min_score"); raw != "" {
		f, err := strconv.ParseFloat(raw, 32)
		if err != nil || !(f >= 0 && f <= 1) {
			return nil, badRequest("min_score: must be a number 0..1")
		}
		minScore = float32(f)
	}
	conv, err := a.convParam(c)
	if err != nil {
		return nil, err
	}
	ans := struct {
		Conversation string     `json:"conversation"`
		MinScore     float32    `json:"min_score"`
		Items        []replyHit `json:"items"`
	}{Conversation: conv.ID, MinScore: minScore, Items: []replyHit{}}
	x := a.cfg.Embeddings.Replies(c.ws)
	if x == nil || x.Len() == 0 {
		return ans, nil
	}
	tail, err := a.cfg.Embeddings.VisitorTail(c.ws, conv.ID, suggestFrom)
	if err != nil {
		return nil, err
	}
	if tail == "" {
		return ans, nil
	}
	vecs, err := a.embedNow(c.r.Context(), tail)
	if err != nil {
		return nil, err
	}
	byID := map[string]store.Reply{}
	rs, err := a.cfg.Store.Replies(c.ws)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		byID[r.ID] = r
	}
	for _, h := range x.Search(vecs[0], k) {
		if r, ok := byID[h.ID]; ok && h.Score >= minScore {
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
func (a *API) apiReplies(c *apiCall) (any, error) {
	rs, err := a.cfg.Store.Replies(c.ws)
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
	if !ident.PrintableBody(s) {
		return badRequest("%s: control and bidirectional override characters are not allowed", field)
	}
	return nil
}

// apiCreateReply: POST /v1/workspaces/{ws}/replies {"title":..,"body":..}.
func (a *API) apiCreateReply(c *apiCall) (any, error) {
	var in struct {
		Title string `json:"title"`
		Body  string `json:"body"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.w, c.r.Body, MaxReplyBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, badRequest("body: a JSON object {\"title\",\"body\"} of at most %d bytes", MaxReplyBody)
	}
	if dec.More() {
		return nil, badRequest("body: one JSON object")
	}
	in.Title, in.Body = strings.TrimSpace(in.Title), strings.TrimSpace(in.Body)
	if err := validText("title", in.Title, MaxTitleRunes); err != nil {
		return nil, err
	}
	if err := validText("body", in.Body, MaxReplyRunes); err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	r := store.Reply{ID: "r_" + fmt.Sprintf("%x", random(8)), Title: in.Title, Body: in.Body, Created: now, Updated: now}
	if a.on() {
		vecs, err := a.embedNow(c.r.Context(), a.cfg.Embeddings.ReplyText(r))
		if err != nil {
			return nil, err
		}
		r.Vector = vecs[0]
	}
	if err := a.cfg.Store.PutReply(c.r.Context(), c.ws, r, MaxReplies); err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return nil, badRequest("this workspace has %d saved replies, the most allowed", MaxReplies)
		}
		return nil, err
	}
	if a.on() {
		if err := a.cfg.Embeddings.ReplyIndex(c.ws).Add(r.ID, r.Vector); err != nil {
			return nil, err
		}
	}
	a.cfg.Replies.ReplyChanged(c.ws, r)
	return replyOut{r.ID, r.Title, r.Body, r.Created}, nil
}

// apiDeleteReply: DELETE /v1/workspaces/{ws}/replies/{id}.
func (a *API) apiDeleteReply(c *apiCall) (any, error) {
	id := c.r.PathValue("id")
	if !reReplyID.MatchString(id) {
		return nil, badRequest("id: r_ and 16 lowercase hex digits")
	}
	tomb, err := a.cfg.Store.DeleteReply(c.r.Context(), c.ws, id, time.Now().UnixMilli())
	if errors.Is(err, store.ErrNotFound) {
		return nil, &httpapi.Error{Status: http.StatusNotFound, Code: codeNotFound, Message: "saved reply not found in this workspace"}
	}
	if err != nil {
		return nil, err
	}
	if a.on() {
		if x := a.cfg.Embeddings.Replies(c.ws); x != nil {
			x.Remove(id)
		}
	}
	a.cfg.Replies.ReplyChanged(c.ws, tomb)
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
func (a *API) apiErase(c *apiCall) (any, error) {
	id := c.r.PathValue("conv")
	if !ident.ValidConversation(id) {
		return nil, badRequest("conversation: c_ and 24 lowercase hex digits")
	}
	index, erased, err := a.cfg.Cluster.Erased(c.ws, id)
	if err != nil {
		return nil, err
	}
	if !erased {
		if _, err := a.convParam(c); err != nil {
			return nil, err
		}
		res, err := a.cfg.Cluster.Apply(c.r.Context(), cluster.EraseConversation{Workspace: c.ws, Conversation: id})
		if err != nil {
			return nil, fmt.Errorf("erase: %w", err)
		}
		index = res.Index
		a.cfg.Logger.Info("conversation erased", "workspace", c.ws, "conversation", id, "agent", c.agent.ID, "index", index)
	}
	conf := a.cfg.Erasures.Confirm(c.r.Context(), index)
	return struct {
		Erased string `json:"erased"`
		httpapi.Confirmation
	}{id, conf}, nil
}

// suggestFrom is how many of the visitor's last messages a suggestion is
// ranked against.
const suggestFrom = 3

// random returns n random bytes.
func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
