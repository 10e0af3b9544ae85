package node

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"parley/edge"
	"parley/ident"

	"go.opentelemetry.io/otel/trace"
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
	// MaxConnsPerIP limits concurrent connections per client address:
	// every TCP connection to the HTTP listener (plain HTTP and WebSocket
	// alike) and every WebTransport or relayed session counts. Other nodes
	// come in over the node link, which it does not cover. Default 1000.
	MaxConnsPerIP int
	// FDReserve is how many file descriptors below RLIMIT_NOFILE the HTTP
	// listener keeps for addresses holding fewer than 4 connections (health
	// checks, agents, new visitors) and, in its last quarter, for the node
	// link (other nodes): once the node's open descriptors reach the
	// reserve, other new connections are closed at once, and in its last
	// quarter every new one on the HTTP listener. Zero: an eighth of the
	// limit, between 16 and 1024.
	FDReserve int
	// HTTPReadTimeout bounds reading one request, body included, from its
	// start; a request still being answered then has its context cancelled
	// (net/http). WebSocket connections are not bound once upgraded.
	// Default 30s.
	HTTPReadTimeout time.Duration
	// HTTPIdleTimeout is how long a keep-alive connection may wait for its
	// next request. Default 60s.
	HTTPIdleTimeout time.Duration
	// FrameRate limits frames per second per connection. Default 20.
	FrameRate float64
	// WorkspaceRate is a workspace's budget of changes (messages, edits,
	// deletions) and conversation starts per second, cluster-wide, with
	// bursts of twice as many: each node takes its part, the budget over
	// the alive nodes that serve the workspace (node/budget.go). Default
	// 2000.
	WorkspaceRate float64
	// AddressShare is the fraction of a workspace's budget the visitors of
	// one client address may take. Default 0.25.
	AddressShare float64
	// APIRate is how many requests a second one credential (an API key, an
	// operator's session) may make of the conversations API on this node,
	// with bursts of twice as many. Default 20.
	APIRate float64
	// ShedPending is how many changes of all connections may wait for the
	// store before new ones are refused overloaded; negative: never for
	// that reason. ShedBehind is how many frames not yet written make an
	// agent connection behind, and ShedHold how long its workspace's
	// changes are then refused (gateway/shed.go). Default 4096, 2048 (16
	// to 1,048,576) and 100ms.
	ShedPending int
	ShedBehind  int
	ShedHold    time.Duration
	// SendQueueBytes is how many bytes of frames may wait, not yet written,
	// for one client connection before it is closed as slow_consumer
	// (gateway.Config.SendQueueBytes). Default 8 MiB; 64 KiB to 1 GiB.
	SendQueueBytes int
	// HeapFloor is how many bytes the Go heap may grow past its live data
	// before the collector runs, whatever GOGC gives (internal/heapfloor):
	// read by cmd/parley for the process, not by New. 0: GOGC alone. The
	// flag's default is 64 MiB; 0 to 16 GiB.
	HeapFloor int64
	// IPMessageRate and IPMessageBurst limit visitors' changes per client
	// address on each node, over all its connections. Default 20/s, 100.
	IPMessageRate  float64
	IPMessageBurst int
	// IPStartRate and IPStartBurst limit the conversations visitors start
	// per client address on each node. Default 0.2/s, 20.
	IPStartRate  float64
	IPStartBurst int
	// IPPlanConversations and IPPlanMessages are the most that visitors of
	// one client address may add to a workspace's plan counts on each node
	// per IPPlanWindow, each lowered to IPPlanFraction of the plan's
	// monthly count. Default 50, 1000, 24h, 0.1.
	IPPlanConversations int64
	IPPlanMessages      int64
	IPPlanWindow        time.Duration
	IPPlanFraction      float64
	// H3Addr is the UDP address of HTTP/3 and WebTransport. Empty: the
	// HTTP address's host and port, on UDP (if that port is taken on UDP, a
	// free one). "off" disables HTTP/3. Env PARLEY_H3.
	H3Addr string
	// TLSCert and TLSKey are PEM files of the certificate chain and key
	// the node serves HTTPS with, on the TCP listener and on HTTP/3,
	// reloaded when they change. Empty (and no ACMEDomains): the TCP
	// listener serves plain HTTP, and HTTP/3 a self-signed ECDSA certificate
	// for 127.0.0.1, ::1 and localhost (and the HTTP host), valid 10 days,
	// made at every start and rotated every 5 days, whose SHA-256 the node
	// publishes at /v1/transport. Env PARLEY_TLS_CERT, PARLEY_TLS_KEY.
	TLSCert string
	TLSKey  string
	// TLSReload is how often TLSCert and TLSKey are checked for a change
	// (and ACME certificates not held yet asked for again). Zero: 1m.
	TLSReload time.Duration
	// ACMEDomains, when set, has the node obtain its certificate (TCP
	// listener and HTTP/3) from an ACME CA for these names, answering the
	// TLS-ALPN-01 challenge on the TCP listener, which the CA must reach on
	// port 443; certificates and the account key are kept in DataDir/acme
	// and renewed 30 days before expiry. Not with TLSCert. Env
	// PARLEY_ACME_DOMAINS, comma-separated.
	ACMEDomains []string
	// ACMEDir is the ACME directory URL. Zero: Let's Encrypt's production
	// directory. Env PARLEY_ACME_DIR.
	ACMEDir string
	// ACMEEmail is the ACME account's contact. Zero: none. Env
	// PARLEY_ACME_EMAIL.
	ACMEEmail string
	// ACMECA is a PEM file of roots the ACME server's HTTPS certificate may
	// chain to beside the system's (a private CA, a test server). Zero: the
	// system's roots. Env PARLEY_ACME_CA.
	ACMECA string
	// TrustedProxies are CIDR prefixes (or addresses) of proxies in front
	// of the node: on a connection from one of them the client's address
	// comes from a PROXY protocol header (v1 or v2) on the TCP listener, or
	// from X-Forwarded-For (the rightmost hop not in the list), and per-IP
	// limits count that address. From any other address both are ignored
	// (a PROXY header fails as a malformed request). Zero: none trusted.
	// Env PARLEY_TRUSTED_PROXIES, comma-separated.
	TrustedProxies []string

	// Region is where this node runs ("eu", "us", ...): workspaces pinned
	// to a region keep their data on its nodes only. Zero: none. Env
	// PARLEY_REGION.
	Region string
	// RaftAddr is the TCP address of the node link: Raft and every request
	// between nodes (internal API, replication, anti-entropy, relays), over
	// TLS 1.3 with certificates at both ends under the cluster's CA
	// (cluster/nodelink). Zero: the address used at the last start (kept in
	// DataDir/raft/addr), or on first start the HTTP host with a free port.
	// Env PARLEY_RAFT_ADDR.
	RaftAddr string
	// Zone is where in its region this node runs; advertised by gossip.
	// Zero: none. Env PARLEY_ZONE.
	Zone string
	// GossipAddr is the UDP and TCP address of gossip (membership). Zero:
	// the address used at the last start (kept in DataDir/gossip-addr), or
	// on first start the HTTP host with a free port. Env PARLEY_GOSSIP_ADDR.
	GossipAddr string
	// Advertise is the host other nodes reach this one's link at (with the
	// RaftAddr port): needed when RaftAddr binds every interface, or behind
	// NAT or a TCP proxy; also the HTTP address's host when that binds every
	// interface. Zero: the bound host. Env PARLEY_ADVERTISE.
	Advertise string
	// Join lists link addresses (their RaftAddr, host:port) of nodes of an
	// existing cluster.
	// A node with no Join and no Raft state bootstraps a new cluster of its
	// own, so a single node needs no configuration. An entry naming this
	// node's own link address, or a name resolving to it, is skipped (one
	// list for every node). Env PARLEY_JOIN, comma-separated.
	Join []string
	// Voter is how this node asks to join: "yes" as a voter, "no" as a
	// non-voter that replicates the control plane and answers reads, "auto"
	// (zero) as a voter while the cluster has fewer than 3, or fewer than 5
	// and none in this node's region.
	Voter string
	// ClusterKey is the file holding the secret every node of a cluster
	// shares (at least 32 bytes, hex or raw): it derives the node link's CA
	// (so only its holders can talk to the nodes), the gossip key, the master
	// key that seals workspace secrets and the cluster admin token. Zero:
	// DataDir/cluster.key, generated on first start (mode 0600) when the
	// node bootstraps. Env PARLEY_CLUSTER_KEY_FILE.
	ClusterKey string
	// PreviousClusterKey is the file of the cluster key before a rotation:
	// the store's conversation keys, sealed under a key derived from the
	// cluster key, are sealed again under the new one at start (store
	// PreviousKEKs). Zero: none. Env PARLEY_PREVIOUS_CLUSTER_KEY_FILE.
	PreviousClusterKey string
	// UsageInterval is how often the node reports its usage counts to the
	// control plane. Zero: 10s.
	UsageInterval time.Duration
	// ScrubAfter bounds how long the bytes of removed data (erased
	// conversations, deleted saved replies, edited or deleted messages) stay
	// in the free pages of the store's file before they are overwritten with
	// zeros (store.Config.ScrubAfter). Zero: 5s. Negative: only at start and
	// stop.
	ScrubAfter time.Duration
	// AuditRetention is how long the audit log keeps an entry; the leader
	// prunes older ones (docs/api.md, "Audit log"). Set it alike on every
	// node: the leader's applies. Zero: 400 days.
	AuditRetention time.Duration
	// RetentionDay is the length of a day of a workspace's retention
	// (cluster.Workspace.RetentionDays); shorter only to try retention out.
	// Zero: 24h.
	RetentionDay time.Duration
	// Lease is how long a node may go without hearing from the Raft leader
	// and still accept operator credentials: past it the node may have
	// missed a revocation. Zero: 3s.
	Lease time.Duration

	// Webhooks (package webhook, docs/api.md): WebhookAllowPrivate lets
	// deliveries reach private, loopback and link-local addresses (zero:
	// refused); WebhookRetryFor is how long an event is retried before it
	// is a dead letter (zero: 24h); WebhookBackoffMax bounds the wait
	// between two attempts (zero: 1h); WebhookTimeout bounds one attempt
	// (zero: 10s); WebhookConcurrency bounds the attempts in flight to one
	// endpoint from this node (zero: 4).
	WebhookAllowPrivate bool
	WebhookRetryFor     time.Duration
	WebhookBackoffMax   time.Duration
	WebhookTimeout      time.Duration
	WebhookConcurrency  int

	// E-mail (package email, docs/operations.md): EmailAllowPlaintext lets
	// a workspace's SMTP settings say tls none (zero: refused; loopback
	// tests); EmailBatch is how long after a visitor's first unseen reply
	// the replies are mailed together (zero: 2m); EmailBackoffMax bounds
	// the wait between two attempts after a temporary SMTP error (zero:
	// 30m); EmailTimeout bounds one SMTP session (zero: 30s).
	EmailAllowPlaintext bool
	EmailBatch          time.Duration
	EmailBackoffMax     time.Duration
	EmailTimeout        time.Duration

	// Raft tuning for tests of snapshots and elections; zero: the cluster
	// package's defaults.
	RaftSnapshotThreshold uint64
	RaftTrailingLogs      uint64

	// FaultReplDelay delays every message this node sends on replication
	// links by this much (a one-way delay between nodes, for benchmarks and
	// fault tests where the kernel has no netem). Zero: none.
	FaultReplDelay time.Duration

	// OTLPEndpoint is the OTLP/HTTP collector this node exports its
	// traces to (node/tracing.go, docs/operations.md); OTLPSampleRatio the
	// fraction of the traces it starts that are recorded. Zero: tracing
	// off; 1 (every trace). Env PARLEY_OTLP_ENDPOINT.
	OTLPEndpoint    string
	OTLPSampleRatio float64
	// tracerProvider, in tests, replaces the OTLP exporter (an in-memory
	// one). Zero: OTLPEndpoint's.
	tracerProvider trace.TracerProvider

	// faults, in tests, is how this node reaches the others: the dialer
	// of its internal requests and replication links, and what gossip
	// loses (a partition in one process). Zero: the network as it is.
	faults faultHook
	// passwordIterations is the PBKDF2 cost of new password hashes; tests
	// lower it to the minimum. Zero: the cluster package's default.
	passwordIterations int
	// signInClock, in tests, is the clock of the sign-in back-off: frozen,
	// a back-off does not end while a slow machine runs the test. Zero:
	// time.Now.
	signInClock func() time.Time
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

// Voter modes.
const (
	voterAuto = "auto"
	voterYes  = "yes"
	voterNo   = "no"
)

// DefaultAuditRetention is how long the audit log keeps an entry unless
// -audit-retention says otherwise: 400 days, a year and a margin.
const DefaultAuditRetention = 400 * 24 * time.Hour

// h3Off is the H3Addr that disables HTTP/3.
const h3Off = "off"

// ParseFlags reads a Config from command-line arguments, the environment
// and the config file that -config (or PARLEY_CONFIG) names, in that order
// of precedence (configfile.go).
func ParseFlags(args []string) (Config, error) {
	var c Config
	f := newFlagSet(&c)
	fs := f.fs
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *f.config != "" {
		if err := applyConfigFile(fs, *f.config); err != nil {
			return c, err
		}
	}
	c.Join = splitList(*f.join)
	c.ACMEDomains = splitList(*f.acmeDomains)
	c.TrustedProxies = splitList(*f.trusted)
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return c, c.validate()
}

// flagSet is the node's flags over a Config, with the text of those that
// ParseFlags turns into lists or reads before the others.
type flagSet struct {
	fs                                 *flag.FlagSet
	config, join, acmeDomains, trusted *string
}

// newFlagSet declares every flag of the node over c; the README's table
// lists them (TestREADMEFlagsTable).
func newFlagSet(c *Config) flagSet {
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	configFile := fs.String("config", envFor("config", ""), "YAML file of settings, keyed by these flags' names; the command line and the environment override it")
	fs.StringVar(&c.HTTPAddr, "http", envFor("http", "127.0.0.1:8080"), "HTTP listen address")
	fs.StringVar(&c.DataDir, "data", envFor("data", "data"), "data directory")
	fs.StringVar(&c.NodeID, "node", envFor("node", "n1"), "node ID")
	fs.StringVar(&c.AgentToken, "agent-token", envFor("agent-token", ""), "operator token of the demo workspace")
	fs.BoolVar(&c.NoDemo, "no-demo", false, "do not create the demo workspace")
	fs.StringVar(&c.LogLevel, "log-level", envFor("log-level", "info"), "log level")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 1000, "concurrent connections per client address, of every kind")
	fs.IntVar(&c.FDReserve, "fd-reserve", 0, "file descriptors kept for addresses with few connections and for the node link (0: an eighth of the limit, 16 to 1024)")
	fs.DurationVar(&c.HTTPReadTimeout, "http-read-timeout", 30*time.Second, "longest time to read one HTTP request, body included")
	fs.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", 60*time.Second, "how long an idle keep-alive HTTP connection is kept")
	fs.Float64Var(&c.FrameRate, "frame-rate", 20, "frames per second per connection")
	fs.Float64Var(&c.WorkspaceRate, "workspace-rate", 2000, "messages and conversation starts per second per workspace, cluster-wide (bursts of twice as many)")
	fs.Float64Var(&c.APIRate, "api-rate", 20, "requests per second per API key or operator session to the conversations API, on each node (bursts of twice as many)")
	fs.Float64Var(&c.AddressShare, "address-share", 0.25, "fraction of a workspace's -workspace-rate the visitors of one client address may take")
	fs.IntVar(&c.SendQueueBytes, "send-queue-bytes", 8<<20, "bytes of frames that may wait, not yet written, for one connection before it is closed slow_consumer")
	fs.Int64Var(&c.HeapFloor, "heap-floor", 64<<20, "bytes the heap may grow past its live data before the Go collector runs, where GOGC alone would run it sooner (0: GOGC alone)")
	fs.IntVar(&c.ShedPending, "shed-pending", 4096, "changes of all connections waiting for the store before new ones are refused overloaded (negative: never)")
	fs.IntVar(&c.ShedBehind, "shed-behind", 2048, "frames not yet written that make an agent's connection behind, its workspace's changes then refused overloaded for -shed-hold (16 to 1048576)")
	fs.DurationVar(&c.ShedHold, "shed-hold", 100*time.Millisecond, "how long a workspace's changes are refused overloaded once one of its agents' connections is behind")
	fs.Float64Var(&c.IPMessageRate, "ip-message-rate", 20, "visitors' messages per second per client address, over all its connections")
	fs.IntVar(&c.IPMessageBurst, "ip-message-burst", 100, "burst of -ip-message-rate")
	fs.Float64Var(&c.IPStartRate, "ip-start-rate", 0.2, "conversations visitors start per second per client address")
	fs.IntVar(&c.IPStartBurst, "ip-start-burst", 20, "burst of -ip-start-rate")
	fs.Int64Var(&c.IPPlanConversations, "ip-plan-conversations", 50, "conversations visitors of one client address may add to a workspace's plan count per -ip-plan-window on a node (at most -ip-plan-fraction of the plan's monthly)")
	fs.Int64Var(&c.IPPlanMessages, "ip-plan-messages", 1000, "messages visitors of one client address may add to a workspace's plan count per -ip-plan-window on a node (at most -ip-plan-fraction of the plan's monthly)")
	fs.Float64Var(&c.IPPlanFraction, "ip-plan-fraction", 0.1, "most of a plan's monthly conversations and messages one client address may add per -ip-plan-window on a node, when less than -ip-plan-conversations, -ip-plan-messages")
	fs.DurationVar(&c.IPPlanWindow, "ip-plan-window", 24*time.Hour, "window of -ip-plan-conversations and -ip-plan-messages, aligned to UTC midnight")
	fs.StringVar(&c.H3Addr, "h3", envFor("h3", ""), `HTTP/3 and WebTransport UDP address (default: the HTTP address on UDP; "off" disables)`)
	fs.StringVar(&c.TLSCert, "tls-cert", envFor("tls-cert", ""), "certificate chain, PEM: HTTPS on the HTTP address and HTTP/3, reloaded on change (default: plain HTTP; HTTP/3 self-signed, short-lived)")
	fs.StringVar(&c.TLSKey, "tls-key", envFor("tls-key", ""), "private key of -tls-cert, PEM")
	fs.DurationVar(&c.TLSReload, "tls-reload", time.Minute, "how often -tls-cert and -tls-key are checked for a change")
	acmeDomains := fs.String("acme-domains", envFor("acme-domains", ""), "obtain the HTTPS certificate from an ACME CA for these names, comma-separated (TLS-ALPN-01 on the HTTP address, reached on port 443)")
	fs.StringVar(&c.ACMEDir, "acme-dir", envFor("acme-dir", ""), "ACME directory URL (default: Let's Encrypt)")
	fs.StringVar(&c.ACMEEmail, "acme-email", envFor("acme-email", ""), "contact address of the ACME account")
	fs.StringVar(&c.ACMECA, "acme-ca", envFor("acme-ca", ""), "PEM roots the ACME server's own certificate may chain to, beside the system's")
	trusted := fs.String("trusted-proxies", envFor("trusted-proxies", ""), "CIDRs of proxies whose PROXY protocol header or X-Forwarded-For gives the client's address, comma-separated")
	fs.StringVar(&c.Region, "region", envFor("region", ""), "region this node runs in (eu, us, ...)")
	fs.StringVar(&c.RaftAddr, "raft-addr", envFor("raft-addr", ""), "node link TCP address: Raft and node-to-node traffic over mutual TLS (default: as last start, or a free port)")
	fs.StringVar(&c.Zone, "zone", envFor("zone", ""), "zone of the region this node runs in")
	fs.StringVar(&c.GossipAddr, "gossip-addr", envFor("gossip-addr", ""), "gossip UDP and TCP address (default: as last start, or a free port)")
	fs.StringVar(&c.Advertise, "advertise", envFor("advertise", ""), "host other nodes reach this one's link at (when binding every interface, or behind NAT)")
	join := fs.String("join", envFor("join", ""), "link addresses (-raft-addr) of cluster members to join, comma-separated (none: bootstrap a cluster)")
	fs.StringVar(&c.Voter, "voter", voterAuto, "join as a voter: yes, no or auto")
	fs.StringVar(&c.ClusterKey, "cluster-key", envFor("cluster-key", ""), "file with the secret shared by the cluster's nodes (default: DATA/cluster.key)")
	fs.StringVar(&c.PreviousClusterKey, "previous-cluster-key", envFor("previous-cluster-key", ""), "file with the cluster key before a rotation: the store's conversation keys are sealed again under the new one at start")
	fs.DurationVar(&c.UsageInterval, "usage-interval", 10*time.Second, "how often usage is reported to the control plane")
	fs.DurationVar(&c.RetentionDay, "retention-day", 24*time.Hour, "the length of a day of workspaces' retention (shorter only to try retention out)")
	fs.DurationVar(&c.ScrubAfter, "scrub-after", 5*time.Second, "how long removed data may stay in the store file's free pages before they are zeroed (negative: only at start and stop)")
	fs.DurationVar(&c.AuditRetention, "audit-retention", DefaultAuditRetention, "how long the audit log keeps an entry (the leader prunes older ones)")
	fs.DurationVar(&c.Lease, "lease", 3*time.Second, "how long without the Raft leader operator credentials are still accepted")
	fs.BoolVar(&c.WebhookAllowPrivate, "webhook-allow-private", false, "let webhook deliveries reach private, loopback and link-local addresses (refused by default)")
	fs.DurationVar(&c.WebhookRetryFor, "webhook-retry-for", 24*time.Hour, "how long a webhook event is retried before it becomes a dead letter")
	fs.DurationVar(&c.WebhookBackoffMax, "webhook-backoff-max", time.Hour, "the longest wait between two attempts of a webhook event")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", 10*time.Second, "how long one webhook delivery attempt may take")
	fs.IntVar(&c.WebhookConcurrency, "webhook-concurrency", 4, "webhook deliveries in flight to one endpoint from this node")
	fs.BoolVar(&c.EmailAllowPlaintext, "email-allow-plaintext", false, "let workspaces' SMTP settings say tls none (refused by default; loopback tests)")
	fs.DurationVar(&c.EmailBatch, "email-batch", 2*time.Minute, "how long after a visitor's first unseen reply the unseen replies are mailed together")
	fs.DurationVar(&c.EmailBackoffMax, "email-backoff-max", 30*time.Minute, "the longest wait between two attempts of a mail after a temporary SMTP error")
	fs.DurationVar(&c.EmailTimeout, "email-timeout", 30*time.Second, "how long one SMTP session may take")
	fs.Uint64Var(&c.RaftSnapshotThreshold, "raft-snapshot-threshold", 0, "Raft log entries between snapshots (0: default)")
	fs.Uint64Var(&c.RaftTrailingLogs, "raft-trailing-logs", 0, "Raft log entries kept after a snapshot (0: default)")
	fs.DurationVar(&c.FaultReplDelay, "fault-repl-delay", 0, "fault injection: delay every replication message this node sends (benchmarks)")
	embedFlags(fs, c)
	tracingFlags(fs, c)
	return flagSet{fs: fs, config: configFile, join: join, acmeDomains: acmeDomains, trusted: trusted}
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
	if c.Voter == "" {
		c.Voter = voterAuto
	}
	if c.UsageInterval == 0 {
		c.UsageInterval = 10 * time.Second
	}
	if c.Lease == 0 {
		c.Lease = 3 * time.Second
	}
	if c.AuditRetention == 0 {
		c.AuditRetention = DefaultAuditRetention
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = 1000
	}
	if c.HTTPReadTimeout == 0 {
		c.HTTPReadTimeout = 30 * time.Second
	}
	if c.HTTPIdleTimeout == 0 {
		c.HTTPIdleTimeout = 60 * time.Second
	}
	if c.TLSReload == 0 {
		c.TLSReload = time.Minute
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
	if c.TLSCert != "" && len(c.ACMEDomains) > 0 {
		errs = append(errs, errors.New("tls-cert and acme-domains: give one or the other"))
	}
	if (c.ACMEDir != "" || c.ACMEEmail != "" || c.ACMECA != "") && len(c.ACMEDomains) == 0 {
		errs = append(errs, errors.New("acme-dir, acme-email, acme-ca: need acme-domains"))
	}
	for _, d := range c.ACMEDomains {
		if !reDNSName.MatchString(d) || !strings.Contains(strings.Trim(d, "."), ".") || net.ParseIP(d) != nil {
			errs = append(errs, fmt.Errorf("acme-domains: %q is not a DNS name with a dot", d))
		}
	}
	if c.TLSReload < 0 {
		errs = append(errs, errors.New("tls-reload: not negative"))
	}
	if c.IPPlanConversations < 0 || c.IPPlanMessages < 0 || c.IPPlanWindow < 0 {
		errs = append(errs, errors.New("ip-plan-conversations, ip-plan-messages, ip-plan-window: not negative"))
	}
	if c.IPPlanFraction < 0 || c.IPPlanFraction > 1 {
		errs = append(errs, errors.New("ip-plan-fraction: between 0 and 1"))
	}
	if c.SendQueueBytes != 0 && (c.SendQueueBytes < 64<<10 || c.SendQueueBytes > 1<<30) {
		errs = append(errs, errors.New("send-queue-bytes: 65536 to 1073741824"))
	}
	if c.ShedBehind != 0 && (c.ShedBehind < 16 || c.ShedBehind > 1<<20) {
		errs = append(errs, errors.New("shed-behind: 16 to 1048576"))
	}
	if c.HeapFloor < 0 || c.HeapFloor > 16<<30 {
		errs = append(errs, errors.New("heap-floor: 0 to 17179869184"))
	}
	if c.AddressShare < 0 || c.AddressShare > 1 {
		errs = append(errs, errors.New("address-share: between 0 and 1"))
	}
	if _, err := edge.ParseTrusted(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("trusted-proxies: %w", err))
	}
	if c.H3Addr != "" && c.H3Addr != h3Off {
		if _, _, err := net.SplitHostPort(c.H3Addr); err != nil {
			errs = append(errs, fmt.Errorf("h3: %q is not host:port or %q", c.H3Addr, h3Off))
		}
	}
	for _, a := range c.Join {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("join: %q is not host:port", a))
		}
	}
	if c.GossipAddr != "" {
		if _, _, err := net.SplitHostPort(c.GossipAddr); err != nil {
			errs = append(errs, fmt.Errorf("gossip-addr: %q is not host:port", c.GossipAddr))
		}
	}
	if c.Zone != "" && !ident.ValidRegion(c.Zone) {
		errs = append(errs, fmt.Errorf("zone: %q is not 1 to 32 of a-z 0-9 -", c.Zone))
	}
	if c.RaftAddr != "" {
		if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
			errs = append(errs, fmt.Errorf("raft-addr: %q is not host:port", c.RaftAddr))
		}
	}
	switch c.Voter {
	case "", voterAuto, voterYes, voterNo:
	default:
		errs = append(errs, fmt.Errorf("voter: %q is not yes, no or auto", c.Voter))
	}
	if c.Region != "" && !ident.ValidRegion(c.Region) {
		errs = append(errs, fmt.Errorf("region: %q is not 1 to 32 of a-z 0-9 -", c.Region))
	}
	if c.UsageInterval < 0 || c.Lease < 0 || c.AuditRetention < 0 {
		errs = append(errs, errors.New("usage-interval, lease and audit-retention: not negative"))
	}
	if c.HTTPReadTimeout < 0 || c.HTTPIdleTimeout < 0 || c.FDReserve < 0 {
		errs = append(errs, errors.New("http-read-timeout, http-idle-timeout and fd-reserve: not negative"))
	}
	errs = append(errs, c.validateEmbed()...)
	errs = append(errs, c.validateTracing()...)
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level: %q is not debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// splitList reads a comma-separated flag: entries trimmed, empty ones
// dropped.
func splitList(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
