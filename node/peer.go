package node

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"parley/cluster"
	"parley/cluster/nodelink"
)

// Requests between nodes go under /internal/v1/ over the node link
// (cluster/nodelink: mutual TLS under the cluster's CA), never over the
// public listener, and are also signed with a key derived from the cluster
// key: the signature covers the method, the path, a timestamp and the body,
// so a request cannot be altered, and is refused after maxSkew.
const (
	hdrNodeTime = "X-Parley-Node-Time"
	hdrNodeSig  = "X-Parley-Node-Sig"
	maxSkew     = 30 * time.Second
	// maxInternalBody bounds what a node reads from another: a Raft command
	// is at most 64 KiB.
	maxInternalBody = 128 << 10
)

// errNotDelivered marks a request that never left this node (no route, the
// connection refused), so the command it carried was certainly not applied.
var errNotDelivered = errors.New("not delivered")

// peerClient sends signed requests to other nodes, addressed by their link
// addresses (Raft addresses), over the node link, and opens replication
// links to them (replication.Peers).
type peerClient struct {
	self   string // this node's ID, which a replication link names
	key    []byte
	client *http.Client
}

// faultHook lets a test stand between this node and the others
// (Config.faults).
type faultHook interface {
	// DialContext opens a connection to another node's link address.
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	// DropGossip says whether gossip to addr is lost.
	DropGossip(addr string) bool
}

// newPeerClient returns the client of internal requests of node self, over
// link; dial, when not nil, opens the TCP connections under it
// (Config.faults).
func newPeerClient(self string, key []byte, link *nodelink.Link, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *peerClient {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 2 * time.Second}).DialContext
	}
	return &peerClient{self: self, key: key, client: &http.Client{Transport: link.HTTPTransport(dial)}}
}

// url is the address of path on the node whose link listens at addr.
func peerURL(addr, path string) string { return "https://" + addr + path }

func sign(key []byte, method, path, ts string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s\n%s\n%s\n%x", method, path, ts, sum)
	return hex.EncodeToString(m.Sum(nil))
}

// Post sends body to another node's internal path and returns the reply of a
// 200; any other status is an error carrying the reply's text.
func (p *peerClient) Post(ctx context.Context, apiAddr, path string, body []byte) ([]byte, error) {
	return p.post(ctx, apiAddr, path, body, maxInternalBody)
}

// PostUpTo is Post of a request whose reply may be up to limit bytes
// (an export's conversation); a longer one is an error.
func (p *peerClient) PostUpTo(ctx context.Context, apiAddr, path string, body []byte, limit int64) ([]byte, error) {
	b, err := p.post(ctx, apiAddr, path, body, limit+1)
	if err == nil && int64(len(b)) > limit {
		return nil, fmt.Errorf("%s%s: reply longer than %d bytes", apiAddr, path, limit)
	}
	return b, err
}

// post is Post reading at most limit bytes of the reply.
func (p *peerClient) post(ctx context.Context, apiAddr, path string, body []byte, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, peerURL(apiAddr, path), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	req.Header.Set(hdrNodeTime, ts)
	req.Header.Set(hdrNodeSig, sign(p.key, http.MethodPost, path, ts, body))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := p.client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("%s: %w: %w", apiAddr, errNotDelivered, err)
		}
		return nil, fmt.Errorf("%s: %w", apiAddr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", apiAddr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("%s%s: %s: %s", apiAddr, path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// verifyPeer checks a request's signature and reads its body.
func verifyPeer(key []byte, r *http.Request, now time.Time) ([]byte, error) {
	ts := r.Header.Get(hdrNodeTime)
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, errors.New("missing or malformed " + hdrNodeTime)
	}
	if d := now.Sub(time.UnixMilli(ms)); d > maxSkew || d < -maxSkew {
		return nil, fmt.Errorf("request time off by %s", d.Round(time.Second))
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxInternalBody))
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	want := sign(key, r.Method, r.URL.Path, ts, body)
	if !hmac.Equal([]byte(want), []byte(r.Header.Get(hdrNodeSig))) {
		return nil, errors.New("bad signature")
	}
	return body, nil
}

// httpForwarder carries Raft commands from a follower to the leader's
// internal API, at the leader's Raft address: the link serves both.
type httpForwarder struct {
	peers *peerClient
}

func (f *httpForwarder) Forward(ctx context.Context, leaderAddr string, cmd []byte) ([]byte, error) {
	b, err := f.peers.Post(ctx, leaderAddr, pathForward, cmd)
	if errors.Is(err, errNotDelivered) {
		return nil, fmt.Errorf("%w: %w", err, cluster.ErrNotLeader)
	}
	return b, err
}
