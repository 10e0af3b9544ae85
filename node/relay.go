package node

import (
	"context"
	"crypto/hmac"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"time"

	"parley/cluster/membership"
	"parley/gateway"
	"parley/node/agentapi"
	"parley/node/httpapi"
)

// A node outside a pinned workspace's region relays that workspace's
// client connections to a node of the region (gateway/relay.go carries the
// frames). The serving node is picked by rendezvous over the region's alive
// nodes with the client's identity as key, so a client that reconnects
// lands on the same node as long as it lives; the next ones are tried when
// it cannot be dialled.

// Relayed connections and requests go over the node link (mutual TLS), to
// the serving node's link listener: a public listener never takes a relay.
// The relaying node tells the serving node the client's address, so that
// per-IP limits apply to the client and not to the relay; the claim is
// also signed with the nodes' key.
const (
	hdrRelayFor  = "X-Parley-Relay-For"
	hdrRelayTime = "X-Parley-Relay-Time"
	hdrRelaySig  = "X-Parley-Relay-Sig"
	// relayTries bounds the serving nodes tried for one connection.
	relayTries = 3
)

type relayer struct {
	region string
	self   string
	key    []byte
	ctl    *control
	mem    interface{ Members() []membership.Member }
	// client carries relayed connections and API requests over the node
	// link to the serving node.
	client *http.Client
}

func (r *relayer) Relay(ctx context.Context, workspace, key, ip string) (gateway.Upstream, error) {
	region, ok := r.pinnedElsewhere(workspace)
	if !ok {
		// Unknown workspaces are refused by the authenticator, here.
		return nil, gateway.ErrServedHere
	}
	cands := r.serving(region, workspace+"\x00"+key)
	if len(cands) == 0 {
		return nil, fmt.Errorf("region %s: %w", region, gateway.ErrRelayUnavailable)
	}
	var last error
	for _, m := range cands {
		up, err := gateway.DialUpstream(ctx, r.client, "wss://"+m.RaftAddr+"/v1/ws", relayHeader(r.key, http.MethodGet, "/v1/ws", ip, time.Now()))
		if err == nil {
			return up, nil
		}
		last = err
	}
	return nil, fmt.Errorf("region %s: %w: %w", region, gateway.ErrRelayUnavailable, last)
}

// serving lists, best first, at most relayTries alive nodes of region other
// than this one, by rendezvous on key.
func (r *relayer) serving(region, key string) []membership.Member {
	var out []membership.Member
	for _, m := range membership.Replicas(r.mem.Members(), key, region, relayTries+1) {
		if m.ID != r.self && !m.Leaving && m.RaftAddr != "" && len(out) < relayTries {
			out = append(out, m)
		}
	}
	return out
}

// pinnedElsewhere returns the region a workspace is pinned to when it is
// not this node's.
func (r *relayer) pinnedElsewhere(workspace string) (string, bool) {
	w, err := r.ctl.c.Workspace(workspace)
	if err != nil || w.Region == "" || w.Region == r.region {
		return "", false
	}
	return w.Region, true
}

func relayHeader(key []byte, method, path, ip string, now time.Time) http.Header {
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	h := http.Header{}
	h.Set(hdrRelayFor, ip)
	h.Set(hdrRelayTime, ts)
	h.Set(hdrRelaySig, sign(key, method, path, ts, []byte(ip)))
	return h
}

// forwarded is the gateway's Config.Forwarded: the client address another
// node relays a connection for, when its signature holds.
func forwarded(key []byte) func(r *http.Request) (string, bool) {
	return func(r *http.Request) (string, bool) {
		ip := r.Header.Get(hdrRelayFor)
		if ip == "" || !viaLink(r.Context()) {
			return "", false
		}
		ms, err := strconv.ParseInt(r.Header.Get(hdrRelayTime), 10, 64)
		if err != nil {
			return "", false
		}
		if d := time.Since(time.UnixMilli(ms)); d > maxSkew || d < -maxSkew {
			return "", false
		}
		want := sign(key, r.Method, r.URL.Path, r.Header.Get(hdrRelayTime), []byte(ip))
		if !hmac.Equal([]byte(want), []byte(r.Header.Get(hdrRelaySig))) {
			return "", false
		}
		return ip, true
	}
}

// proxyAPI sends an agent's API request about a workspace pinned to another
// region to a node of that region, which holds its conversations, and
// copies the answer back; it reports false when the workspace is served
// here. Bodies are streamed, never stored or logged.
func (r *relayer) proxyAPI(w http.ResponseWriter, req *http.Request, workspace string) bool {
	region, ok := r.pinnedElsewhere(workspace)
	if !ok {
		return false
	}
	if _, relayed := forwarded(r.key)(req); relayed {
		// Another node believes this one serves the region: one of the two
		// has a stale view. Refuse rather than serve it from a store
		// that must not hold it, or send it on in a loop.
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: agentapi.CodeUnavailable, Message: "relayed to a node outside the workspace's region: retry"})
		return true
	}
	cands := r.serving(region, workspace)
	if len(cands) == 0 {
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: agentapi.CodeUnavailable, Message: "no node of the workspace's region is reachable: retry later"})
		return true
	}
	ip, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		ip = req.RemoteAddr
	}
	target := cands[0]
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "https", target.RaftAddr
			for k, v := range relayHeader(r.key, pr.In.Method, pr.In.URL.Path, ip, time.Now()) {
				pr.Out.Header[k] = v
			}
		},
		Transport: r.client.Transport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			httpapi.WriteJSON(w, http.StatusBadGateway, &httpapi.Error{Status: http.StatusBadGateway, Code: agentapi.CodeUnavailable, Message: "the workspace's region did not answer: retry"})
		},
	}
	p.ServeHTTP(w, req)
	return true
}
