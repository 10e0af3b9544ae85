package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/internal/localcluster"
)

// buildNode builds the node binary (without the race detector: it is the
// system under test, not the harness) into the test's temporary directory.
// PARLEY_BENCH_NODE names a binary to test instead (another build of the
// node), which is not built.
func buildNode(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("PARLEY_BENCH_NODE"); bin != "" {
		t.Logf("node binary from PARLEY_BENCH_NODE: %s", bin)
		return bin
	}
	bin := filepath.Join(t.TempDir(), "parley")
	if err := localcluster.Build(context.Background(), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// checkAllDelivered fails the test unless every issued message was
// acknowledged, delivered to every agent once, and stored once on every
// audited node.
func checkAllDelivered(t *testing.T, res *Result, minIssued, nodes int) {
	t.Helper()
	a := res.Accounting
	t.Logf("%s %s", res.Verdict, res.AuditError)
	t.Logf("accounting %+v", a)
	t.Logf("counts %+v errors %v events %v", res.Counts, res.Errors, res.Events)
	if a.Issued < minIssued || a.Acked != a.Issued {
		t.Errorf("issued %d, acked %d: every message should be acknowledged in the end", a.Issued, a.Acked)
	}
	if a.Delivered != a.Acked || a.Lost != 0 || a.Duplicated != 0 || !a.Audited || a.AuditedNodes != nodes {
		t.Errorf("not every acknowledged message delivered exactly once and stored once on each of %d nodes: %+v", nodes, a)
	}
	if a.Diverged != 0 || a.TSMismatches != 0 || a.OrderMismatches != 0 || (nodes > 1 && a.ConversationsCompared == 0) {
		t.Errorf("the nodes disagree: %d messages diverged, %d (message, node) pairs with another ts, %d of %d conversations × nodes in another order",
			a.Diverged, a.TSMismatches, a.OrderMismatches, a.ConversationsCompared*(nodes-1))
	}
	if !strings.HasPrefix(res.Verdict, "OK") {
		t.Errorf("verdict %q", res.Verdict)
	}
	if e2e := res.Latency["e2e"]; e2e.Count != int64(a.Agents*a.Acked) {
		t.Errorf("e2e latency of %d receipts for %d acked messages and %d agents", e2e.Count, a.Acked, a.Agents)
	}
}

// events counts the run's events whose text contains each of what.
func countEvents(res *Result, what string) int {
	n := 0
	for _, e := range res.Events {
		n += strings.Count(e.What, what)
	}
	return n
}

// TestRunAgainstRealNode builds the node, starts it as a local cluster of
// one, and runs a short scenario with a reconnect storm and a kill -9 and
// restart of the node: every acknowledged message must reach both agents
// once and be in the node's history once.
func TestRunAgainstRealNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a node")
	}
	dir := t.TempDir()
	bin := buildNode(t)
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
	if err := WriteHTMLHook(hp, res); err != nil {
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

// TestRunOnClusterWithFaults starts a real 3-node cluster (one key, node 0
// bootstraps, the others join, regions r0 r1 r2), spreads WebSocket and
// WebTransport clients over the nodes, kills a node with SIGKILL and
// restarts it, and, as root, cuts another node off for 3 s and heals:
// every acknowledged message must reach every agent (on every node) once
// and be stored once on every node. Without root (or ip), the partition is
// left out, and said so.
func TestRunOnClusterWithFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a 3-node cluster")
	}
	bin := buildNode(t)
	partition := localcluster.NetLabAvailable() == nil
	faults := "faults:\n  - {at: 1500ms, action: kill, node: 1, restart_after: 1s}\n"
	if partition {
		faults += "  - {at: 6s, action: partition, nodes: [2], heal_after: 3s}\n"
	} else {
		t.Logf("no partition fault: %v", localcluster.NetLabAvailable())
	}
	sc, err := ParseScenario([]byte(`
name: cluster-e2e
visitors: 9
agents: 3
conversations: 9
rate: 100
duration: 11s
ramp_up: 500ms
message_size: 100
drain: 15s
transports: {ws: 1, wt: 1}
` + faults))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cl, err := StartLocal(ctx, LocalOptions{Bin: bin, Nodes: 3, Isolate: sc.HasPartition(), Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	if partition && (cl.Lab == nil || !strings.HasPrefix(cl.Nodes[2].Addr, "10.77.")) {
		t.Fatalf("nodes not isolated: %v", cl.URLs())
	}
	sc.Target.Nodes, sc.Target.AgentToken = cl.URLs(), cl.Token
	res, err := Run(ctx, sc, Options{Cluster: cl})
	if err != nil {
		t.Fatalf("run: %v\nlogs: %v", err, cl.Logs(2000))
	}
	checkAllDelivered(t, res, 900, 3)
	if countEvents(res, "kill -9 n2") != 1 || countEvents(res, "n2 rejoined") != 1 {
		t.Errorf("kill and rejoin events: %v", res.Events)
	}
	if partition && (countEvents(res, "partition: [n3] cut off") != 1 || countEvents(res, "every node sees every node alive within") != 1) {
		t.Errorf("partition and heal events: %v", res.Events)
	}
	if partition && res.Errors["unavailable"] == 0 {
		t.Errorf("no unavailable while n3 was cut off: did the partition cut anything? errors %v", res.Errors)
	}
	// The killed node's clients (a third of them) reconnected and resumed.
	if res.Counts.Reconnects < 4 || res.Counts.Resumes < 4 {
		t.Errorf("reconnects %d resumes %d after the kill", res.Counts.Reconnects, res.Counts.Resumes)
	}
	if res.Local == nil || len(res.Local.Regions) != 3 || res.Local.Isolated != partition {
		t.Errorf("cluster info %+v", res.Local)
	}
}

// TestRunOnClusterWithStop starts a real 3-node cluster, spreads WebSocket
// and WebTransport clients over the nodes and stops one node (SIGSTOP) for
// 6 s, longer than a client waits for an answer (5 s), then continues it.
// Its visitors fail over to the next node and resend there what it never
// acknowledged, while it still holds those frames in its sockets and
// takes them in when it continues: the same ids are created on two nodes.
// Every acknowledged message must reach every agent and be stored once on
// every node, not shown edited, with one ts on every node and every
// conversation in one order; and no node process is left stopped.
func TestRunOnClusterWithStop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a 3-node cluster")
	}
	bin := buildNode(t)
	sc, err := ParseScenario([]byte(`
name: cluster-stop
visitors: 9
agents: 3
conversations: 9
rate: 60
duration: 12s
ramp_up: 500ms
message_size: 100
drain: 15s
transports: {ws: 1, wt: 1}
faults: [{at: 2s, action: stop, node: 1, resume_after: 6s}]
failover: true
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cl, err := StartLocal(ctx, LocalOptions{Bin: bin, Nodes: 3, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	sc.Target.Nodes, sc.Target.AgentToken = cl.URLs(), cl.Token
	res, err := Run(ctx, sc, Options{Cluster: cl})
	if err != nil {
		t.Fatalf("run: %v\nlogs: %v", err, cl.Logs(2000))
	}
	a := res.Accounting
	checkAllDelivered(t, res, 600, 3)
	if a.DuplicatedInStore != 0 || a.ConversationsCompared != 9 {
		t.Errorf("after the stop: %d (message, node) pairs in two states, %d conversations compared", a.DuplicatedInStore, a.ConversationsCompared)
	}
	if a.HistoryFrames < 3*a.Acked {
		t.Errorf("the audit read %d deliver frames for %d acknowledged messages on 3 nodes", a.HistoryFrames, a.Acked)
	}
	if countEvents(res, "SIGSTOP n2") != 1 || countEvents(res, "SIGCONT n2 after 6s") != 1 || countEvents(res, "n2 back") != 1 {
		t.Errorf("stop and continue events: %v", res.Events)
	}
	// The stopped node's visitors (3 of the 9, each sending ~7 messages a
	// second) gave up on their connections and moved to the next node,
	// resending there what the stopped node had not acknowledged; its
	// agent may not have noticed (it writes nothing but a ping every
	// heartbeat).
	if res.Errors["no_answer"] < 3 || res.Counts.Failovers < 3 || res.Counts.Resent == 0 {
		t.Errorf("the stop's visitors did not fail over: errors %v, failovers %d, resent %d", res.Errors, res.Counts.Failovers, res.Counts.Resent)
	}
	t.Logf("ids an agent received again with another ts (a second creation on the stopped node): %d (message × agent); history: %d ids in two frames of one state, %d shown edited",
		a.AgentRepeatsOtherTS, a.HistoryRepeatedIDs, a.HistoryAltered)
	for i, n := range cl.Nodes {
		if st, err := localcluster.ProcState(n.PID()); err != nil || st == 'T' || cl.Stopped(i) {
			t.Errorf("node %s after the run: state %c (%v), stopped %v", n.ID, st, err, cl.Stopped(i))
		}
	}
}

// TestRunMixedTransports runs WebSocket and WebTransport clients side by
// side on one node through a reconnect storm and a kill -9: both kinds
// reconnect, resume and resend, nothing is lost or doubled, and connect,
// ack and e2e latencies and errors are reported per transport.
func TestRunMixedTransports(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a node")
	}
	bin := buildNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := StartLocal(ctx, LocalOptions{Bin: bin, Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	sc, err := ParseScenario([]byte(`
name: mixed
visitors: 10
agents: 2
conversations: 10
rate: 150
duration: 6s
ramp_up: 500ms
drain: 12s
transports: {ws: 1, wt: 1}
reconnect_storms: [{at: 1500ms, fraction: 0.5, over: 300ms}]
faults: [{at: 3s, action: kill, node: 0, restart_after: 500ms}]
`))
	if err != nil {
		t.Fatal(err)
	}
	sc.Target.Nodes, sc.Target.AgentToken = cl.URLs(), cl.Token
	res, err := Run(ctx, sc, Options{Cluster: cl})
	if err != nil {
		t.Fatalf("run: %v\nnode log: %s", err, cl.Logs(2000)["n1"])
	}
	checkAllDelivered(t, res, 700, 1)
	ws, wt := res.Transports["ws"], res.Transports["wt"]
	t.Logf("ws %+v\nwt %+v", ws, wt)
	if ws.Clients+wt.Clients != 12 || ws.Clients < 5 || wt.Clients < 5 {
		t.Errorf("clients per transport: ws %d wt %d, want 12 spread evenly", ws.Clients, wt.Clients)
	}
	for name, tr := range res.Transports {
		// Every client connected at least twice (the kill); the audit
		// adds a WebSocket.
		if tr.Connect.Count < 2*tr.Clients || tr.Connect.P50 <= 0 || tr.Reconnects < tr.Clients {
			t.Errorf("%s: %d clients, %d connects, %d reconnects", name, tr.Clients, tr.Connect.Count, tr.Reconnects)
		}
		if tr.Ack.Count == 0 || tr.E2E.Count == 0 {
			t.Errorf("%s: ack %+v e2e %+v", name, tr.Ack, tr.E2E)
		}
	}
	if ws.Ack.Count+wt.Ack.Count != int64(res.Accounting.Acked) || ws.E2E.Count+wt.E2E.Count != res.Latency["e2e"].Count {
		t.Errorf("per-transport counts do not add up: ack %d+%d, e2e %d+%d", ws.Ack.Count, wt.Ack.Count, ws.E2E.Count, wt.E2E.Count)
	}
}
