package peers

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"parley/bench"
	"parley/bench/internal/harness"
	"parley/internal/localcluster"
)

// Peer versions the comparison is pinned to; `make bench-peers` builds
// them from the Go module proxy (bench/peers/fetch.sh).
const (
	NATSVersion       = "v2.15.2"
	CentrifugoVersion = "v5.4.9"
	K6Version         = "v1.8.1"
)

// DefaultPeersDir is where fetch.sh puts the peer binaries.
func DefaultPeersDir() string {
	if d := os.Getenv("PEERS_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".cache/parley/peers"
	}
	return filepath.Join(home, ".cache", "parley", "peers")
}

// Options configure Run.
type Options struct {
	// Parley is the node binary. Zero: bin/parley.
	Parley string
	// PeersDir holds nats-server and centrifugo. Zero: DefaultPeersDir().
	PeersDir string
	// Log receives progress notes. Nil: none.
	Log func(format string, a ...any)
	// ParleyParse is how Parley's subscribers read each deliver frame's
	// payload: "" (ParseReader), a hand-written exact reader of the
	// message's body, as NATS's subscribers parse a MSG line by hand;
	// ParseJSON, encoding/json, as a Go client of the wire protocol
	// would (the harness, on the same cores as the server, then spends
	// more CPU per receipt on Parley than on NATS); ParseSearch, a byte
	// search of the frame for the payload (fanoutIndex), no parse at all.
	ParleyParse string
	// CentrifugoJSON: Centrifugo's subscribers decode each reply with
	// encoding/json. Zero: a hand-written exact reader of pings and
	// publications (encoding/json for any other reply).
	CentrifugoJSON bool
}

// The ways Parley's subscribers read a deliver frame (Options.ParleyParse).
const (
	ParseReader = ""
	ParseJSON   = "json"
	ParseSearch = "search"
)

// peerServer is one server process started for one run.
type peerServer struct {
	name, version string
	pid           int
	drv           fanoutDriver
	stop          func()
}

// startPeer starts a fresh server for peer and returns its driver.
func startPeer(ctx context.Context, peer string, o Options, dir string) (*peerServer, error) {
	switch peer {
	case PeerParley:
		lc, err := bench.StartLocal(ctx, bench.LocalOptions{Bin: o.Parley, Nodes: 1})
		if err != nil {
			return nil, err
		}
		var id [6]byte
		rand.Read(id[:])
		n := lc.Nodes[0]
		return &peerServer{name: peer, version: "this tree", pid: n.PID(), stop: lc.Stop,
			drv: &parleyDriver{url: bench.WSURL(n.URL), token: lc.Token, workspace: "demo", runID: hex.EncodeToString(id[:]), parse: o.ParleyParse}}, nil
	case PeerNATS:
		addr, err := localcluster.FreeAddr()
		if err != nil {
			return nil, err
		}
		ws, err := localcluster.FreeAddr()
		if err != nil {
			return nil, err
		}
		conf := fmt.Sprintf("listen: %q\nmax_connections: 100000\nwebsocket {\n  listen: %q\n  no_tls: true\n}\n", addr, ws)
		ps, err := startProc(ctx, filepath.Join(o.PeersDir, "nats-server"), dir, "nats.conf", conf, func(cf string) []string { return []string{"-c", cf} },
			func() error { return dialOK(ws) })
		if err != nil {
			return nil, err
		}
		ps.name, ps.version = peer, NATSVersion
		ps.drv = &natsDriver{url: "ws://" + ws, subject: "room"}
		return ps, nil
	case PeerCentrifugo:
		addr, err := localcluster.FreeAddr()
		if err != nil {
			return nil, err
		}
		host, port, _ := net.SplitHostPort(addr)
		conf := fmt.Sprintf(`{"address":%q,"port":%q,"client_insecure":true,"api_insecure":true,"allowed_origins":["*"],"health":true,"usage_stats_disable":true,"log_level":"error"}`, host, port)
		ps, err := startProc(ctx, filepath.Join(o.PeersDir, "centrifugo"), dir, "centrifugo.json", conf, func(cf string) []string { return []string{"--config", cf} },
			func() error { return httpOK("http://" + addr + "/health") })
		if err != nil {
			return nil, err
		}
		ps.name, ps.version = peer, CentrifugoVersion
		ps.drv = &centrifugoDriver{url: "ws://" + addr + "/connection/websocket", api: "http://" + addr + "/api", channel: "room", json: o.CentrifugoJSON}
		return ps, nil
	}
	return nil, fmt.Errorf("unknown peer %q", peer)
}

func dialOK(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func httpOK(url string) error {
	hc := &http.Client{Timeout: time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

// startProc writes a config file into dir, starts bin with args(config)
// in its own process group (killed with the harness), and waits until
// ready answers nil.
func startProc(ctx context.Context, bin, dir, confName, conf string, args func(string) []string, ready func() error) (*peerServer, error) {
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		return nil, fmt.Errorf("%s not found: build the peers with `make bench-peers` (bench/peers/fetch.sh)", bin)
	}
	cf := filepath.Join(dir, confName)
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, confName+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args(cf)...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = localcluster.ProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s exited before ready: %v\n%s", filepath.Base(bin), err, harness.Tail(b, 2000))
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		default:
		}
		if ready() == nil {
			return &peerServer{pid: cmd.Process.Pid, stop: stop}, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("%s not ready after 30s (log %s)", filepath.Base(bin), logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Result is a side-by-side run: every peer, every round.
type Result struct {
	Version  int             `json:"version"`
	Name     string          `json:"name"`
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished"`
	Host     bench.Host      `json:"host"`
	Scenario *FanoutScenario `json:"scenario"`
	// How the subscribers read their frames (Options): Parley's "reader"
	// (the default), "json" or "search"; Centrifugo's "reader" or "json".
	// Empty in results from before the readers: both "json".
	ParleyParse     string         `json:"parley_parse,omitempty"`
	CentrifugoParse string         `json:"centrifugo_parse,omitempty"`
	Runs            []FanoutResult `json:"runs"`
	Summary         []PeerSummary  `json:"summary"`
	Ratios          []PeerRatio    `json:"ratios"`
}

// PeerSummary is the median of a peer's complete runs.
type PeerSummary struct {
	Peer                 string  `json:"peer"`
	Version              string  `json:"version"`
	Runs                 int     `json:"runs"` // complete runs (no error)
	P50                  float64 `json:"p50_ms"`
	P99                  float64 `json:"p99_ms"`
	P999                 float64 `json:"p999_ms"`
	Max                  float64 `json:"max_ms"`
	ReceiptsPerCPUSecond float64 `json:"receipts_per_cpu_second"`
	MemPerConn           float64 `json:"mem_per_conn"`
	RSSIdle              float64 `json:"rss_idle"`
	RSSConnected         float64 `json:"rss_connected"`
	ServerCPUSeconds     float64 `json:"server_cpu_seconds"`
	HarnessCPUSeconds    float64 `json:"harness_cpu_seconds"`
	MinDelivered         float64 `json:"min_delivered"` // the worst run's fraction of receipts
}

// PeerRatio is Parley's figure divided by the peer's, as the median of
// the ratios within each round (both servers measured minutes apart on
// the same machine), so a noisy neighbour moves both sides.
type PeerRatio struct {
	Peer string `json:"peer"`
	// P99: Parley's delivery p99 ÷ the peer's (below 1: Parley faster).
	P99 float64 `json:"p99"`
	// Throughput: Parley's receipts per CPU second ÷ the peer's (above 1:
	// Parley does more per core).
	Throughput float64 `json:"throughput"`
	// Memory: Parley's memory per connection ÷ the peer's (below 1:
	// Parley uses less).
	Memory float64 `json:"memory"`
	Rounds int     `json:"rounds"` // rounds in which both runs completed
}

// Run runs sc against every peer in every round, each run against a
// freshly started server that is stopped after it.
func Run(ctx context.Context, sc *FanoutScenario, o Options) (*Result, error) {
	if o.Parley == "" {
		o.Parley = "bin/parley"
	}
	if o.PeersDir == "" {
		o.PeersDir = DefaultPeersDir()
	}
	switch o.ParleyParse {
	case ParseReader, ParseJSON, ParseSearch:
	default:
		return nil, fmt.Errorf("peers: ParleyParse %q, want %q, %q or %q", o.ParleyParse, ParseReader, ParseJSON, ParseSearch)
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	// The harness holds every subscriber; each server is a child and
	// inherits the limit.
	if _, err := bench.RaiseNoFile(uint64(2*sc.Subscribers + 1024)); err != nil {
		logf("%v", err)
	}
	dir, err := os.MkdirTemp("", "parley-peers-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res := &Result{Version: 1, Name: sc.Name, Started: time.Now().UTC(), Scenario: sc, Host: bench.HostInfo(), // load average at start
		ParleyParse: cmp.Or(o.ParleyParse, "reader"), CentrifugoParse: "reader"}
	if o.CentrifugoJSON {
		res.CentrifugoParse = "json"
	}
	for round := 1; round <= sc.Runs; round++ {
		for _, peer := range sc.Peers {
			if ctx.Err() != nil {
				break
			}
			fr := FanoutResult{Peer: peer, Round: round}
			logf("round %d/%d: %s, %d subscribers, %g msgs/s for %s", round, sc.Runs, peer, sc.Subscribers, sc.Rate, sc.Duration)
			if err := runPeerOnce(ctx, sc, o, dir, &fr, logf); err != nil {
				fr.Error = err.Error()
				logf("%s: %v", peer, err)
			} else {
				logf("%s: p50 %.2f ms, p99 %.2f ms, %d/%d receipts, %.0f receipts per CPU second, %.1f KiB per connection",
					peer, fr.Latency.P50, fr.Latency.P99, fr.Receipts, fr.Expected, fr.ReceiptsPerCPUSecond, fr.MemPerConn/1024)
			}
			res.Runs = append(res.Runs, fr)
		}
	}
	res.Host.LoadAvg = append(res.Host.LoadAvg, bench.LoadAvg())
	res.Finished = time.Now().UTC()
	res.Summary = summarize(res.Runs, sc.Peers)
	res.Ratios = peerRatios(res.Runs, sc.Peers)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}

func runPeerOnce(ctx context.Context, sc *FanoutScenario, o Options, dir string, fr *FanoutResult, logf func(string, ...any)) error {
	rdir := filepath.Join(dir, fr.Peer+"-"+strconv.Itoa(fr.Round))
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return err
	}
	ps, err := startPeer(ctx, fr.Peer, o, rdir)
	if err != nil {
		return err
	}
	defer ps.stop()
	fr.Version = ps.version
	pid := ps.pid
	run := &fanoutRun{sc: sc, drv: ps.drv, log: logf, server: &harness.ProcSampler{Read: func() (harness.ProcStat, error) { return harness.ReadProcStat(pid) }}}
	// Bound the run: setup at the connect rate, the send phase, the drain.
	bound := time.Duration(float64(sc.Subscribers)/sc.ConnectRate*float64(time.Second)) + sc.Duration.D() + sc.Drain.D() + sc.Settle.D() + 60*time.Second
	rctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	err = run.run(rctx, fr)
	if err == nil && fr.Receipts < fr.Expected {
		err = fmt.Errorf("%d of %d receipts (%.2f%%)", fr.Receipts, fr.Expected, 100*fr.Delivered())
	}
	return err
}

// complete runs of peer, by round.
func runsOf(runs []FanoutResult, peer string) map[int]*FanoutResult {
	out := map[int]*FanoutResult{}
	for i := range runs {
		if r := &runs[i]; r.Peer == peer && r.Error == "" {
			out[r.Round] = r
		}
	}
	return out
}

func summarize(runs []FanoutResult, peers []string) []PeerSummary {
	var out []PeerSummary
	for _, p := range peers {
		s := PeerSummary{Peer: p, MinDelivered: 1}
		var p50, p99, p999, mx, thr, mem, idle, conn, cpu, hcpu []float64
		for i := range runs {
			r := &runs[i]
			if r.Peer != p {
				continue
			}
			s.Version = r.Version
			s.MinDelivered = math.Min(s.MinDelivered, r.Delivered())
			if r.Error != "" {
				continue
			}
			s.Runs++
			p50, p99, p999, mx = append(p50, r.Latency.P50), append(p99, r.Latency.P99), append(p999, r.Latency.P999), append(mx, r.Latency.Max)
			thr, mem = append(thr, r.ReceiptsPerCPUSecond), append(mem, r.MemPerConn)
			idle, conn = append(idle, r.RSSIdle), append(conn, r.RSSConnected)
			cpu, hcpu = append(cpu, r.ServerCPUSeconds), append(hcpu, r.HarnessCPUSeconds)
		}
		s.P50, s.P99, s.P999, s.Max = medianOf(p50), medianOf(p99), medianOf(p999), medianOf(mx)
		s.ReceiptsPerCPUSecond, s.MemPerConn = medianOf(thr), medianOf(mem)
		s.RSSIdle, s.RSSConnected, s.ServerCPUSeconds, s.HarnessCPUSeconds = medianOf(idle), medianOf(conn), medianOf(cpu), medianOf(hcpu)
		out = append(out, s)
	}
	return out
}

// peerRatios compares Parley with every other peer, round by round.
func peerRatios(runs []FanoutResult, peers []string) []PeerRatio {
	if !slices.Contains(peers, PeerParley) {
		return nil
	}
	parley := runsOf(runs, PeerParley)
	var out []PeerRatio
	for _, p := range peers {
		if p == PeerParley {
			continue
		}
		var p99, thr, mem []float64
		for round, o := range runsOf(runs, p) {
			a, ok := parley[round]
			if !ok {
				continue
			}
			p99 = append(p99, ratio(a.Latency.P99, o.Latency.P99))
			thr = append(thr, ratio(a.ReceiptsPerCPUSecond, o.ReceiptsPerCPUSecond))
			mem = append(mem, ratio(a.MemPerConn, o.MemPerConn))
		}
		out = append(out, PeerRatio{Peer: p, P99: medianOf(p99), Throughput: medianOf(thr), Memory: medianOf(mem), Rounds: len(p99)})
	}
	return out
}

// ratio is a/b, or 0 when either is not positive (no figure to compare;
// JSON has no NaN).
func ratio(a, b float64) float64 {
	if !(a > 0 && b > 0) {
		return 0
	}
	return a / b
}

// medianOf is the median (the mean of the middle two for an even count),
// ignoring zeros (figures that could not be computed); 0 when none.
func medianOf(v []float64) float64 {
	w := make([]float64, 0, len(v))
	for _, x := range v {
		if x != 0 && !math.IsNaN(x) {
			w = append(w, x)
		}
	}
	if len(w) == 0 {
		return 0
	}
	slices.Sort(w)
	if n := len(w); n%2 == 0 {
		return (w[n/2-1] + w[n/2]) / 2
	}
	return w[len(w)/2]
}

// WriteJSON writes the result.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadResult reads a result written by Result.WriteJSON.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Version != 1 || r.Scenario == nil || r.Summary == nil {
		return nil, fmt.Errorf("%s: not a peers result (version %d)", path, r.Version)
	}
	return &r, nil
}

var errNoRuns = errors.New("no run completed")

// Err is nil when every run completed with every receipt.
func (r *Result) Err() error {
	var errs []error
	for _, f := range r.Runs {
		if f.Error != "" {
			errs = append(errs, fmt.Errorf("%s round %d: %s", f.Peer, f.Round, f.Error))
		}
	}
	if len(r.Runs) == 0 {
		errs = append(errs, errNoRuns)
	}
	return errors.Join(errs...)
}
