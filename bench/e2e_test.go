package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunAgainstRealNode builds the node, starts it as a local cluster of
// one, and runs a short scenario with a reconnect storm and a kill -9 and
// restart of the node: every acknowledged message must reach both agents
// once and be in the node's history once.
func TestRunAgainstRealNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a node")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "parley")
	build := exec.Command("go", "build", "-o", bin, "../cmd/parley")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the node: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := StartLocal(ctx, LocalOptions{Bin: bin, Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()

	sc, err := ParseScenario([]byte(`
name: e2e
visitors: 12
agents: 2
conversations: 16
rate: 200
duration: 5s
ramp_up: 500ms
message_size: 100
drain: 10s
reconnect_storms: [{at: 3500ms, fraction: 0.5, over: 300ms}]
faults: [{at: 1500ms, action: kill, node: 0, restart_after: 500ms}]
`))
	if err != nil {
		t.Fatal(err)
	}
	sc.Target.Nodes, sc.Target.AgentToken = cl.URLs(), cl.Token
	res, err := Run(ctx, sc, Options{Cluster: cl})
	if err != nil {
		t.Fatalf("run: %v\nnode log: %s", err, cl.Logs(2000)["n1"])
	}
	a := res.Accounting
	t.Logf("%s %s", res.Verdict, res.AuditError)
	t.Logf("accounting %+v", a)
	t.Logf("counts %+v errors %v events %v", res.Counts, res.Errors, res.Events)
	if a.Issued < 800 || a.Acked != a.Issued {
		t.Errorf("issued %d, acked %d: every message should be acknowledged after the restart", a.Issued, a.Acked)
	}
	if a.Delivered != a.Acked || a.Lost != 0 || a.Duplicated != 0 || !a.Audited {
		t.Errorf("not every acknowledged message delivered exactly once: %+v", a)
	}
	if !strings.HasPrefix(res.Verdict, "OK") {
		t.Errorf("verdict %q", res.Verdict)
	}
	if res.Counts.Reconnects < 14 || res.Counts.Resumes == 0 {
		t.Errorf("the kill and the storm should have made every client reconnect and resume: %+v", res.Counts)
	}
	var kills, restarts int
	for _, e := range res.Events {
		kills += strings.Count(e.What, "kill -9")
		restarts += strings.Count(e.What, "restarted")
	}
	if kills != 1 || restarts != 1 {
		t.Errorf("events %v", res.Events)
	}
	if e2e := res.Latency["e2e"]; e2e.Count != int64(2*a.Acked) || e2e.P50 <= 0 || e2e.Max < e2e.P99 {
		t.Errorf("e2e latency %+v for %d acked messages and 2 agents", e2e, a.Acked)
	}
	if len(res.NodeMetrics) != 1 || res.NodeMetrics[0].PeakConns < 14 || res.NodeMetrics[0].Failed == 0 {
		t.Errorf("node metrics: peak conns %v, failed scrapes %d (the node was down)", res.NodeMetrics[0].PeakConns, res.NodeMetrics[0].Failed)
	}
	if len(res.Timeline) < 4 {
		t.Errorf("timeline of %d seconds", len(res.Timeline))
	}
	jp, hp := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	if err := res.WriteJSON(jp); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteHTML(hp); err != nil {
		t.Fatal(err)
	}
	back, err := ReadResult(jp)
	if err != nil || back.Accounting.Delivered != a.Delivered {
		t.Errorf("result round trip: %v", err)
	}
	if b, _ := os.ReadFile(hp); !strings.Contains(string(b), "<svg") {
		t.Error("no plots in the report")
	}
}
