package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"parley/bench/peers"
	"parley/bench/report"
)

type peersOpts struct {
	parley   string
	peersDir string
	out      string
	html     string
	only     string
	runs     int
	search   bool
	json     bool
	centJSON bool
	cpuprof  string
}

func peersFlags(o *peersOpts) *flag.FlagSet {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.StringVar(&o.parley, "parley", "bin/parley", "Parley node binary")
	fs.StringVar(&o.peersDir, "peers-dir", peers.DefaultPeersDir(), "directory with nats-server and centrifugo (make bench-peers builds them; $PEERS_DIR)")
	fs.StringVar(&o.out, "o", "", "result JSON path (default bench-results/NAME-TIME.json)")
	fs.StringVar(&o.html, "html", "", "HTML report path (default: the JSON path with .html)")
	fs.StringVar(&o.only, "only", "", "comma-separated peers to run instead of the scenario's (parley,nats,centrifugo)")
	fs.IntVar(&o.runs, "runs", 0, "rounds instead of the scenario's runs")
	fs.BoolVar(&o.json, "parley-json", false, "Parley's subscribers decode each deliver frame with encoding/json, as a Go client of the wire protocol would, instead of the default hand-written exact reader of the message's body (the subscribers share the server's cores: the default costs them about what NATS's hand-parsed MSG lines cost, so that neither server is charged for its protocol's client library)")
	fs.BoolVar(&o.search, "parley-search", false, "Parley's subscribers find each payload by a byte search of the deliver frame, no parse at all")
	fs.BoolVar(&o.centJSON, "centrifugo-json", false, "Centrifugo's subscribers decode each reply with encoding/json instead of the default hand-written exact reader of pings and publications")
	fs.StringVar(&o.cpuprof, "cpuprofile", "", cpuprofileHelp)
	return fs
}

// cmdPeers runs the fan-out scenario against Parley, NATS and Centrifugo
// in turn and writes the side-by-side result and report.
func cmdPeers(args []string) (int, error) {
	var o peersOpts
	fs := peersFlags(&o)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2, err
	}
	if len(pos) != 1 {
		return 2, errors.New("peers: want one scenario file (bench/testdata/peers-1k.yaml)")
	}
	sc, err := peers.LoadFanoutScenario(pos[0])
	if err != nil {
		return 1, err
	}
	if o.only != "" {
		sc.Peers = strings.Split(o.only, ",")
	}
	if o.runs > 0 {
		sc.Runs = o.runs
	}
	if err := sc.Validate(); err != nil {
		return 2, err
	}
	parse := peers.ParseReader
	switch {
	case o.json && o.search:
		return 2, errors.New("peers: -parley-json and -parley-search exclude each other")
	case o.json:
		parse = peers.ParseJSON
	case o.search:
		parse = peers.ParseSearch
	}
	stopProfile, err := startCPUProfile(o.cpuprof)
	if err != nil {
		return 1, err
	}
	defer stopProfile()
	logf := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", a...)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, runErr := peers.Run(ctx, sc, peers.Options{Parley: o.parley, PeersDir: o.peersDir, Log: logf, ParleyParse: parse, CentrifugoJSON: o.centJSON})
	if res == nil {
		return 1, runErr
	}
	jsonPath, htmlPath := outPaths(runOpts{out: o.out, html: o.html}, sc.Name)
	for _, p := range []string{jsonPath, htmlPath} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return 1, err
		}
	}
	if err := res.WriteJSON(jsonPath); err != nil {
		return 1, err
	}
	if err := report.WritePeersFile(htmlPath, res); err != nil {
		return 1, err
	}
	for _, s := range res.Summary {
		fmt.Printf("%-10s %d runs  p50 %7.2f ms  p99 %7.2f ms  %9.0f receipts/CPU s  %6.1f KiB/conn\n",
			s.Peer, s.Runs, s.P50, s.P99, s.ReceiptsPerCPUSecond, s.MemPerConn/1024)
	}
	for _, x := range res.Ratios {
		fmt.Printf("parley ÷ %-10s p99 %.2f×  receipts/CPU s %.2f×  memory/conn %.2f×  (%d rounds)\n", x.Peer, x.P99, x.Throughput, x.Memory, x.Rounds)
	}
	fmt.Printf("result: %s\nreport: %s\n", jsonPath, htmlPath)
	if runErr != nil {
		return 1, runErr
	}
	if err := res.Err(); err != nil {
		return 1, err
	}
	return 0, nil
}
