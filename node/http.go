package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"parley/cluster"
	"parley/cluster/residency"
	"parley/gateway"
	"parley/node/adminapi"
	"parley/node/agentapi"
	"parley/node/httpapi"
	"parley/web"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// contentSecurityPolicy allows the node's own scripts, styles and socket
// only: no inline code, no framing, no third-party origin.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (n *Node) routes() http.Handler {
	return n.trusted.Handler(n.securityHeaders(n.publicMux()))
}

// publicMux is the route table of the node's public listener (HTTP and
// HTTP/3); docs/openapi.yaml describes every route of it, which
// TestOpenAPIDescribesEveryRoute checks. The node link's routes are on a
// mux of their own (link.go).
func (n *Node) publicMux() *httpapi.Routes {
	mux := httpapi.NewRoutes()
	assets := web.FS()
	mux.Handle("GET /v1/ws", n.gw)
	mux.HandleFunc("GET /v1/transport", n.transportInfo)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !n.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if !n.ctl.ready.Load() {
			http.Error(w, "not ready: joining the control plane", http.StatusServiceUnavailable)
			return
		}
		if !n.ctl.fresh() {
			http.Error(w, "not ready: not caught up with the control plane", http.StatusServiceUnavailable)
			return
		}
		if err := n.store.Err(); err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	admin := n.adminAPI()
	admin.Register(mux)
	admin.RegisterDebug(mux) // /debug/pprof/, the cluster admin token only
	n.agentAPI().Register(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/demo", http.StatusFound)
	})
	mux.Handle("GET /demo", page(assets, "demo.html"))
	mux.Handle("GET /agent", page(assets, "agent.html"))
	mux.Handle("GET /widget.js", embeddable(assets, "widget.js"))
	static, _ := fs.Sub(assets, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", embeddableDir(static)))
	return mux
}

// adminAPI is the admin REST API of this node (package adminapi).
func (n *Node) adminAPI() *adminapi.API {
	cfg := adminapi.Config{
		NodeID:     n.cfg.NodeID,
		AdminToken: n.ctl.key.adminToken(),
		Cluster:    n.ctl.c,
		Confirmer:  adminControl{n.ctl},
		Store:      n.store,
		Erasures:   erasureConfirmer{n.ctl, n.erasures},
		Gossip:     n.gossip.m,
		Peers:      n.ctl.peers,
		Backup:     n.backup,
		Logger:     n.ctl.log,
		Now:        n.cfg.signInClock,

		WebhookAllowPrivate: n.cfg.WebhookAllowPrivate,
		EmailAllowPlaintext: n.cfg.EmailAllowPlaintext,
	}
	if n.purge != nil {
		cfg.Purger = adminPurger{n.ctl, n.purge}
	}
	return adminapi.New(cfg)
}

// adminControl is the control plane's member as the admin API sees it.
type adminControl struct{ ctl *control }

func (a adminControl) Revoke(ctx context.Context, cmd cluster.Command) (cluster.Result, Confirmation, error) {
	return a.ctl.revoke(ctx, cmd)
}

func (a adminControl) ConfirmEverywhere(ctx context.Context, index uint64) Confirmation {
	return a.ctl.confirmEverywhere(ctx, index)
}

func (a adminControl) Fresh() error {
	if !a.ctl.fresh() {
		return errStale
	}
	return nil
}

// adminPurger confirms purges for the admin API.
type adminPurger struct {
	ctl *control
	p   *residency.Purger
}

func (a adminPurger) ConfirmPurge(ctx context.Context, ws string, index uint64) PurgeConfirmation {
	return a.ctl.confirmPurge(ctx, a.p, ws, index)
}

// agentAPI is the agents' HTTP API of this node (package agentapi).
func (n *Node) agentAPI() *agentapi.API {
	return agentapi.New(agentapi.Config{
		Auth:       n.auth,
		Relay:      agentRelay{n.relay},
		Store:      n.store,
		Cluster:    n.ctl.c,
		Erasures:   erasureConfirmer{n.ctl, n.erasures},
		Replies:    n.repl,
		Embeddings: agentEmbeddings{n.emb},
		Keys:       n.auth,
		Poster:     n.gw,
		Fetcher:    n.gw,
		Rate:       n.cfg.APIRate,
		Logger:     n.log,
	})
}

// agentRelay relays the agents' API of workspaces pinned elsewhere.
type agentRelay struct{ r *relayer }

func (a agentRelay) ProxyAPI(w http.ResponseWriter, r *http.Request, ws string) bool {
	return a.r.proxyAPI(w, r, ws)
}

// erasureConfirmer confirms erasures for the agents' and the admin API.
type erasureConfirmer struct {
	ctl *control
	e   *residency.Erasures
}

func (a erasureConfirmer) Confirm(ctx context.Context, index uint64) Confirmation {
	return a.ctl.confirmErasures(ctx, a.e, index)
}

// hsts is the Strict-Transport-Security of HTTPS responses: two years, this
// host only (what else runs under the domain is not the node's to say).
const hsts = "max-age=63072000"

// securityHeaders sets the headers every response carries.
func (n *Node) securityHeaders(next http.Handler) http.Handler {
	altSvc := ""
	if n.pc != nil {
		altSvc = fmt.Sprintf(`h3=":%d"; ma=86400`, n.h3Port)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", n.csp(r))
		if altSvc != "" {
			h.Set("Alt-Svc", altSvc)
		}
		if n.https && r.TLS != nil {
			h.Set("Strict-Transport-Security", hsts)
		}
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		next.ServeHTTP(w, r)
	})
}

// csp is the Content-Security-Policy of a response. connect-src 'self'
// covers WebTransport to https://HOST:PORT from http://HOST:PORT (CSP's
// 'self' lets a secure scheme replace an insecure one); when HTTP/3 has a
// port of its own, its origin is added, and nothing else.
func (n *Node) csp(r *http.Request) string {
	if n.pc == nil || r.TLS != nil {
		return contentSecurityPolicy
	}
	_, port, _ := net.SplitHostPort(n.Addr())
	if port == strconv.Itoa(n.h3Port) {
		return contentSecurityPolicy
	}
	return strings.Replace(contentSecurityPolicy, "connect-src 'self'",
		"connect-src 'self' https://"+n.wtHost(r), 1)
}

// wtHost is the host:port clients reach WebTransport at: the host the
// request came to (a browser's certificate check wants that name), with the
// HTTP/3 port. "localhost" becomes the address the node listens on, since a
// browser may try ::1 first where the node listens on 127.0.0.1 only; so does
// a Host that is neither an IP address nor a DNS name, since it goes into a
// header.
func (n *Node) wtHost(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	bound := n.pc.LocalAddr().(*net.UDPAddr).IP
	if net.ParseIP(host) == nil && (!reDNSName.MatchString(host) || strings.EqualFold(host, "localhost")) {
		host = bound.String()
		if bound.IsUnspecified() {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(n.h3Port))
}

var reDNSName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)

// transportInfo tells clients which transports they may use beside
// WebSocket: GET /v1/transport.
func (n *Node) transportInfo(w http.ResponseWriter, r *http.Request) {
	type wtInfo struct {
		URL        string   `json:"url"`
		CertHashes []string `json:"cert_hashes,omitempty"`
	}
	var info struct {
		WebTransport *wtInfo `json:"webtransport,omitempty"`
	}
	if n.pc != nil {
		info.WebTransport = &wtInfo{URL: "https://" + n.wtHost(r) + gateway.WebTransportPath, CertHashes: n.certs.Hashes()}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Access-Control-Allow-Origin", "*") // the widget asks from customers' sites
	json.NewEncoder(w).Encode(info)
}

// page serves one of the node's own pages; clients revalidate it on every
// load (304 when unchanged).
func page(assets fs.FS, name string) http.Handler {
	f := mustStatic(loadStatic(assets, name))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.serve(w, r, "no-cache")
	})
}

// embeddable serves a file that customers' sites load from other origins.
func embeddable(assets fs.FS, name string) http.Handler {
	f := mustStatic(loadStatic(assets, name))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		crossOrigin(w)
		f.serve(w, r, "no-cache")
	})
}

func embeddableDir(dir fs.FS) http.Handler {
	files := mustStatic(loadStaticDir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		crossOrigin(w)
		f.serve(w, r, "no-cache")
	})
}

// mustStatic panics on an embedded file that cannot be read: a broken
// build, found by every test that starts a node.
func mustStatic[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func crossOrigin(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
}
