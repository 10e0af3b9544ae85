package node

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Config is a node's configuration. Every field has a default that runs a
// single node on loopback: the zero value of a field means its default.
type Config struct {
	// HTTPAddr is where HTTP, WebSocket and the pages are served.
	// Default 127.0.0.1:8080; env PARLEY_HTTP.
	HTTPAddr string
	// DataDir holds the bbolt file. Default ./data; env PARLEY_DATA.
	DataDir string
	// NodeID names the node in clocks and logs. Default "n1"; env PARLEY_NODE.
	NodeID string
	// AgentToken, when set, is the demo workspace's operator token (only its
	// SHA-256 is stored). When empty, a token is generated on first start and
	// kept in DataDir/demo-agent-token for the demo. Env PARLEY_AGENT_TOKEN.
	AgentToken string
	// NoDemo skips creating the demo workspace.
	NoDemo bool
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string
	// MaxConnsPerIP limits concurrent connections per client address.
	// Default 1000.
	MaxConnsPerIP int
	// FrameRate limits frames per second per connection. Default 20.
	FrameRate float64
	// WorkspaceRate limits messages per second per workspace on this node.
	// Default 2000.
	WorkspaceRate float64
	// H3Addr is the UDP address of HTTP/3 and WebTransport. Empty: the
	// HTTP address's host and port, on UDP (if that port is taken on UDP, a
	// free one). "off" disables HTTP/3. Env PARLEY_H3.
	H3Addr string
	// TLSCert and TLSKey are PEM files of the HTTP/3 certificate and key,
	// reloaded when they change. Empty: a self-signed ECDSA certificate for
	// 127.0.0.1, ::1 and localhost (and the HTTP host), valid 10 days,
	// made at every start and rotated every 5 days, whose SHA-256 the node
	// publishes at /v1/transport. Env PARLEY_TLS_CERT, PARLEY_TLS_KEY.
	TLSCert string
	TLSKey  string
	// Embedder is "auto" or "off". Auto (also the zero value) loads
	// all-MiniLM-L6-v2 and ONNX Runtime from ModelDir and ORTLib; when they
	// are missing, the node logs a warning and serves chat with similar
	// conversations and suggestions off. Env PARLEY_EMBEDDER.
	Embedder string
	// ModelDir and ORTLib locate the model and the ONNX Runtime library.
	// Empty: $PARLEY_MODEL_DIR and $PARLEY_ORT_LIB, else the cache that
	// `make embedder-assets` fills (~/.cache/parley/embedder).
	ModelDir string
	ORTLib   string
	// EmbedThreads is ONNX Runtime's thread count for one model run.
	// Default 1, which leaves the other cores to chat.
	EmbedThreads int
	// EmbedDebounce is how long a conversation must be quiet before it is
	// embedded again. Default 2s.
	EmbedDebounce time.Duration
}

// h3Off is the H3Addr that disables HTTP/3.
const h3Off = "off"

// ParseFlags reads a Config from command-line arguments and environment.
func ParseFlags(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	fs.StringVar(&c.HTTPAddr, "http", env("PARLEY_HTTP", "127.0.0.1:8080"), "HTTP listen address")
	fs.StringVar(&c.DataDir, "data", env("PARLEY_DATA", "data"), "data directory")
	fs.StringVar(&c.NodeID, "node", env("PARLEY_NODE", "n1"), "node ID")
	fs.StringVar(&c.AgentToken, "agent-token", env("PARLEY_AGENT_TOKEN", ""), "operator token of the demo workspace")
	fs.BoolVar(&c.NoDemo, "no-demo", false, "do not create the demo workspace")
	fs.StringVar(&c.LogLevel, "log-level", env("PARLEY_LOG_LEVEL", "info"), "log level")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 1000, "concurrent connections per client address")
	fs.Float64Var(&c.FrameRate, "frame-rate", 20, "frames per second per connection")
	fs.Float64Var(&c.WorkspaceRate, "workspace-rate", 2000, "messages per second per workspace")
	fs.StringVar(&c.H3Addr, "h3", env("PARLEY_H3", ""), `HTTP/3 and WebTransport UDP address (default: the HTTP address on UDP; "off" disables)`)
	fs.StringVar(&c.TLSCert, "tls-cert", env("PARLEY_TLS_CERT", ""), "HTTP/3 certificate chain, PEM (default: self-signed, short-lived)")
	fs.StringVar(&c.TLSKey, "tls-key", env("PARLEY_TLS_KEY", ""), "HTTP/3 private key, PEM")
	embedFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return c, c.validate()
}

func (c *Config) defaults() {
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if c.NodeID == "" {
		c.NodeID = "n1"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	c.embedDefaults()
}

func (c *Config) validate() error {
	var errs []error
	if c.AgentToken != "" && len(c.AgentToken) < 16 {
		errs = append(errs, errors.New("agent-token: at least 16 characters"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert and tls-key: give both or neither"))
	}
	if c.H3Addr != "" && c.H3Addr != h3Off {
		if _, _, err := net.SplitHostPort(c.H3Addr); err != nil {
			errs = append(errs, fmt.Errorf("h3: %q is not host:port or %q", c.H3Addr, h3Off))
		}
	}
	errs = append(errs, c.validateEmbed()...)
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level: %q is not debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

func env(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}
