package bench

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"parley/ident"
	"parley/internal/localcluster"

	"go.yaml.in/yaml/v3"
)

// Scenario is one bench run, read from YAML. Every run is bounded: the send
// phase lasts Duration (and at most Messages messages), the drain after it
// at most Drain, and the whole run at most Timeout.
type Scenario struct {
	// Name labels the run in its reports.
	Name string `yaml:"name" json:"name"`
	// Target is where the load goes. With `run --local N` the harness starts
	// the nodes itself and fills Nodes and AgentToken in.
	Target Target `yaml:"target" json:"target"`

	// Visitors is the number of virtual visitors (widget connections).
	Visitors int `yaml:"visitors" json:"visitors"`
	// Agents is the number of virtual agents (console connections); every
	// agent receives every conversation's messages.
	Agents int `yaml:"agents" json:"agents"`
	// Conversations is how many conversations the visitors start, owned
	// round-robin (conversation c belongs to visitor c mod Visitors). Zero:
	// one per visitor.
	Conversations int `yaml:"conversations" json:"conversations"`

	// Rate is the arrival rate of visitor messages, in messages per second
	// over all conversations, after ramp-up. Open loop: messages are due at
	// fixed times whatever the node answers.
	Rate float64 `yaml:"rate" json:"rate"`
	// Messages caps the number of messages (zero: Rate × the send phase).
	Messages int `yaml:"messages" json:"messages"`
	// MessageSize is the body size in bytes (1..4000). Zero: 64.
	MessageSize int `yaml:"message_size" json:"message_size"`
	// Duration is the send phase, ramp-up included.
	Duration Duration `yaml:"duration" json:"duration"`
	// RampUp raises the arrival rate linearly from 0 to Rate.
	RampUp Duration `yaml:"ramp_up" json:"ramp_up"`
	// ConnectRate paces the setup: connections opened per second. Zero: 500.
	ConnectRate float64 `yaml:"connect_rate" json:"connect_rate"`
	// Drain is how long the run waits after the send phase for outstanding
	// acks and deliveries. Zero: 10s.
	Drain Duration `yaml:"drain" json:"drain"`
	// Timeout bounds the whole run, setup and audit included. Zero: setup
	// allowance + Duration + Drain + faults + 60s.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Audit reads every conversation's history after the run to check, per
	// acknowledged message, that the node stored it exactly once. Default on.
	Audit *bool `yaml:"audit" json:"audit"`

	// Transports is the transport mix, as weights: {ws: 1}. Only ws exists
	// today; wt (WebTransport) is refused until the node serves it.
	Transports map[string]float64 `yaml:"transports" json:"transports"`

	// ReconnectStorms drop a fraction of the client connections at a given
	// time; each dropped client reconnects, resumes and resends what was not
	// acknowledged.
	ReconnectStorms []Storm `yaml:"reconnect_storms" json:"reconnect_storms,omitempty"`
	// Faults act on nodes the harness started itself (--local).
	Faults []Fault `yaml:"faults" json:"faults,omitempty"`
	// Failover sends a visitor whose node stops answering (a send or ping
	// unanswered for 5 s, or a reconnect that fails) to the next node of
	// target.nodes, as a load balancer would: it resends there what its
	// node never acknowledged. Agents stay on their node (they resume by
	// seq, which is one node's numbering). Zero: every client reconnects
	// to its own node. Needs two nodes or more.
	Failover bool `yaml:"failover" json:"failover,omitempty"`

	// Idle opens many connections that only say hello and ping, to measure
	// what an idle connection costs a node.
	Idle *Idle `yaml:"idle" json:"idle,omitempty"`

	// Seed makes storm victim choices reproducible. Zero: 1.
	Seed int64 `yaml:"seed" json:"seed"`
}

// Target names the nodes and the workspace a scenario drives.
type Target struct {
	// Nodes are base URLs (http://host:port); clients are spread over them
	// round-robin. The WebSocket endpoint is /v1/ws, metrics at /metrics.
	Nodes []string `yaml:"nodes" json:"nodes"`
	// Workspace the visitors and agents join. Zero: demo.
	Workspace string `yaml:"workspace" json:"workspace"`
	// AgentToken is the workspace's operator token. AgentTokenEnv names an
	// environment variable holding it instead, to keep it out of files.
	AgentToken    string `yaml:"agent_token" json:"-"`
	AgentTokenEnv string `yaml:"agent_token_env" json:"agent_token_env,omitempty"`
}

// Storm drops Fraction of the client connections at At (from the start of
// the send phase); each reconnects after a random delay in [0, Over].
type Storm struct {
	At       Duration `yaml:"at" json:"at"`
	Fraction float64  `yaml:"fraction" json:"fraction"`
	Over     Duration `yaml:"over" json:"over"`
}

// Fault is something done to the local nodes during the send phase.
type Fault struct {
	// At is when, from the start of the send phase.
	At Duration `yaml:"at" json:"at"`
	// Action: kill (SIGKILL, then restart with the same data and flags),
	// stop (SIGSTOP, then SIGCONT: the process freezes with its sockets
	// open) or partition (cut nodes off from the others, then heal; root
	// only: the nodes run in network namespaces).
	Action string `yaml:"action" json:"action"`
	// Node is the index of the node to kill or stop (0-based, in start
	// order).
	Node int `yaml:"node" json:"node"`
	// RestartAfter restarts a killed node with the same address and data
	// after this long. Zero: the node stays down.
	RestartAfter Duration `yaml:"restart_after" json:"restart_after"`
	// ResumeAfter continues a stopped node (SIGCONT) after this long (> 0:
	// every stopped node continues, so that the run can account for every
	// message).
	ResumeAfter Duration `yaml:"resume_after" json:"resume_after,omitempty"`
	// Nodes (indices) or Region (every node of it) are the side a
	// partition cuts off from the rest; the harness still reaches both
	// sides, so clients on either keep writing.
	Nodes  []int  `yaml:"nodes" json:"nodes,omitempty"`
	Region string `yaml:"region" json:"region,omitempty"`
	// HealAfter heals the partition after this long (> 0: every partition
	// heals, so that the run can account for every message).
	HealAfter Duration `yaml:"heal_after" json:"heal_after,omitempty"`
}

// partitionsAvailable says whether partitions can be made here (a
// variable so that tests can pretend either way).
var partitionsAvailable = localcluster.NetLabAvailable

// HasPartition reports whether a fault of the scenario is a partition: the
// local nodes must then run in network namespaces.
func (s *Scenario) HasPartition() bool {
	for _, f := range s.Faults {
		if f.Action == "partition" {
			return true
		}
	}
	return false
}

// Idle describes the idle-connection scale test.
type Idle struct {
	// Connections to open and hold.
	Connections int `yaml:"connections" json:"connections"`
	// SourceAddrs are local addresses to dial from, so that more connections
	// than one address's ephemeral ports can be opened: a list of IPs, or a
	// range "127.0.0.2-127.0.0.9". Zero: the system's choice.
	SourceAddrs []string `yaml:"source_addrs" json:"source_addrs,omitempty"`
	// ConnectRate paces the opening. Zero: 2000/s.
	ConnectRate float64 `yaml:"connect_rate" json:"connect_rate"`
	// Concurrency bounds dials in flight. Zero: 256.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// Settle is how long to wait with every connection open before measuring
	// the node's memory. Zero: 5s.
	Settle Duration `yaml:"settle" json:"settle"`
	// MaxNodeRSSMiB stops opening connections once the nodes' resident
	// memory (summed, as scraped every second) passes it: a guard for
	// shared machines. Zero: no guard.
	MaxNodeRSSMiB float64 `yaml:"max_node_rss_mib" json:"max_node_rss_mib,omitempty"`
}

// Duration is a time.Duration written as "10s", "1m30s" or "250ms" in YAML.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads "10s"; a bare number is refused (which unit?).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration: want a string like \"10s\"", n.Line)
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("line %d: duration %q: want a number with a unit, like 10s or 500ms", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as "10s".
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(d.String())), nil }

// UnmarshalJSON reads what MarshalJSON wrote.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Limits on scenarios: a run is bounded in memory as well as time.
const (
	MaxMessages    = 20_000_000
	MaxClients     = 200_000
	MaxAgents      = 1000
	MaxIdle        = 1_000_000
	MaxBodyBytes   = 4000
	maxTotalLedger = 100_000_000 // messages × (agents + 1) tracked by the ledger
)

// LoadScenario reads and validates a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseScenario(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseScenario decodes YAML (unknown fields are errors), fills defaults
// and validates.
func ParseScenario(b []byte) (*Scenario, error) {
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	s.Defaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Defaults fills the zero values that have a documented default.
func (s *Scenario) Defaults() {
	if s.Name == "" {
		s.Name = "unnamed"
	}
	if s.Target.Workspace == "" {
		s.Target.Workspace = "demo"
	}
	if s.Conversations == 0 && s.Visitors > 0 {
		s.Conversations = s.Visitors
	}
	if s.MessageSize == 0 {
		s.MessageSize = 64
	}
	if s.ConnectRate == 0 {
		s.ConnectRate = 500
	}
	if s.Drain == 0 {
		s.Drain = Duration(10 * time.Second)
	}
	if s.Audit == nil {
		t := true
		s.Audit = &t
	}
	if len(s.Transports) == 0 {
		s.Transports = map[string]float64{"ws": 1}
	}
	if s.Seed == 0 {
		s.Seed = 1
	}
	if s.Idle != nil {
		if s.Idle.ConnectRate == 0 {
			s.Idle.ConnectRate = 2000
		}
		if s.Idle.Concurrency == 0 {
			s.Idle.Concurrency = 256
		}
		if s.Idle.Settle == 0 {
			s.Idle.Settle = Duration(5 * time.Second)
		}
	}
	if s.Timeout == 0 {
		setup := time.Duration(float64(s.Visitors+s.Agents)/s.ConnectRate*float64(time.Second)) + 30*time.Second
		if s.Idle != nil && s.Idle.ConnectRate > 0 {
			setup += time.Duration(float64(s.Idle.Connections)/s.Idle.ConnectRate*float64(time.Second)) + s.Idle.Settle.D()
		}
		var faults time.Duration
		for _, f := range s.Faults {
			if end := f.At.D() + f.RestartAfter.D() + f.ResumeAfter.D() + f.HealAfter.D(); end > faults {
				faults = end
			}
		}
		s.Timeout = Duration(setup + s.Duration.D() + s.Drain.D() + faults + 60*time.Second)
	}
}

// Validate returns every problem of the scenario at once, each naming its
// field.
func (s *Scenario) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	// Target.
	for i, n := range s.Target.Nodes {
		if err := checkNodeURL(n); err != nil {
			bad(fmt.Sprintf("target.nodes[%d]", i), "%v", err)
		}
	}
	if !ident.ValidID(s.Target.Workspace) {
		bad("target.workspace", "%q is not [a-z0-9_-]{1,64}", s.Target.Workspace)
	}
	if s.Target.AgentToken != "" && s.Target.AgentTokenEnv != "" {
		bad("target.agent_token", "set agent_token or agent_token_env, not both")
	}
	// Population.
	if s.Visitors < 0 || s.Visitors > MaxClients {
		bad("visitors", "must be 0..%d, got %d", MaxClients, s.Visitors)
	}
	if s.Agents < 0 || s.Agents > MaxAgents {
		bad("agents", "must be 0..%d, got %d", MaxAgents, s.Agents)
	}
	if s.Conversations < 0 || s.Conversations > MaxClients {
		bad("conversations", "must be 0..%d, got %d", MaxClients, s.Conversations)
	}
	if s.Conversations > 0 && s.Visitors == 0 {
		bad("conversations", "need visitors to start them")
	}
	// Load.
	if math.IsNaN(s.Rate) || math.IsInf(s.Rate, 0) || s.Rate < 0 {
		bad("rate", "must be a number ≥ 0 (messages per second), got %v", s.Rate)
	}
	if s.Rate > 0 && s.Conversations == 0 {
		bad("rate", "messages need conversations: set visitors")
	}
	if s.Messages < 0 || s.Messages > MaxMessages {
		bad("messages", "must be 0..%d, got %d", MaxMessages, s.Messages)
	}
	if s.MessageSize < 1 || s.MessageSize > MaxBodyBytes {
		bad("message_size", "must be 1..%d bytes (the protocol's body limit), got %d", MaxBodyBytes, s.MessageSize)
	}
	if s.Duration <= 0 {
		bad("duration", "must be > 0: every run is bounded in time")
	}
	if s.RampUp < 0 || (s.Duration > 0 && s.RampUp > s.Duration) {
		bad("ramp_up", "must be 0..duration (%s), got %s", s.Duration, s.RampUp)
	}
	if s.ConnectRate <= 0 || math.IsInf(s.ConnectRate, 0) || math.IsNaN(s.ConnectRate) {
		bad("connect_rate", "must be > 0 connections per second")
	}
	if s.Drain < 0 {
		bad("drain", "must be ≥ 0")
	}
	if s.Timeout <= 0 {
		bad("timeout", "must be > 0")
	} else if s.Timeout < s.Duration+s.Drain {
		bad("timeout", "%s is shorter than duration + drain (%s)", s.Timeout, s.Duration+s.Drain)
	}
	if total := s.TotalMessages(); total > MaxMessages {
		bad("rate", "rate × duration is %d messages, over the limit of %d: lower the rate or the duration, or set messages", total, MaxMessages)
	} else if int64(total)*int64(s.Agents+1) > maxTotalLedger {
		bad("agents", "%d messages × %d agents is too many deliveries to track (limit %d)", total, s.Agents, maxTotalLedger)
	}
	// Transports.
	sum := 0.0
	for name, w := range s.Transports {
		switch {
		case w < 0 || math.IsNaN(w) || math.IsInf(w, 0):
			bad("transports."+name, "weight must be ≥ 0, got %v", w)
		case name != "ws" && name != "wt":
			bad("transports."+name, "unknown transport (known: ws, wt)")
		}
		if w > 0 {
			sum += w
		}
	}
	if sum == 0 && len(errs) == 0 {
		bad("transports", "no transport has a weight > 0")
	}
	// Storms.
	for i, st := range s.ReconnectStorms {
		f := fmt.Sprintf("reconnect_storms[%d]", i)
		if st.At < 0 || st.At >= s.Duration {
			bad(f+".at", "must be within the send phase [0, %s), got %s", s.Duration, st.At)
		}
		if !(st.Fraction > 0 && st.Fraction <= 1) {
			bad(f+".fraction", "must be in (0, 1], got %v", st.Fraction)
		}
		if st.Over < 0 {
			bad(f+".over", "must be ≥ 0")
		}
	}
	// Faults.
	for i, ft := range s.Faults {
		f := fmt.Sprintf("faults[%d]", i)
		switch ft.Action {
		case "kill":
			s.checkFaultNode(f, ft, bad)
			if ft.RestartAfter < 0 {
				bad(f+".restart_after", "must be ≥ 0")
			}
			if len(ft.Nodes) > 0 || ft.Region != "" || ft.HealAfter != 0 || ft.ResumeAfter != 0 {
				bad(f, "nodes, region and heal_after are for partitions, resume_after for stops; a kill takes node and restart_after")
			}
		case "stop":
			s.checkFaultNode(f, ft, bad)
			if ft.ResumeAfter <= 0 {
				bad(f+".resume_after", "must be > 0: a node stopped for good cannot be accounted for (kill it instead)")
			}
			if len(ft.Nodes) > 0 || ft.Region != "" || ft.HealAfter != 0 || ft.RestartAfter != 0 {
				bad(f, "nodes, region and heal_after are for partitions, restart_after for kills; a stop takes node and resume_after")
			}
		case "partition":
			if err := partitionsAvailable(); err != nil {
				bad(f+".action", "partition needs the nodes in network namespaces, which this machine cannot make: %v (run as root with iproute2, or drop the fault)", err)
			}
			if (len(ft.Nodes) == 0) == (ft.Region == "") {
				bad(f+".nodes", "a partition cuts off nodes: [indices] or region: name (one of the two)")
			}
			for j, nd := range ft.Nodes {
				if nd < 0 || (len(s.Target.Nodes) > 0 && nd >= len(s.Target.Nodes)) || slices.Contains(ft.Nodes[:j], nd) {
					bad(fmt.Sprintf("%s.nodes[%d]", f, j), "%d is not a distinct node index in range", nd)
				}
			}
			if ft.HealAfter <= 0 {
				bad(f+".heal_after", "must be > 0: a partition that never heals cannot be accounted for")
			}
			if ft.Node != 0 || ft.RestartAfter != 0 || ft.ResumeAfter != 0 {
				bad(f, "node and restart_after are for kills, node and resume_after for stops; a partition takes nodes (or region) and heal_after")
			}
		case "":
			bad(f+".action", "missing: kill, stop or partition")
		default:
			bad(f+".action", "unknown action %q (known: kill, stop, partition)", ft.Action)
		}
		if ft.At < 0 || ft.At >= s.Duration {
			bad(f+".at", "must be within the send phase [0, %s), got %s", s.Duration, ft.At)
		}
	}
	// Idle.
	if s.Idle != nil {
		if s.Idle.Connections < 1 || s.Idle.Connections > MaxIdle {
			bad("idle.connections", "must be 1..%d, got %d", MaxIdle, s.Idle.Connections)
		}
		if s.Idle.ConnectRate <= 0 {
			bad("idle.connect_rate", "must be > 0")
		}
		if s.Idle.Concurrency < 1 || s.Idle.Concurrency > 10000 {
			bad("idle.concurrency", "must be 1..10000")
		}
		if s.Idle.Settle < 0 {
			bad("idle.settle", "must be ≥ 0")
		}
		if s.Idle.MaxNodeRSSMiB < 0 {
			bad("idle.max_node_rss_mib", "must be ≥ 0")
		}
		if _, err := ParseSourceAddrs(s.Idle.SourceAddrs); err != nil {
			bad("idle.source_addrs", "%v", err)
		}
	}
	if s.Visitors == 0 && s.Agents == 0 && s.Idle == nil {
		bad("visitors", "nothing to run: no visitors, agents or idle connections")
	}
	return errors.Join(errs...)
}

// checkFaultNode checks the node index of a kill or a stop.
func (s *Scenario) checkFaultNode(f string, ft Fault, bad func(field, format string, a ...any)) {
	if ft.Node < 0 {
		bad(f+".node", "must be a node index ≥ 0")
	} else if len(s.Target.Nodes) > 0 && ft.Node >= len(s.Target.Nodes) {
		bad(f+".node", "index %d, but target.nodes has %d", ft.Node, len(s.Target.Nodes))
	}
}

// Ready checks what a run needs beyond a valid file: nodes, a token, and
// for faults the local cluster (cl, nil when the nodes are not the
// harness's own).
func (s *Scenario) Ready(cl *localcluster.Cluster) error {
	var errs []error
	if len(s.Target.Nodes) == 0 {
		errs = append(errs, errors.New("target.nodes: no node to drive (list URLs, or run with --local N)"))
	}
	if s.Agents > 0 && s.AgentToken() == "" {
		if s.Target.AgentTokenEnv != "" {
			errs = append(errs, fmt.Errorf("target.agent_token_env: $%s is empty; agents need the workspace's operator token", s.Target.AgentTokenEnv))
		} else {
			errs = append(errs, errors.New("target.agent_token: agents need the workspace's operator token (or agent_token_env)"))
		}
	}
	if s.Failover && len(s.Target.Nodes) < 2 {
		errs = append(errs, fmt.Errorf("failover: needs two nodes or more, there are %d", len(s.Target.Nodes)))
	}
	if len(s.Faults) > 0 && cl == nil {
		errs = append(errs, errors.New("faults: need --local: the harness can only kill, stop or cut off nodes it started itself"))
	}
	for i, f := range s.Faults {
		if (f.Action == "kill" || f.Action == "stop") && f.Node >= len(s.Target.Nodes) && len(s.Target.Nodes) > 0 {
			errs = append(errs, fmt.Errorf("faults[%d].node: index %d, but there are %d nodes", i, f.Node, len(s.Target.Nodes)))
		}
		if f.Action != "partition" || cl == nil {
			continue
		}
		if cl.Lab == nil {
			errs = append(errs, fmt.Errorf("faults[%d]: a partition needs the local nodes in network namespaces (LocalOptions.Isolate)", i))
		}
		side, err := s.partitionSide(i, cl)
		switch {
		case err != nil:
			errs = append(errs, err)
		case len(side) == len(cl.Nodes):
			errs = append(errs, fmt.Errorf("faults[%d]: the partition would cut off every node: nothing is left on the other side", i))
		}
	}
	return errors.Join(errs...)
}

// partitionSide resolves the nodes fault i cuts off.
func (s *Scenario) partitionSide(i int, cl *localcluster.Cluster) ([]int, error) {
	f := s.Faults[i]
	if f.Region != "" {
		side := cl.NodesInRegion(f.Region)
		if len(side) == 0 {
			return nil, fmt.Errorf("faults[%d].region: no local node is in region %q", i, f.Region)
		}
		return side, nil
	}
	for _, nd := range f.Nodes {
		if nd < 0 || nd >= len(cl.Nodes) {
			return nil, fmt.Errorf("faults[%d].nodes: index %d, but there are %d nodes", i, nd, len(cl.Nodes))
		}
	}
	return f.Nodes, nil
}

// AgentToken returns the operator token, from the file or the environment.
func (s *Scenario) AgentToken() string {
	if s.Target.AgentTokenEnv != "" {
		return os.Getenv(s.Target.AgentTokenEnv)
	}
	return s.Target.AgentToken
}

// TotalMessages is the number of messages the send phase issues.
func (s *Scenario) TotalMessages() int {
	if s.Rate <= 0 || s.Duration <= 0 {
		return 0
	}
	n := Schedule{Rate: s.Rate, RampUp: s.RampUp.D()}.CountBefore(s.Duration.D())
	if s.Messages > 0 && s.Messages < n {
		n = s.Messages
	}
	return n
}

func checkNodeURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: want an http:// or https:// base URL", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: no host", s)
	}
	if u.Path != "" && u.Path != "/" {
		return fmt.Errorf("%q: want the node's base URL without a path (the harness adds /v1/ws and /metrics)", s)
	}
	return nil
}

// ParseSourceAddrs expands "127.0.0.2-127.0.0.9" ranges and checks IPs.
func ParseSourceAddrs(in []string) ([]net.IP, error) {
	var out []net.IP
	for _, s := range in {
		lo, hi, isRange := strings.Cut(s, "-")
		a := net.ParseIP(strings.TrimSpace(lo)).To4()
		if a == nil {
			return nil, fmt.Errorf("%q is not an IPv4 address", lo)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b := net.ParseIP(strings.TrimSpace(hi)).To4()
		if b == nil {
			return nil, fmt.Errorf("%q is not an IPv4 address", hi)
		}
		x, y := ipToU32(a), ipToU32(b)
		if y < x || y-x > 1024 {
			return nil, fmt.Errorf("range %q: want low-high with at most 1025 addresses", s)
		}
		for v := x; v <= y; v++ {
			out = append(out, u32ToIP(v))
		}
	}
	return out, nil
}

func ipToU32(ip net.IP) uint32 {
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}

func u32ToIP(v uint32) net.IP { return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).To4() }
