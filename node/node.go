package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"parley/certs"
	"parley/cluster"
	"parley/cluster/replication"
	"parley/cluster/residency"
	"parley/crdt"
	"parley/edge"
	"parley/email"
	"parley/gateway"
	"parley/redact"
	"parley/store"
	"parley/tracing"
	"parley/webhook"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"
)

// Node is one running Parley node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	out     io.Writer
	metrics *metrics
	store   *store.Store
	gw      *gateway.Server
	relay   *relayer
	emb     *embedding // embed.go
	ln      net.Listener
	ready   atomic.Bool
	ctl     *control
	gossip  *gossip
	repl    *replication.Replicator
	// erasures applies the control plane's erasures here.
	erasures *residency.Erasures
	// retention erases conversations past their workspace's retention.
	retention *residency.Retention
	auth      *clusterAuth
	purge     *residency.Purger
	usage     *cluster.UsageReporter
	// hooks delivers the webhook events of the conversations this node
	// sends (webhook.go).
	hooks *webhook.Dispatcher
	// mailer mails the visitors of the conversations this node sends
	// (email.go).
	mailer *email.Sender

	// HTTP/3 and WebTransport; pc is nil when disabled.
	pc     net.PacketConn
	h3Port int
	// certs is the certificate of HTTP/3 and, when https, of the TCP
	// listener; nil with HTTP/3 off and no certificate configured.
	certs *certs.Source
	https bool
	// trusted are the proxies whose word on a client's address is taken.
	trusted *edge.Trusted
	// opened closes what New opened, in reverse order (startup.go).
	opened closers
	// tracer records spans (tracing.go); nil when tracing is off.
	tracer *tracing.Tracer
}

// New opens the node's store and prepares its parts; Run serves. Logs go to
// logw through the redacting handler; the start-up banner goes to out.
func New(cfg Config, logw, out io.Writer) (_ *Node, err error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, out: out, metrics: newMetrics()}
	n.log = slog.New(redact.NewHandler(slog.NewJSONHandler(logw, &slog.HandlerOptions{Level: level(cfg.LogLevel)}), redact.Config{})).
		With("node", cfg.NodeID)
	key, err := nodeClusterKey(cfg)
	if err != nil {
		return nil, err
	}
	var previousKEKs [][]byte
	if cfg.PreviousClusterKey != "" {
		prev, err := loadClusterKey(cfg.PreviousClusterKey, false)
		if err != nil {
			return nil, fmt.Errorf("previous cluster key: %w", err)
		}
		previousKEKs = append(previousKEKs, prev.storeKEK())
	}
	st, err := store.Open(store.Config{
		Path:         filepath.Join(cfg.DataDir, "parley.db"),
		OnCommit:     n.publish,
		Observer:     n.metrics,
		Origin:       cfg.NodeID,
		ScrubAfter:   cfg.ScrubAfter,
		KEK:          key.storeKEK(),
		PreviousKEKs: previousKEKs,
	})
	if err != nil {
		return nil, err
	}
	// From here each step that opens something adds what closes it; an
	// error closes what the steps before opened.
	defer func() {
		if err != nil {
			n.opened.close()
		}
	}()
	n.opened.add("store", st.Close)
	n.store = st
	if err := n.openTracing(); err != nil {
		return nil, err
	}
	n.trusted, _ = edge.ParseTrusted(cfg.TrustedProxies) // validated above
	if err := n.openCerts(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	n.opened.add("http listener", ln.Close)
	n.ln = ln
	n.ctl, err = openControl(cfg, n.log, key, advertiseAddr(ln.Addr().String(), cfg.Advertise), newRaftApplyMetrics(n.metrics.reg))
	if err != nil {
		return nil, err
	}
	n.opened.add("control plane", n.ctl.close)
	n.metrics.reg.MustRegister(newRaftCollector(n.ctl))
	n.gossip, err = openGossip(cfg, n.log, n.ctl, n.metrics.reg)
	if err != nil {
		return nil, err
	}
	n.opened.add("gossip", n.gossip.close)
	n.usage = cluster.NewUsageReporter(cluster.UsageConfig{Node: cfg.NodeID, Apply: n.ctl.c.Apply, Interval: cfg.UsageInterval, Logger: n.log})
	n.emb = newEmbedding(cfg, st, n.log)
	n.opened.add("embedder", func() error { n.emb.close(); return nil })
	n.emb.register(n.metrics.reg)
	n.auth = &clusterAuth{ctl: n.ctl, st: st, catchUps: make(chan struct{}, 4)}
	n.repl = replication.New(replication.Config{
		Self:       cfg.NodeID,
		Region:     cfg.Region,
		Store:      st,
		Control:    n.ctl,
		Members:    n.gossip.m,
		Peers:      n.ctl.peers,
		Meter:      n.usage,
		Erase:      n.emb.erase,
		CaughtUp:   n.ctl.caughtUpSinceStart,
		CatchUp:    n.auth.catchUp,
		OnReplies:  n.emb.repliesFromPeer,
		Logger:     n.log,
		Registerer: n.metrics.reg,
		LinkDelay:  cfg.FaultReplDelay,
		Tracer:     n.tracer,
	})
	if n.hooks, err = n.openWebhooks(); err != nil {
		return nil, err
	}
	n.opened.add("webhooks", n.hooks.Close)
	n.erasures = residency.NewErasures(residency.ErasureConfig{Log: n.ctl.c, Store: st, Erase: n.emb.erase, Record: n.ctl.recordErasure, Forget: n.repl.Forget, Logger: n.log})
	n.retention = residency.NewRetention(residency.RetentionConfig{Workspaces: n.ctl.c.Workspaces, Store: st, Record: n.ctl.recordErasure, Day: cfg.RetentionDay, Logger: n.log})
	n.relay = &relayer{region: cfg.Region, self: cfg.NodeID, key: n.ctl.key.nodeKey(), ctl: n.ctl, mem: n.gossip.m, client: n.ctl.peers.client}
	conns := gateway.NewIPConns(cfg.MaxConnsPerIP)
	n.gw = gateway.New(gateway.Config{
		Store:               replication.AckedStore{Store: st, Replicator: n.repl},
		Auth:                n.auth,
		Limits:              n.auth,
		Meter:               n.usage,
		OnSignal:            n.repl.Signal,
		Relay:               n.relay,
		Fetch:               n.repl,
		Privacy:             visitorPrivacy{ctl: n.ctl, erasures: n.erasures},
		Assignee:            n.ctl.assignee,
		InternalMessages:    n.ctl.internalMessages,
		Forwarded:           forwarded(n.ctl.key.nodeKey()),
		Clock:               crdt.NewClock(cfg.NodeID, nil),
		Node:                cfg.NodeID,
		Logger:              n.log,
		Metrics:             n.metrics,
		MaxConnsPerIP:       cfg.MaxConnsPerIP,
		Conns:               conns,
		FrameRate:           cfg.FrameRate,
		FrameBurst:          int(cfg.FrameRate * 3),
		WorkspaceRate:       cfg.WorkspaceRate,
		WorkspaceBurst:      int(cfg.WorkspaceRate * 2),
		WorkspaceShare:      n.workspaceShare,
		AddressShare:        cfg.AddressShare,
		ShedPending:         cfg.ShedPending,
		SendQueueBytes:      cfg.SendQueueBytes,
		ShedHold:            cfg.ShedHold,
		ShedBehind:          cfg.ShedBehind,
		IPMessageRate:       cfg.IPMessageRate,
		IPMessageBurst:      cfg.IPMessageBurst,
		IPStartRate:         cfg.IPStartRate,
		IPStartBurst:        cfg.IPStartBurst,
		IPPlanConversations: cfg.IPPlanConversations,
		IPPlanMessages:      cfg.IPPlanMessages,
		IPPlanWindow:        cfg.IPPlanWindow,
		IPPlanFraction:      cfg.IPPlanFraction,
		Plan:                n.plan,
		Tracer:              n.tracer,
	})
	n.mailer = n.newMailer()
	// A trusted proxy's connections carry many clients: the gateway counts
	// their sessions by the client address the proxy gives.
	n.ln = newGuardedListener(ln, n.log, conns, n.trustedProxy, cfg.FDReserve)
	n.purge = residency.NewPurger(residency.PurgeConfig{
		Control: purgeControl{n.ctl},
		Store:   st,
		Data:    n.repl,
		Erase:   n.emb.erase,
		DropWorkspace: func(ws string) {
			n.emb.dropWorkspace(ws)
			n.auth.local.Delete(ws)
		},
		Expel:  n.gw.ExpelWorkspace,
		Logger: n.log,
	})
	if cfg.H3Addr != h3Off {
		if err := n.listenH3(); err != nil {
			return nil, err
		}
		n.opened.add("http/3 socket", n.pc.Close)
	}
	return n, nil
}

// listenH3 opens the UDP socket of HTTP/3 and loads or makes its certificate.
func (n *Node) listenH3() error {
	addr := n.cfg.H3Addr
	if addr == "" {
		// The HTTP address on UDP; if another socket has that UDP port
		// already, any free one (clients learn it from /v1/transport).
		host, _, _ := net.SplitHostPort(n.cfg.HTTPAddr)
		_, port, _ := net.SplitHostPort(n.ln.Addr().String())
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, port))
		if err != nil {
			n.log.Warn("http/3: the HTTP port is taken on UDP, using another", "err", err)
			pc, err = net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		}
		if err != nil {
			return fmt.Errorf("listen udp: %w (-h3 off disables HTTP/3)", err)
		}
		n.pc = pc
	} else {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("listen udp %s: %w (-h3 off disables HTTP/3)", addr, err)
		}
		n.pc = pc
	}
	n.h3Port = n.pc.LocalAddr().(*net.UDPAddr).Port
	return nil
}

// openCerts loads or makes the certificate source of the TLS listeners:
// the operator's files or ACME serve both the TCP listener (HTTPS) and
// HTTP/3; without them HTTP/3 gets a self-signed certificate and the TCP
// listener stays plain HTTP.
func (n *Node) openCerts() error {
	var err error
	switch {
	case n.cfg.TLSCert != "":
		n.certs, err = certs.Files(n.cfg.TLSCert, n.cfg.TLSKey, n.log)
		n.https = true
	case len(n.cfg.ACMEDomains) > 0:
		n.certs, err = certs.ACME(certs.ACMEConfig{
			DirectoryURL: n.cfg.ACMEDir,
			Domains:      n.cfg.ACMEDomains,
			Email:        n.cfg.ACMEEmail,
			CAFile:       n.cfg.ACMECA,
			CacheDir:     filepath.Join(n.cfg.DataDir, "acme"),
		}, n.log)
		n.https = true
	case n.cfg.H3Addr != h3Off:
		n.certs, err = certs.SelfSigned(certHosts(n.cfg.HTTPAddr, n.cfg.H3Addr), n.log)
	}
	if err != nil {
		return err
	}
	if n.certs != nil {
		n.certs.ReloadEvery = n.cfg.TLSReload
	}
	return nil
}

// certHosts names the hosts of a self-signed certificate: loopback, and the
// hosts the node listens on when they are not wildcards.
func certHosts(addrs ...string) []string {
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	for _, a := range addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil || h == "" || slices.Contains(hosts, h) {
			continue
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
			continue
		}
		hosts = append(hosts, h)
	}
	return hosts
}

// publish hands committed events to the gateway; the store calls it.
func (n *Node) publish(evs []store.Event) {
	trace, end := n.publishSpan(evs)
	if gw := n.gw; gw != nil {
		gw.Publish(evs)
	}
	if r := n.repl; r != nil {
		r.Publish(trace, evs)
	}
	if end != nil {
		end()
	}
	n.emb.notify(evs)
	if h := n.hooks; h != nil {
		h.Notify(evs)
	}
	if m := n.mailer; m != nil {
		m.Notify(evs)
	}
}

// trustedProxy says whether ip is one of -trusted-proxies.
func (n *Node) trustedProxy(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && n.trusted.Contains(a.Unmap())
}

// Addr is the address the node serves HTTP on.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// H3Addr is the UDP address the node serves HTTP/3 and WebTransport on, or
// "" when they are disabled.
func (n *Node) H3Addr() string {
	if n.pc == nil {
		return ""
	}
	return n.pc.LocalAddr().String()
}

// Run serves until ctx ends, then stops in reverse order of start: stop
// accepting, tell clients to reconnect, make the last usage report, then
// close what New opened in reverse order (the HTTP/3 socket, the
// embedder, gossip, the control plane, the store).
func (n *Node) Run(ctx context.Context) (err error) {
	defer func() {
		if cerr := n.opened.close(); cerr != nil {
			n.log.Warn("closing the node", "err", cerr)
		}
	}()
	handler := n.routes()
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Hijacked connections (WebSocket) have their deadlines cleared.
		ReadTimeout:    n.cfg.HTTPReadTimeout,
		IdleTimeout:    n.cfg.HTTPIdleTimeout,
		ConnContext:    connContext,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	g, gctx := errgroup.WithContext(ctx)
	var wt *gateway.WebTransport
	if n.pc != nil {
		var reset quic.StatelessResetKey
		copy(reset[:], n.ctl.key.derive("quic-stateless-reset/v1/"+n.cfg.NodeID))
		wt = n.gw.NewWebTransport(gateway.WebTransportConfig{TLS: n.certs.TLSConfig(), Handler: handler, StatelessResetKey: &reset})
		g.Go(func() error {
			if err := wt.Serve(n.pc); err != nil {
				return fmt.Errorf("http/3: %w", err)
			}
			return nil
		})
	}
	if n.certs != nil {
		g.Go(func() error { return n.certs.Run(gctx) })
	}
	g.Go(func() error { return n.gw.Run(gctx) })
	// The control plane: join or bootstrap, then the demo workspace; the
	// node is ready once both are done.
	g.Go(func() error {
		return n.ctl.run(gctx, n.gossip.m.Addr(), func(ctx context.Context) error {
			demo, err := n.ensureDemo(ctx)
			if err != nil {
				return err
			}
			n.banner(demo)
			return nil
		})
	})
	g.Go(func() error { return n.auth.expelRevoked(gctx, n.gw.Expel) })
	g.Go(func() error { return n.gossip.run(gctx, n.repl.PeerUp, n.gw.DropNode) })
	g.Go(func() error { return n.ctl.keepFresh(gctx, n.erasures.Wait) })
	g.Go(func() error { return n.erasures.Run(gctx) })
	g.Go(func() error { return n.retention.Run(gctx) })
	g.Go(func() error { return n.repl.Run(gctx, n.gw) })
	g.Go(func() error { return n.purge.Run(gctx) })
	g.Go(func() error { return n.hooks.Run(gctx) })
	g.Go(func() error { return n.mailer.Run(gctx) })
	g.Go(func() error { return n.ctl.rebalance(gctx, n.gossip.m.Alive) })
	g.Go(func() error { return n.ctl.c.RunAuditRetention(gctx, n.cfg.AuditRetention) })
	// Usage reports end after the gateway stopped counting: the last one
	// carries the final counts.
	usageCtx, stopUsage := context.WithCancel(context.Background())
	usageDone := make(chan struct{})
	go func() {
		defer close(usageDone)
		n.usage.Run(usageCtx)
	}()
	defer func() {
		stopUsage()
		<-usageDone
	}()
	g.Go(func() error { return n.emb.run(gctx) })
	// PROXY protocol headers are read below TLS: a proxy passing TLS
	// through sends its header first.
	ln := edge.NewListener(n.ln, edge.ListenerConfig{Trusted: n.trusted, HeaderTimeout: srv.ReadHeaderTimeout, Logger: n.log})
	g.Go(func() error {
		var err error
		if n.https {
			srv.TLSConfig = n.certs.TCPTLSConfig()
			// Beneath TLS, sockets the gateway's poller may read: an
			// idle wss:// connection holds no goroutine.
			err = srv.ServeTLS(gateway.PollableTLS(ln), "", "")
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	// Other nodes' requests, over the node link only.
	linkSrv := &http.Server{
		Handler:           n.linkRoutes(),
		ConnContext:       linkConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	g.Go(func() error {
		if err := linkSrv.Serve(n.linkListener()); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("node link http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		n.ready.Store(false)
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		linkSrv.Shutdown(sctx)
		// The gateway tells WebSocket and WebTransport clients alike to
		// reconnect and closes their sessions; then HTTP/3 closes.
		n.gw.Shutdown(sctx)
		if wt != nil {
			wt.Shutdown(sctx)
		}
		return nil
	})
	n.ready.Store(true)
	n.warnPlaintext()
	n.log.Info("serving", "addr", n.Addr(), "https", n.https, "h3", n.H3Addr(), "schema", store.SchemaLatest(), "raft", n.ctl.c.Addr(), "gossip", n.gossip.m.Addr(), "region", n.cfg.Region)
	return g.Wait()
}

// warnPlaintext warns when the TCP listener serves plain HTTP beyond
// loopback with no proxy trusted to terminate TLS in front of it: tokens
// and chats would cross the network in clear.
func (n *Node) warnPlaintext() {
	if n.https || !n.trusted.Empty() {
		return
	}
	host, _, _ := net.SplitHostPort(n.Addr())
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return
	}
	n.log.Warn("serving plain HTTP beyond loopback: give -tls-cert/-tls-key or -acme-domains, or put a TLS proxy in front and list it in -trusted-proxies", "addr", n.Addr())
}

// baseURL is the node's own URL for the banner.
func (n *Node) baseURL() string {
	if !n.https {
		return "http://" + n.Addr()
	}
	if len(n.cfg.ACMEDomains) > 0 {
		_, port, _ := net.SplitHostPort(n.Addr())
		if port == "443" {
			return "https://" + n.cfg.ACMEDomains[0]
		}
		return "https://" + net.JoinHostPort(n.cfg.ACMEDomains[0], port)
	}
	return "https://" + n.Addr()
}

func (n *Node) banner(demo demoInfo) {
	base := n.baseURL()
	fmt.Fprintf(n.out, "Parley node %s serving on %s\n", n.cfg.NodeID, base)
	if demo.workspace != "" {
		fmt.Fprintf(n.out, "  demo page:     %s/demo\n", base)
		if demo.token != "" {
			fmt.Fprintf(n.out, "  agent console: %s/agent#token=%s&workspace=%s\n", base, demo.token, demo.workspace)
		} else {
			fmt.Fprintf(n.out, "  agent console: %s/agent (use the operator token given with -agent-token)\n", base)
		}
	}
	fmt.Fprintf(n.out, "  metrics:       %s/metrics\n", base)
	if n.pc != nil {
		host, _, _ := net.SplitHostPort(n.Addr())
		cert := "self-signed, hash at " + base + "/v1/transport"
		switch {
		case n.certs.ACME():
			cert = "acme"
		case !n.certs.SelfSigned():
			cert = n.cfg.TLSCert
		}
		fmt.Fprintf(n.out, "  webtransport:  https://%s%s (udp; %s)\n",
			net.JoinHostPort(host, strconv.Itoa(n.h3Port)), gateway.WebTransportPath, cert)
	}
}

func level(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
