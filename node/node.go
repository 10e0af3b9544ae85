package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"parley/crdt"
	"parley/gateway"
	"parley/redact"
	"parley/store"

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
	ln      net.Listener
	ready   atomic.Bool
}

// New opens the node's store and prepares its parts; Run serves. Logs go to
// logw through the redacting handler; the start-up banner goes to out.
func New(cfg Config, logw, out io.Writer) (*Node, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, out: out, metrics: newMetrics()}
	n.log = slog.New(redact.NewHandler(slog.NewJSONHandler(logw, &slog.HandlerOptions{Level: level(cfg.LogLevel)}), redact.Config{})).
		With("node", cfg.NodeID)
	st, err := store.Open(store.Config{
		Path:     filepath.Join(cfg.DataDir, "parley.db"),
		OnCommit: n.publish,
		Observer: n.metrics,
	})
	if err != nil {
		return nil, err
	}
	n.store = st
	n.gw = gateway.New(gateway.Config{
		Store:          st,
		Auth:           storeAuth{st},
		Clock:          crdt.NewClock(cfg.NodeID, nil),
		Node:           cfg.NodeID,
		Logger:         n.log,
		Metrics:        n.metrics,
		MaxConnsPerIP:  cfg.MaxConnsPerIP,
		FrameRate:      cfg.FrameRate,
		FrameBurst:     int(cfg.FrameRate * 3),
		WorkspaceRate:  cfg.WorkspaceRate,
		WorkspaceBurst: int(cfg.WorkspaceRate * 2),
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	n.ln = ln
	return n, nil
}

// publish hands committed events to the gateway; the store calls it.
func (n *Node) publish(evs []store.Event) {
	if gw := n.gw; gw != nil {
		gw.Publish(evs)
	}
}

// Addr is the address the node serves HTTP on.
func (n *Node) Addr() string { return n.ln.Addr().String() }

// Run serves until ctx ends, then stops in reverse order of start: stop
// accepting, tell clients to reconnect, drain the store, close it.
func (n *Node) Run(ctx context.Context) error {
	defer n.store.Close()
	demo, err := n.ensureDemo(ctx)
	if err != nil {
		n.ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           n.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.gw.Run(gctx) })
	g.Go(func() error {
		if err := srv.Serve(n.ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		n.ready.Store(false)
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		n.gw.Shutdown(sctx)
		return nil
	})
	n.ready.Store(true)
	n.log.Info("serving", "addr", n.Addr(), "schema", store.SchemaLatest())
	n.banner(demo)
	return g.Wait()
}

func (n *Node) banner(demo demoInfo) {
	base := "http://" + n.Addr()
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
}

func level(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
