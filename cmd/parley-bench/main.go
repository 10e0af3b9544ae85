// Command parley-bench drives Parley nodes with virtual visitors and agents
// and reports what it measured.
//
//	parley-bench run [flags] scenario.yaml     run a scenario (against its target, or --local N nodes)
//	parley-bench validate scenario.yaml        check a scenario file
//	parley-bench compare a.json b.json         ratios of the main figures of two results
//	parley-bench report result.json [out.html] render a result's HTML report again
//	parley-bench peers [flags] peers.yaml      the same fan-out against Parley, NATS and Centrifugo
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"parley/bench"
	"parley/bench/peers"
	"parley/bench/report"
	"parley/internal/localcluster"
)

const usage = `usage:
  parley-bench run [flags] scenario.yaml
  parley-bench validate scenario.yaml...
  parley-bench compare a.json b.json
  parley-bench report result.json [out.html]
  parley-bench peers [-only parley,nats,centrifugo] [-runs N] [-peers-dir DIR] [-parley-json | -parley-search] [-centrifugo-json] [-cpuprofile FILE] [-o out.json] peers.yaml

run flags:
`

func main() {
	// A closed pipe on stdout (parley-bench run … | head) must not kill the
	// harness before it stops its local nodes.
	signal.Ignore(syscall.SIGPIPE)
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		runFlags(nil).PrintDefaults()
		os.Exit(2)
	}
	var err error
	code := 0
	switch os.Args[1] {
	case "run":
		code, err = cmdRun(os.Args[2:])
	case "validate":
		err = cmdValidate(os.Args[2:])
	case "compare":
		err = cmdCompare(os.Args[2:])
	case "report":
		err = cmdReport(os.Args[2:])
	case "peers":
		code, err = cmdPeers(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		runFlags(nil).SetOutput(os.Stdout)
		runFlags(nil).PrintDefaults()
		return
	default:
		err = fmt.Errorf("unknown command %q\n%s", os.Args[1], usage)
		code = 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley-bench:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

type runOpts struct {
	local    int
	regions  string
	parley   string
	nodeArgs stringList
	out      string
	html     string
	keep     bool
	quiet    bool
	ledger   string
	cpuprof  string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runFlags(o *runOpts) *flag.FlagSet {
	if o == nil {
		o = &runOpts{}
	}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.IntVar(&o.local, "local", 0, "start N local parley nodes on loopback (temp data dirs, raised limits; N ≥ 2: a real cluster), run against them, stop them")
	fs.StringVar(&o.parley, "parley", "bin/parley", "node binary for --local")
	fs.StringVar(&o.regions, "regions", "", "regions of a --local cluster (N ≥ 2), comma-separated, given to the nodes round robin (default r0,r1,r2)")
	fs.Var(&o.nodeArgs, "node-arg", "extra argument for every local node (repeatable)")
	fs.StringVar(&o.out, "o", "", "result JSON path (default bench-results/NAME-TIME.json)")
	fs.StringVar(&o.html, "html", "", "HTML report path (default: the JSON path with .html)")
	fs.BoolVar(&o.keep, "keep", false, "keep local nodes' data directories and logs")
	fs.BoolVar(&o.quiet, "q", false, "no live progress line")
	fs.StringVar(&o.ledger, "ledger", "", "write every message's fate (acked seq, per-agent seq, stored) as CSV to this path")
	fs.StringVar(&o.cpuprof, "cpuprofile", "", cpuprofileHelp)
	return fs
}

// parseInterleaved lets flags come before or after the positional
// arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func cmdRun(args []string) (int, error) {
	var o runOpts
	fs := runFlags(&o)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2, err
	}
	if len(pos) != 1 {
		return 2, errors.New("run: want exactly one scenario file")
	}
	sc, err := bench.LoadScenario(pos[0])
	if err != nil {
		return 2, err
	}
	stopProfile, err := startCPUProfile(o.cpuprof)
	if err != nil {
		return 1, err
	}
	defer stopProfile()
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }

	// Open-files limit: clients, idle connections, and (inherited) local nodes.
	need := uint64(sc.Visitors+sc.Agents) + 4096
	if sc.Idle != nil {
		need += uint64(sc.Idle.Connections)
	}
	if lim, err := bench.RaiseNoFile(need); err != nil {
		logf("warning: %v (limit %d)", err, lim)
	}

	// First SIGINT/SIGTERM: stop cleanly with a partial report. Second: kill
	// local nodes and leave at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var cluster *localcluster.Cluster
	go func() {
		<-sigs
		logf("\nstopping: finishing with a partial report (interrupt again to abort)")
		cancel()
		<-sigs
		if cluster != nil {
			for i := range cluster.Nodes {
				_ = cluster.Kill(i)
			}
			if cluster.Lab != nil {
				_ = cluster.Lab.Close()
			}
		}
		os.Exit(130)
	}()

	if o.local > 0 {
		sctx, scancel := context.WithTimeout(ctx, 2*time.Minute)
		lo := bench.LocalOptions{Bin: o.parley, Nodes: o.local, NodeArgs: o.nodeArgs, Keep: o.keep, Log: logf,
			Isolate: sc.HasPartition()}
		if o.regions != "" {
			lo.Regions = strings.Split(o.regions, ",")
		}
		cluster, err = bench.StartLocal(sctx, lo)
		scancel()
		if err != nil {
			return 1, err
		}
		defer func() {
			cluster.Stop()
			if o.keep {
				logf("node data and logs kept in %s", cluster.Dir)
			}
		}()
		if len(sc.Target.Nodes) > 0 {
			logf("--local: ignoring target.nodes %v", sc.Target.Nodes)
		}
		sc.Target.Nodes = cluster.URLs()
		sc.Target.AgentToken, sc.Target.AgentTokenEnv = cluster.Token, ""
	}

	opts := bench.Options{Cluster: cluster}
	if !o.quiet {
		opts.Progress = os.Stderr
	}
	if o.ledger != "" {
		f, err := os.Create(o.ledger)
		if err != nil {
			return 1, err
		}
		defer f.Close()
		opts.LedgerCSV = f
	}
	res, runErr := bench.Run(ctx, sc, opts)
	if res == nil {
		return 1, runErr
	}
	if runErr != nil && cluster != nil {
		for id, l := range cluster.Logs(1500) {
			if strings.TrimSpace(l) != "" {
				logf("--- node %s log (tail) ---\n%s", id, l)
			}
		}
	}
	jsonPath, htmlPath := outPaths(o, sc.Name)
	if err := os.MkdirAll(filepath.Dir(jsonPath), 0o755); err != nil {
		return 1, err
	}
	if err := res.WriteJSON(jsonPath); err != nil {
		return 1, err
	}
	if err := os.MkdirAll(filepath.Dir(htmlPath), 0o755); err != nil {
		return 1, err
	}
	if err := report.WriteRunFile(htmlPath, res); err != nil {
		return 1, err
	}
	printSummary(res)
	fmt.Printf("result: %s\nreport: %s\n", jsonPath, htmlPath)
	switch {
	case res.Stopped == "interrupted":
		return 130, nil
	case runErr != nil:
		return 1, runErr
	case !strings.HasPrefix(res.Verdict, "OK"):
		return 1, nil
	}
	return 0, nil
}

func outPaths(o runOpts, name string) (string, string) {
	j := o.out
	if j == "" {
		safe := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
				return r
			}
			return '-'
		}, name)
		j = filepath.Join("bench-results", safe+"-"+time.Now().Format("20060102-150405")+".json")
	}
	h := o.html
	if h == "" {
		h = strings.TrimSuffix(j, ".json") + ".html"
	}
	return j, h
}

func printSummary(r *bench.Result) {
	fmt.Println(r.Verdict)
	if r.Scenario != nil && r.Issued > 0 {
		fmt.Printf("  load: %d messages over %.1fs (target %g/s): acked %.0f/s, agent receipts %.0f/s\n",
			r.Issued, r.SendSeconds, r.Scenario.Rate, r.Throughput.AckedPerSec, r.Throughput.DeliveredPerSec)
	}
	for _, m := range []string{"e2e", "ack", "send_lag", "connect"} {
		p := r.Latency[m]
		if p.Count == 0 {
			continue
		}
		fmt.Printf("  %-8s n=%-8d p50 %8.3fms  p90 %8.3fms  p99 %8.3fms  p99.9 %8.3fms  max %8.3fms\n", m, p.Count, p.P50, p.P90, p.P99, p.P999, p.Max)
	}
	if len(r.Transports) > 1 {
		names := make([]string, 0, len(r.Transports))
		for n := range r.Transports {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			t := r.Transports[n]
			fmt.Printf("  %s: %d clients; connect p50 %.3fms p99 %.3fms; ack p50 %.3fms p99 %.3fms; e2e p50 %.3fms p99 %.3fms; reconnects %d, connect failures %d; errors %v\n",
				n, t.Clients, t.Connect.P50, t.Connect.P99, t.Ack.P50, t.Ack.P99, t.E2E.P50, t.E2E.P99, t.Reconnects, t.ConnectFailures, t.Errors)
		}
	}
	a := r.Accounting
	if a.Issued > 0 {
		fmt.Printf("  messages: issued %d, acked %d, delivered %d, lost %d, duplicated %d, diverged %d, altered %d, unacked %d, redelivered %d, audited %v\n",
			a.Issued, a.Acked, a.Delivered, a.Lost, a.Duplicated, a.Diverged, a.Altered, a.Unacked, a.Redelivered, a.Audited)
	}
	if a.Audited {
		fmt.Printf("  audit of %d node(s): %d deliver frames, %d ids in several frames of one state, at most %d frames of one id; missing %d, in two states %d, shown edited %d (message × node); ts differs %d (message × node), order differs %d of %d conversations × nodes\n",
			a.AuditedNodes, a.HistoryFrames, a.HistoryRepeatedIDs, a.HistoryMaxFrames, a.LostInStore, a.DuplicatedInStore, a.HistoryAltered,
			a.TSMismatches, a.OrderMismatches, a.ConversationsCompared*max(a.AuditedNodes-1, 0))
	}
	if a.Agents > 0 && a.Acked > 0 {
		fmt.Printf("  agents: missing %d (message × agent); received again in the same state %d, with another ts %d, with the same ts and another body %d\n",
			a.LostAtAgents, a.AgentRepeatsSameState, a.AgentRepeatsOtherTS, a.AgentRepeatsOtherBody)
	}
	for i, d := range a.Details {
		if i == 5 {
			fmt.Printf("  … %d more examples in the result\n", len(a.Details)-i)
			break
		}
		fmt.Printf("  %s\n", d)
	}
	if len(a.OrderExamples) > 0 {
		fmt.Printf("  order differs: %s\n", strings.Join(a.OrderExamples, "; "))
	}
	c := r.Counts
	fmt.Printf("  connections: reconnects %d, connect failures %d, resumes %d, drops %d, failovers %d; errors %d %v\n", c.Reconnects, c.ConnectFailures, c.Resumes, c.Drops, c.Failovers, c.Errors, r.Errors)
	for _, n := range r.NodeMetrics {
		fmt.Printf("  node %s: CPU %.1fs in the send phase, peak RSS %.1f MiB, peak connections %.0f\n", n.Node, n.CPUSecondsSend, n.PeakRSS/(1<<20), n.PeakConns)
	}
	for _, n := range r.NodeMetrics {
		if h, ok := n.Histograms["parley_store_commit_seconds"]; ok && h.Count > 0 {
			fmt.Printf("  node store commits: %.0f, mean %.2fms, p50 %.2fms, p99 %.2fms (its own histogram); mean batch %.1f\n", h.Count, h.Mean, h.P50, h.P99, n.Histograms["parley_store_batch_size"].Mean)
		}
	}
	if r.Harness.CPUSecondsSend > 0 {
		fmt.Printf("  harness: CPU %.1fs in the send phase, peak RSS %.1f MiB\n", r.Harness.CPUSecondsSend, r.Harness.PeakRSS/(1<<20))
	}
	if r.AckedPerCPUSecond > 0 {
		fmt.Printf("  %.0f acked messages per node CPU second\n", r.AckedPerCPUSecond)
	}
	if id := r.Idle; id != nil {
		fmt.Printf("  idle: %d/%d open (%d failed) in %.1fs; node RSS %.1f → %.1f MiB = %.2f KiB per connection (heap %.2f KiB); goroutines %.0f → %.0f; harness RSS %.0f MiB\n",
			id.Opened, id.Requested, id.Failed, id.OpenSeconds, id.RSSBefore/(1<<20), id.RSSAfter/(1<<20), id.RSSPerConn/1024, id.HeapPerConn/1024,
			id.GoroutinesBefore, id.GoroutinesAfter, id.HarnessRSS/(1<<20))
	}
	for _, e := range r.Events {
		fmt.Printf("  event %6.1fs %s\n", e.T, e.What)
	}
}

func cmdValidate(args []string) error {
	if len(args) == 0 {
		return errors.New("validate: want scenario files")
	}
	var errs []error
	for _, p := range args {
		sc, err := bench.LoadScenario(p)
		if err != nil {
			// A peers scenario (parley-bench peers) has its own fields.
			if fs, ferr := peers.LoadFanoutScenario(p); ferr == nil {
				fmt.Printf("%s: ok (peers %s: %d subscribers, %d messages over %s, %v, %d rounds)\n", p, fs.Name, fs.Subscribers, fs.Messages(), fs.Duration, fs.Peers, fs.Runs)
				continue
			}
			errs = append(errs, err)
			continue
		}
		fmt.Printf("%s: ok (%s: %d visitors, %d agents, %d conversations, %d messages over %s)\n", p, sc.Name, sc.Visitors, sc.Agents, sc.Conversations, sc.TotalMessages(), sc.Duration)
	}
	return errors.Join(errs...)
}

func cmdCompare(args []string) error {
	if len(args) != 2 {
		return errors.New("compare: want two result files: a.json b.json")
	}
	a, err := bench.ReadResult(args[0])
	if err != nil {
		return err
	}
	b, err := bench.ReadResult(args[1])
	if err != nil {
		return err
	}
	return report.WriteComparison(os.Stdout, a, b, args[0], args[1])
}

func cmdReport(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return errors.New("report: want result.json [out.html]")
	}
	out := strings.TrimSuffix(args[0], ".json") + ".html"
	if len(args) == 2 {
		out = args[1]
	}
	// A peers result (parley-bench peers) has its own report.
	if pr, err := peers.ReadResult(args[0]); err == nil {
		if err := report.WritePeersFile(out, pr); err != nil {
			return err
		}
		fmt.Println(out)
		return nil
	}
	r, err := bench.ReadResult(args[0])
	if err != nil {
		return err
	}
	if err := report.WriteRunFile(out, r); err != nil {
		return err
	}
	fmt.Println(out)
	return nil
}

// cpuprofileHelp is the -cpuprofile flag's help, shared by run and peers.
const cpuprofileHelp = "write the harness's own CPU profile (pprof) for the whole command to this path: where the harness, which shares the node's cores, spends its CPU (go tool pprof -top bin/parley-bench FILE)"

// startCPUProfile profiles this process's CPU into path until the
// returned stop is called; with path "", it does nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "parley-bench: cpuprofile:", err)
		}
	}, nil
}
