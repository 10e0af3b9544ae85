package node

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"parley/cluster"
	"parley/cluster/nodelink"
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
	mux.HandleFunc("GET "+pathRepl, n.repl.serveRepl)
	n.repl.aeRoutes(mux, n.ctl.signed)
	n.erasures.routes(mux)
	n.purge.purgeRoutes(mux, n.ctl.signed)
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
