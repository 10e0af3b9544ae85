package node

import (
	"context"
	"crypto/hmac"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"parley/cluster"
	"parley/cluster/nodelink"
	"parley/cluster/replication"

	"github.com/coder/websocket"
)

// The node link (cluster/nodelink, on the Raft address) carries every
// request between nodes: the internal API, replication links, anti-entropy,
// relayed client connections and relayed agents' API requests. The public
// listener serves none of the internal routes, and takes no relay claim.

// linkCtxKey marks a request that came over the node link, from a member
// whose certificate the cluster's CA issued.
type linkCtxKey struct{}

// viaLink says whether a request came over the node link.
func viaLink(ctx context.Context) bool {
	v, _ := ctx.Value(linkCtxKey{}).(bool)
	return v
}

// linkConnContext is the link server's ConnContext.
func linkConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, linkCtxKey{}, true)
}

// linkRoutes is what other nodes may ask of this one.
func (n *Node) linkRoutes() http.Handler {
	mux := http.NewServeMux()
	n.ctl.internalRoutes(mux)
	mux.HandleFunc("GET "+pathRepl, n.serveRepl)
	n.repl.Routes(mux, n.ctl.signed)
	n.ctl.erasureRoutes(mux, n.erasures)
	purgeRoutes(mux, n.ctl.signed, n.purge)
	n.webhookRoutes(mux)
	n.adminAPI().ExportRoutes(mux, n.ctl.signed)
	// Relayed clients and agents' API requests.
	mux.Handle("GET /v1/ws", n.gw)
	n.agentAPI().Register(mux)
	return mux
}

// linkListener is where the link's HTTP connections arrive.
func (n *Node) linkListener() net.Listener { return n.ctl.link.Listener(nodelink.ProtoHTTP) }

// memberIPs says whether an address is a registered node's, by the hosts of
// the link addresses in the control plane, read again at most every
// second: the node link lets members past its bounds on handshakes
// (nodelink.Config.Member). Until the control plane is open it knows none.
type memberIPs struct {
	c  atomic.Pointer[cluster.Cluster]
	mu sync.Mutex
	at time.Time
	ip map[string]bool
}

func (m *memberIPs) has(ip string) bool {
	c := m.c.Load()
	if c == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if time.Since(m.at) > time.Second {
		set := map[string]bool{}
		for _, n := range c.Nodes() {
			if host, _, err := net.SplitHostPort(n.RaftAddr); err == nil {
				if a := net.ParseIP(host); a != nil {
					set[a.String()] = true
				}
			}
		}
		m.ip, m.at = set, time.Now()
	}
	return m.ip[ip]
}

// pathRepl is the internal WebSocket a node opens to another to send it
// events: one per ordered pair of nodes (package replication).
const pathRepl = "/internal/v1/repl"

// hdrNodeID names the node opening a replication link; the signature
// covers it.
const hdrNodeID = "X-Parley-Node-ID"

// Dial opens a replication link to the node whose link listens at addr: a
// WebSocket on its internal API, signed like every internal request
// (replication.Peers).
func (p *peerClient) Dial(ctx context.Context, addr string) (replication.Conn, error) {
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	h := http.Header{}
	h.Set(hdrNodeTime, ts)
	h.Set(hdrNodeSig, sign(p.key, http.MethodGet, pathRepl, ts, []byte(p.self)))
	h.Set(hdrNodeID, p.self)
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, "wss://"+addr+pathRepl, &websocket.DialOptions{HTTPHeader: h, HTTPClient: p.client})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(8 << 20)
	return wsLink{c}, nil
}

// serveRepl accepts a peer's replication link.
func (n *Node) serveRepl(w http.ResponseWriter, req *http.Request) {
	from := req.Header.Get(hdrNodeID)
	ts := req.Header.Get(hdrNodeTime)
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || from == "" || time.Since(time.UnixMilli(ms)).Abs() > maxSkew ||
		!hmac.Equal([]byte(sign(n.ctl.peers.key, http.MethodGet, req.URL.Path, ts, []byte(from))), []byte(req.Header.Get(hdrNodeSig))) {
		n.log.Warn("replication link refused", "remote", req.RemoteAddr, "from", from)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	c, err := websocket.Accept(w, req, nil)
	if err != nil {
		return
	}
	c.SetReadLimit(8 << 20)
	n.repl.Serve(req.Context(), from, wsLink{c})
}

// wsLink adapts a WebSocket to replication.Conn.
type wsLink struct{ c *websocket.Conn }

func (l wsLink) Read(ctx context.Context) ([]byte, error) {
	_, b, err := l.c.Read(ctx)
	return b, err
}

func (l wsLink) Write(ctx context.Context, b []byte) error {
	return l.c.Write(ctx, websocket.MessageText, b)
}

func (l wsLink) Close() error { return l.c.CloseNow() }
