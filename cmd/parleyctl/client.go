package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"parley/cluster/clusterkey"
)

// defaultKeyFile is where `make run` keeps the single node's cluster key.
const defaultKeyFile = "data/cluster.key"

// apiError is an error reply of the admin API (or of the conversations
// API, whose body is {"code","message"}).
type apiError struct {
	Status  int
	Code    string
	Message string
	// Hint, when set, says what to do instead of hints[Code].
	Hint string
}

// hints say what an operator should do about an API error code; codes
// whose message says it all have none.
var hints = map[string]string{
	"unauthorized": "the token was refused: give a valid -token (or PARLEY_TOKEN), or -cluster-key for the cluster admin token",
	"revoked":      "this credential has been revoked",
	"forbidden":    "cluster-wide changes need the cluster admin token (-cluster-key); sessions and keys act on their own workspace only, and keys cannot mint keys; a message may be changed only by whoever posted it",
	"conflict":     "someone changed it first: read it again and retry",
	"not_leader":   "the node could not reach a leader: retry shortly, or ask the leader",
	"uncertain":    "the outcome is unknown: the change may or may not have been applied; check before retrying",
	"unavailable":  "the node cannot answer now (out of touch with the leader, or catching up): retry, or ask another node",
	"closed":       "the node is shutting down: ask another node",
	"rate_limited": "too many attempts: wait a few seconds and retry",
	"internal":     "the node failed: see its log",
	"auth_failed":  "the token is not a live session or API key of this workspace",
	"overloaded":   "the node sheds load for a moment: retry shortly with the same message id",
	"bad_request":  "the request was malformed; the message says which field",
}

func (e *apiError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "refused"
	}
	s := fmt.Sprintf("%s (%s, HTTP %d)", msg, e.Code, e.Status)
	h := e.Hint
	if h == "" {
		h = hints[e.Code]
	}
	if h != "" {
		s += "\n  " + h
	}
	return s
}

// baseURL is the node's URL without a trailing slash; a bare host:port is
// taken as http.
func (g *globals) baseURL() (string, error) {
	u := strings.TrimRight(g.node, "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || (p.Scheme != "http" && p.Scheme != "https") {
		return "", usagef("-node %q: want a URL like http://127.0.0.1:8080", g.node)
	}
	return u, nil
}

// credential is the bearer token: -token, else the admin token derived from
// -cluster-key, else from ./data/cluster.key when it exists. keyFile is the
// file a derived token came from ("" for -token).
func (g *globals) credential() (tok, keyFile string, err error) {
	if g.token != "" {
		return g.token, "", nil
	}
	if g.clusterKey != "" {
		tok, err := clusterkey.AdminToken(g.clusterKey)
		return tok, g.clusterKey, err
	}
	if _, err := os.Stat(defaultKeyFile); err == nil {
		tok, err := clusterkey.AdminToken(defaultKeyFile)
		return tok, defaultKeyFile, err
	}
	return "", "", usagef("no credential: give -token (env PARLEY_TOKEN), or -cluster-key FILE for the cluster admin token (%s is not here)", defaultKeyFile)
}

// call sends one request to the admin API and decodes a 200 reply into out
// (when not nil); raw is the reply body, for -json. auth: send the
// credential.
func (e *env) call(method, path string, query url.Values, body, out any, auth bool) (raw []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), e.g.timeout)
	defer cancel()
	resp, err := e.send(ctx, method, path, query, body, auth)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the reply from %s: %v", resp.Request.URL.Host, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("%s %s: undecodable reply: %v", method, path, err)
		}
	}
	return raw, nil
}

// send sends one request to the admin API and returns its 200 reply, whose
// body the caller reads and closes within ctx; any other status is
// returned as an error (an *apiError when the body is the API's).
func (e *env) send(ctx context.Context, method, path string, query url.Values, body any, auth bool) (*http.Response, error) {
	base, err := e.g.baseURL()
	if err != nil {
		return nil, err
	}
	tok, keyFile := "", ""
	if auth {
		if tok, keyFile, err = e.g.credential(); err != nil {
			return nil, err
		}
	}
	if e.g.minIndex > 0 {
		if query == nil {
			query = url.Values{}
		}
		query.Set("min_index", strconv.FormatUint(e.g.minIndex, 10))
	}
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, usagef("%v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && method != http.MethodGet {
			return nil, fmt.Errorf("no answer from %s within %s: the change may or may not have been applied; check before retrying", base, e.g.timeout)
		}
		return nil, fmt.Errorf("cannot reach the node at %s: %v", base, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the reply from %s: %v", base, err)
	}
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &eb) == nil && eb.Error.Code == "" {
		// The conversations API's (and the agents' API's) error body.
		json.Unmarshal(raw, &eb.Error)
	}
	if eb.Error.Code == "" {
		// Not the admin API's error body: a wrong -node, or a route
		// this node does not have.
		return nil, fmt.Errorf("%s %s: HTTP %d: %s (is -node a Parley node of this version?)", method, path, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	ae := &apiError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	if resp.StatusCode == http.StatusUnauthorized && keyFile != "" {
		ae.Hint = fmt.Sprintf("the admin token was derived from %s, which is not the key of the cluster at %s "+
			"(make run's node keeps its key in data/cluster.key, make cluster's nodes share cluster-data/cluster.key): "+
			"give the cluster's key file with -cluster-key (or PARLEY_CLUSTER_KEY_FILE)", keyFile, base)
	}
	return nil, ae
}

// wsPath is /v1/admin/workspaces/{ws} and more path segments, escaped.
func wsPath(ws string, more ...string) string {
	p := "/v1/admin/workspaces/" + url.PathEscape(ws)
	for _, m := range more {
		p += "/" + url.PathEscape(m)
	}
	return p
}
