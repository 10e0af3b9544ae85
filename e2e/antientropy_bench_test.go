package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"parley/internal/eventually"
)

// The anti-entropy benchmarks of issue 4 (docs/benchmarks.md):
//
//	go test -run '^$' -bench AntiEntropyBytes -benchtime 3x -timeout 30m ./e2e/
//	go test -run '^$' -bench PartitionConvergence -benchtime 3x -timeout 30m ./e2e/

// bulkVisitor writes as one visitor with many frames in flight, through
// whichever node it is given, resending each message with the same id until
// it is acknowledged.
type bulkVisitor struct {
	ws  string
	vis map[string]any
}

func (bv *bulkVisitor) connect(t testing.TB, ctx context.Context, nd *nodeProc) *wsClient {
	t.Helper()
	cl, err := dialNode(ctx, nd)
	if err != nil {
		t.Fatal(err)
	}
	welcome, err := cl.hello(ctx, bv.ws, bv.vis)
	if err != nil {
		t.Fatal(err)
	}
	bv.vis = map[string]any{"visitor_id": welcome["visitor_id"], "visitor_sig": welcome["visitor_sig"]}
	return cl
}

// start starts n conversations, pipelined.
func (bv *bulkVisitor) start(t testing.TB, ctx context.Context, nd *nodeProc, n int) []string {
	t.Helper()
	cl := bv.connect(t, ctx, nd)
	defer cl.close()
	out := make([]string, 0, n)
	for i := 0; i < n; i += 256 {
		k := min(256, n-i)
		for j := range k {
			cl.send(ctx, map[string]any{"type": "start", "ref": fmt.Sprintf("s%d", i+j)})
		}
		for range k {
			m, err := cl.await(ctx, "started", nil)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m["conversation"].(string))
		}
	}
	return out
}

type bulkMsg struct{ conv, id string }

// send writes msgs through nd with up to 256 in flight and returns once
// every one is acknowledged.
func (bv *bulkVisitor) send(t testing.TB, ctx context.Context, nd *nodeProc, msgs []bulkMsg) {
	t.Helper()
	cl := bv.connect(t, ctx, nd)
	defer cl.close()
	byRef := map[string]bulkMsg{}
	try := 0
	put := func(m bulkMsg) {
		try++
		ref := fmt.Sprintf("r%d", try)
		byRef[ref] = m
		cl.send(ctx, map[string]any{"type": "send", "ref": ref, "conversation": m.conv, "id": m.id, "body": "anti-entropy benchmark message"})
	}
	next, retries := 0, 0
	for next < len(msgs) || len(byRef) > 0 {
		for next < len(msgs) && len(byRef) < 256 {
			put(msgs[next])
			next++
		}
		var m map[string]any
		select {
		case f, ok := <-cl.c.Frames():
			if !ok {
				t.Fatalf("connection to %s closed with %d sends unanswered", nd.Addr, len(byRef))
			}
			m = frameMap(f)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		ref := fmt.Sprint(m["ref"])
		if _, ok := byRef[ref]; !ok {
			continue
		}
		orig := byRef[ref]
		delete(byRef, ref)
		if m["type"] == "ack" {
			continue
		}
		if m["code"] != "unavailable" || retries > 10*len(msgs)+100 {
			t.Fatalf("send %s via %s: %v", orig.id, nd.Addr, m)
		}
		retries++
		time.Sleep(20 * time.Millisecond)
		put(orig)
	}
}

// aeBytes reads a node's anti-entropy counters: bytes by phase, and rounds.
func aeBytes(t testing.TB, nd *nodeProc) (map[string]float64, float64) {
	t.Helper()
	resp, err := http.Get(nd.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, m := range regexp.MustCompile(`(?m)^parley_antientropy_bytes_total\{phase="(\w+)"\} (\S+)$`).FindAllSubmatch(b, -1) {
		out[string(m[1])], _ = strconv.ParseFloat(string(m[2]), 64)
	}
	var rounds float64
	if m := regexp.MustCompile(`(?m)^parley_antientropy_rounds_total (\S+)$`).FindSubmatch(b); m != nil {
		rounds, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	return out, rounds
}

// frontiers is each node's vector of every conversation of ws, as strings.
func (tc *testCluster) frontiers(t testing.TB, nodes []*nodeProc, ws string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, nd := range nodes {
		var d struct {
			Conversations map[string]convDigest `json:"conversations"`
		}
		mustAPI(t, nd, "GET", "/v1/admin/workspaces/"+ws+"/digest", tc.root, nil, &d)
		f := map[string]string{}
		for c, cd := range d.Conversations {
			f[c] = replicationVectorString(cd.Vector) + " " + cd.State
		}
		out = append(out, f)
	}
	return out
}

// frontiersAgree holds once every node holds the same frontier of ws.
func (tc *testCluster) frontiersAgree(t testing.TB, ws string) func() error {
	return func() error {
		fs := tc.frontiers(t, tc.nodes, ws)
		if !sameFrontiers(fs) {
			var held []string
			for i, f := range fs {
				held = append(held, fmt.Sprintf("n%d: %d conversations", i+1, len(f)))
			}
			return fmt.Errorf("frontiers differ (%s)", strings.Join(held, ", "))
		}
		return nil
	}
}

func sameFrontiers(fs []map[string]string) bool {
	for _, f := range fs[1:] {
		if len(f) != len(fs[0]) {
			return false
		}
		for c, v := range fs[0] {
			if f[c] != v {
				return false
			}
		}
	}
	return true
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// aeBenchBinary is the node binary of these benchmarks: PARLEY_BENCH_BIN
// when set (to measure another build, such as the one before a change, in
// the same session), else the tree's, built without the race detector.
func aeBenchBinary() (string, error) {
	if bin := os.Getenv("PARLEY_BENCH_BIN"); bin != "" {
		return bin, nil
	}
	return benchBinary()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// BenchmarkAntiEntropyBytes measures the bytes anti-entropy exchanges to
// repair a replica that missed D messages, over a fixed total state: two
// node processes hold PARLEY_AE_CONVS conversations (default 4,000) of
// PARLEY_AE_PER_CONV messages each (default 3); n2 is stopped, n1 takes D
// messages in D distinct conversations (fewer when D exceeds them: then
// several per conversation), n2 restarts, and the bytes both nodes count
// (parley_antientropy_bytes_total, requests sent and replies received, by
// phase) from the restart until the two hold the same digests, after at
// least one round each way, are reported, medians of b.N repairs.
//
//	go test -run '^$' -bench AntiEntropyBytes -benchtime 3x -timeout 30m ./e2e/
func BenchmarkAntiEntropyBytes(b *testing.B) {
	bin, err := aeBenchBinary()
	if err != nil {
		b.Fatal(err)
	}
	convs, perConv := envInt("PARLEY_AE_CONVS", 4000), envInt("PARLEY_AE_PER_CONV", 3)
	tc := startClusterBin(b, bin, 2, "-log-level", "warn", "-frame-rate", "100000", "-workspace-rate", "100000")
	n1, n2 := tc.nodes[0], tc.nodes[1]
	mustAPI(b, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "business"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	bv := &bulkVisitor{ws: "acme"}
	start := time.Now()
	ids := bv.start(b, ctx, n1, convs)
	var msgs []bulkMsg
	for i := range perConv {
		for _, c := range ids {
			msgs = append(msgs, bulkMsg{c, fmt.Sprintf("m-base-%s-%d", c, i)})
		}
	}
	bv.send(b, ctx, n1, msgs)
	b.Logf("state: %d conversations, %d messages, written in %s", convs, len(msgs), time.Since(start).Round(time.Millisecond))
	eventually.Holds(b, 2*time.Minute, "the replicas converge on the initial state", tc.frontiersAgree(b, "acme"))
	written := 0
	for _, d := range []int{0, 1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("missed=%d", d), func(b *testing.B) {
			b.StopTimer()
			phases := map[string][]float64{}
			var totals, secs, rounds []float64
			for range b.N {
				n2.Stop()
				tc.waitAlive(b, n1, 1, 30*time.Second)
				var miss []bulkMsg
				for _, c := range rand.Perm(len(ids))[:min(d, len(ids))] {
					miss = append(miss, bulkMsg{ids[c], fmt.Sprintf("m-miss-%06d", written)})
					written++
				}
				for len(miss) < d {
					miss = append(miss, bulkMsg{ids[rand.IntN(len(ids))], fmt.Sprintf("m-miss-%06d", written)})
					written++
				}
				bv.send(b, ctx, n1, miss)
				before, r1 := aeBytes(b, n1)
				b.StartTimer()
				restarted := time.Now()
				n2.Restart(b)
				var conv time.Duration
				agree := tc.frontiersAgree(b, "acme")
				eventually.Holds(b, 2*time.Minute, fmt.Sprintf("n2 catches up on %d missed messages", d), func() error {
					if conv == 0 {
						if err := agree(); err != nil {
							return err
						}
						conv = time.Since(restarted)
					}
					_, ra := aeBytes(b, n1)
					_, rb := aeBytes(b, n2)
					if ra <= r1 || rb == 0 {
						return fmt.Errorf("anti-entropy rounds: n1 %v (%v before), n2 %v", ra, r1, rb)
					}
					return nil
				})
				b.StopTimer()
				after, ra := aeBytes(b, n1)
				other, rb := aeBytes(b, n2)
				total := 0.0
				for _, p := range []string{"buckets", "vectors", "range"} {
					v := after[p] - before[p] + other[p]
					phases[p] = append(phases[p], v)
					total += v
				}
				totals = append(totals, total)
				secs = append(secs, conv.Seconds())
				rounds = append(rounds, ra-r1+rb)
				tc.waitAlive(b, n1, 2, 30*time.Second)
			}
			for p, vs := range phases {
				b.ReportMetric(median(vs), p+"-B")
			}
			b.ReportMetric(median(totals), "total-B")
			b.ReportMetric(median(rounds), "rounds")
			b.ReportMetric(median(secs), "converge-s")
		})
	}
}

// BenchmarkPartitionConvergence measures how long replicas take to agree
// after a partition heals, against the number of conversations written on
// the cut-off side: three node processes in network namespaces (as
// TestPartitionHealsWithoutLoss), 1,000 conversations of one message each
// written before; n3 is cut off (iptables in its namespace), and once it
// has declared the others dead it takes one message in each of K of them;
// the time from removing the rules until the three nodes' digests (every
// conversation's vector and state) agree is reported, median of b.N.
//
//	go test -run '^$' -bench PartitionConvergence -benchtime 3x -timeout 30m ./e2e/
func BenchmarkPartitionConvergence(b *testing.B) {
	bin, err := aeBenchBinary()
	if err != nil {
		b.Fatal(err)
	}
	lab := newNetLab(b, 3)
	tc := startClusterOn(b, clusterSpec{bin: bin, n: 3, lab: lab,
		extra: []string{"-log-level", "warn", "-frame-rate", "100000", "-workspace-rate", "100000"}})
	n1, n3 := tc.nodes[0], tc.nodes[2]
	mustAPI(b, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "business"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	bv := &bulkVisitor{ws: "acme"}
	ids := bv.start(b, ctx, n1, 1000)
	var msgs []bulkMsg
	for _, c := range ids {
		msgs = append(msgs, bulkMsg{c, "m-base-" + c})
	}
	bv.send(b, ctx, n1, msgs)
	eventually.Holds(b, 2*time.Minute, "the replicas converge on the initial state", tc.frontiersAgree(b, "acme"))
	written := 0
	for _, k := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("conversations=%d", k), func(b *testing.B) {
			b.StopTimer()
			var secs []float64
			for range b.N {
				h, err := lab.Cut([]int{2})
				if err != nil {
					b.Fatal(err)
				}
				heal := func() {
					if err := h(); err != nil {
						b.Error(err)
					}
				}
				tc.waitAlive(b, n3, 1, 30*time.Second)
				tc.waitAlive(b, n1, 2, 30*time.Second)
				var miss []bulkMsg
				for _, c := range rand.Perm(len(ids))[:k] {
					miss = append(miss, bulkMsg{ids[c], fmt.Sprintf("m-cut-%06d", written)})
					written++
				}
				bv.send(b, ctx, n3, miss)
				b.StartTimer()
				heal()
				healed := time.Now()
				eventually.Holds(b, 3*time.Minute, fmt.Sprintf("replicas agree after healing (%d conversations written on the cut-off side)", k), tc.frontiersAgree(b, "acme"))
				secs = append(secs, time.Since(healed).Seconds())
				b.StopTimer()
				for _, nd := range tc.nodes {
					tc.waitAlive(b, nd, 3, 60*time.Second)
				}
			}
			b.ReportMetric(median(secs), "converge-s")
			b.ReportMetric(slices.Max(secs), "max-s")
		})
	}
}
