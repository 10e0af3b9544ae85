package peers

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"parley/bench"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFanoutPayload(t *testing.T) {
	for _, k := range []uint64{0, 1, 255, 1 << 40, math.MaxUint64} {
		p := fanoutPayload(nil, k, 100)
		if len(p) != 100 {
			t.Fatalf("len %d", len(p))
		}
		// Found inside any protocol's frame.
		for _, frame := range []string{`{"type":"deliver","message":{"body":"` + string(p) + `"}}`, "MSG room 1 100\r\n" + string(p) + "\r\n", string(p)} {
			got, ok := fanoutIndex([]byte(frame))
			if !ok || got != k {
				t.Fatalf("k %d: got %d %v from %q", k, got, ok, frame)
			}
		}
	}
	for _, bad := range []string{"", "~pb:", "~pb:0123456789abcdef", "~pb:0123456789abcdeX;", "~pb:0123456789abcdef:"} {
		if _, ok := fanoutIndex([]byte(bad)); ok {
			t.Errorf("%q taken for a payload", bad)
		}
	}
	if p := fanoutPayload(nil, 3, 5); len(p) != fanoutHeader {
		t.Fatalf("short size: %d bytes", len(p))
	}
}

func TestFanoutScenarioValidate(t *testing.T) {
	ok := FanoutScenario{Subscribers: 10, Rate: 10, Duration: bench.Duration(time.Second)}
	ok.Defaults()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(ok.Peers) != 3 || ok.Runs != 1 || ok.MessageSize != 128 || ok.Messages() != 10 {
		t.Fatalf("defaults %+v", ok)
	}
	for _, tc := range []struct {
		name string
		mod  func(*FanoutScenario)
		want string
	}{
		{"no subscribers", func(s *FanoutScenario) { s.Subscribers = 0 }, "subscribers"},
		{"no rate", func(s *FanoutScenario) { s.Rate = 0 }, "rate"},
		{"no duration", func(s *FanoutScenario) { s.Duration = 0 }, "duration"},
		{"tiny message", func(s *FanoutScenario) { s.MessageSize = 8 }, "message_size"},
		{"unknown peer", func(s *FanoutScenario) { s.Peers = []string{"kafka"} }, "unknown peer"},
		{"peer twice", func(s *FanoutScenario) { s.Peers = []string{"nats", "nats"} }, "twice"},
		{"too many runs", func(s *FanoutScenario) { s.Runs = 11 }, "runs"},
		{"unbounded receipts", func(s *FanoutScenario) { s.Subscribers, s.Rate, s.Duration = 50000, 10000, bench.Duration(time.Minute) }, "receipts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mod(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadFanoutScenarios(t *testing.T) {
	files, _ := filepath.Glob("../testdata/peers-*.yaml") // the scenarios live with the run scenarios, in bench/testdata
	if len(files) == 0 {
		t.Fatal("no peers scenarios")
	}
	for _, f := range files {
		if _, err := LoadFanoutScenario(f); err != nil {
			t.Error(err)
		}
	}
	p := filepath.Join(t.TempDir(), "x.yaml")
	os.WriteFile(p, []byte("subscribers: 1\nrate: 1\nduration: 1s\nsubscriber: 2\n"), 0o600)
	if _, err := LoadFanoutScenario(p); err == nil || !strings.Contains(err.Error(), "subscriber") {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestMedianAndRatio(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{0, 5, math.NaN()}, 5}} {
		if got := medianOf(tc.in); got != tc.want {
			t.Errorf("median %v = %g, want %g", tc.in, got, tc.want)
		}
	}
	if ratio(2, 4) != 0.5 || ratio(1, 0) != 0 || ratio(0, 1) != 0 {
		t.Error("ratio")
	}
}

func TestPeerRatios(t *testing.T) {
	run := func(peer string, round int, p99, thr, mem float64, err string) FanoutResult {
		f := FanoutResult{Peer: peer, Round: round, Latency: bench.Percentiles{P99: p99, P50: p99 / 2}, ReceiptsPerCPUSecond: thr, MemPerConn: mem, Error: err, Receipts: 10, Expected: 10}
		if err != "" {
			f.Receipts = 0
		}
		return f
	}
	runs := []FanoutResult{
		run("parley", 1, 10, 1000, 4000, ""), run("nats", 1, 5, 4000, 2000, ""), run("centrifugo", 1, 20, 500, 8000, ""),
		run("parley", 2, 12, 1200, 4000, ""), run("nats", 2, 6, 3000, 2000, ""), run("centrifugo", 2, 0, 0, 0, "crashed"),
		// Round 3: the machine got busy; both slow down, ratios hold.
		run("parley", 3, 40, 600, 4000, ""), run("nats", 3, 20, 2400, 2000, ""),
	}
	rs := peerRatios(runs, []string{"parley", "nats", "centrifugo"})
	if len(rs) != 2 {
		t.Fatalf("%+v", rs)
	}
	n, c := rs[0], rs[1]
	if n.Peer != "nats" || n.Rounds != 3 || n.P99 != 2 || n.Throughput != 0.25 || n.Memory != 2 {
		t.Fatalf("nats %+v", n)
	}
	// Only round 1 completed for centrifugo.
	if c.Rounds != 1 || c.P99 != 0.5 || c.Throughput != 2 || c.Memory != 0.5 {
		t.Fatalf("centrifugo %+v", c)
	}
	if peerRatios(runs, []string{"nats"}) != nil {
		t.Fatal("ratios without parley")
	}
	sum := summarize(runs, []string{"parley", "centrifugo"})
	if sum[0].Runs != 3 || sum[0].P99 != 12 || sum[0].ReceiptsPerCPUSecond != 1000 {
		t.Fatalf("parley summary %+v", sum[0])
	}
	if sum[1].Runs != 1 || sum[1].MinDelivered != 0 {
		t.Fatalf("centrifugo summary %+v", sum[1])
	}
	res := &Result{Version: 1, Name: "x", Scenario: &FanoutScenario{Peers: []string{"parley", "nats", "centrifugo"}, Runs: 3}, Runs: runs, Summary: sum, Ratios: rs}
	if err := res.Err(); err == nil || !strings.Contains(err.Error(), "crashed") {
		t.Fatalf("Err %v", err)
	}
	path := filepath.Join(t.TempDir(), "peers.json")
	if err := res.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadResult(path)
	if err != nil || len(back.Runs) != len(runs) || back.Ratios[0] != rs[0] {
		t.Fatalf("read back: %v %+v", err, back)
	}
	// A run result is not a peers result.
	other := filepath.Join(t.TempDir(), "run.json")
	(&bench.Result{Version: 1, Name: "r", Scenario: &bench.Scenario{Name: "r"}}).WriteJSON(other)
	if _, err := ReadResult(other); err == nil {
		t.Fatal("a run result read as a peers result")
	}
}

// TestFanoutAgainstParley builds the node and runs the fan-out against it
// (no peers): every subscriber gets every message, latency, CPU and
// memory figures are measured from the node process; with the JSON of
// each deliver frame read by the subscribers' reader, decoded by
// encoding/json, and searched for its payload (Options.ParleyParse).
func TestFanoutAgainstParley(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a node")
	}
	bin := filepath.Join(t.TempDir(), "parley")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/parley").CombinedOutput(); err != nil {
		t.Fatalf("building the node: %v\n%s", err, out)
	}
	for _, parse := range []string{ParseReader, ParseJSON, ParseSearch} {
		t.Run(fmt.Sprintf("parse=%q", parse), func(t *testing.T) { fanoutAgainstParley(t, bin, parse) })
	}
}

func fanoutAgainstParley(t *testing.T, bin string, parse string) {
	sc := &FanoutScenario{Name: "t", Subscribers: 40, Rate: 50, Duration: bench.Duration(2 * time.Second), Settle: bench.Duration(300 * time.Millisecond), Drain: bench.Duration(5 * time.Second), Peers: []string{PeerParley}}
	sc.Defaults()
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := Run(ctx, sc, Options{Parley: bin, Log: t.Logf, ParleyParse: parse})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	f := res.Runs[0]
	if f.Connected != 40 || f.Published != 100 || f.Receipts != 4000 || f.Complete != 100 || f.Overdelivered != 0 {
		t.Fatalf("counts %+v", f)
	}
	if f.Latency.Count != 4000 || f.Latency.P50 <= 0 || f.Latency.P99 < f.Latency.P50 || f.Latency.Max > 5000 {
		t.Fatalf("latency %+v", f.Latency)
	}
	if f.ServerCPUSeconds <= 0 || f.ReceiptsPerCPUSecond <= 0 || f.RSSIdle <= 0 || f.RSSConnected <= 0 || len(f.Server) == 0 {
		t.Fatalf("server figures: cpu %g, per cpu %g, rss %g → %g, %d samples", f.ServerCPUSeconds, f.ReceiptsPerCPUSecond, f.RSSIdle, f.RSSConnected, len(f.Server))
	}
	var sum int64
	for _, iv := range f.Timeline {
		sum += iv.Receipts
	}
	if sum != f.Receipts {
		t.Fatalf("timeline holds %d receipts of %d", sum, f.Receipts)
	}
	if len(res.Summary) != 1 || res.Summary[0].Runs != 1 || len(res.Ratios) != 0 {
		t.Fatalf("summary %+v ratios %+v", res.Summary, res.Ratios)
	}
}

// TestFanoutPeers runs the fan-out against NATS and Centrifugo as well,
// when PARLEY_PEER_TESTS names the directory holding their binaries (make
// bench-peers sets it); not part of make test.
func TestFanoutPeers(t *testing.T) {
	dir := os.Getenv("PARLEY_PEER_TESTS")
	if dir == "" {
		t.Skip("PARLEY_PEER_TESTS unset: the peer binaries are built and tested by make bench-peers")
	}
	for _, b := range []string{"nats-server", "centrifugo"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Skipf("%s not in %s", b, dir)
		}
	}
	bin := filepath.Join(t.TempDir(), "parley")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/parley").CombinedOutput(); err != nil {
		t.Fatalf("building the node: %v\n%s", err, out)
	}
	sc := &FanoutScenario{Name: "t", Subscribers: 30, Rate: 40, Duration: bench.Duration(2 * time.Second), Settle: bench.Duration(300 * time.Millisecond)}
	sc.Defaults()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, sc, Options{Parley: bin, PeersDir: dir, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Runs {
		if f.Receipts != 30*80 || f.Complete != 80 || f.Latency.P99 <= 0 || f.MemPerConn == 0 || f.ServerCPUSeconds <= 0 {
			t.Errorf("%s: %d receipts, %d complete, p99 %g, mem/conn %g, cpu %g", f.Peer, f.Receipts, f.Complete, f.Latency.P99, f.MemPerConn, f.ServerCPUSeconds)
		}
	}
	if len(res.Ratios) != 2 || res.Ratios[0].Rounds != 1 || res.Ratios[0].P99 <= 0 || res.Ratios[1].Throughput <= 0 {
		t.Errorf("ratios %+v", res.Ratios)
	}
}
