package bench

import (
	"errors"
	"strings"
	"testing"
	"time"

	"parley/internal/localcluster"
)

func TestParseScenarioDefaults(t *testing.T) {
	sc, err := ParseScenario([]byte(`
name: t
target: {nodes: ["http://127.0.0.1:8080"], agent_token: "0123456789abcdef0123"}
visitors: 10
agents: 2
rate: 100
duration: 10s
ramp_up: 2s
`))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Conversations != 10 || sc.MessageSize != 64 || sc.Target.Workspace != "demo" || sc.ConnectRate != 500 || !*sc.Audit {
		t.Errorf("defaults not filled: %+v", sc)
	}
	if sc.Drain.D() != 10*time.Second || sc.Transports["ws"] != 1 {
		t.Errorf("drain %s transports %v", sc.Drain, sc.Transports)
	}
	// 2 s ramp (100 messages) + 8 s at 100/s.
	if got := sc.TotalMessages(); got != 900 {
		t.Errorf("TotalMessages = %d, want 900", got)
	}
	if sc.Timeout.D() < sc.Duration.D()+sc.Drain.D() {
		t.Errorf("timeout %s too short", sc.Timeout)
	}
	if err := sc.Ready(nil); err != nil {
		t.Errorf("Ready: %v", err)
	}
	sc.Messages = 50
	if got := sc.TotalMessages(); got != 50 {
		t.Errorf("TotalMessages with messages: 50 = %d", got)
	}
}

func TestParseScenarioErrors(t *testing.T) {
	base := "visitors: 10\nagents: 1\nrate: 10\nduration: 5s\n"
	cases := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"unknown field", base + "visitor: 3\n", []string{"field visitor not found"}},
		{"duration missing", "visitors: 1\nrate: 1\n", []string{"duration: must be > 0"}},
		{"duration without unit", "visitors: 1\nduration: 10\n", []string{"want a number with a unit"}},
		{"negative rate", "visitors: 1\nrate: -1\nduration: 1s\n", []string{"rate: must be a number ≥ 0"}},
		{"rate without visitors", "agents: 1\nrate: 5\nduration: 1s\n", []string{"rate: messages need conversations"}},
		{"body too big", base + "message_size: 5000\n", []string{"message_size: must be 1..4000"}},
		{"ramp longer than run", base + "ramp_up: 6s\n", []string{"ramp_up: must be 0..duration"}},
		{"negative wt", base + "transports: {ws: 1, wt: -1}\n", []string{"transports.wt: weight must be ≥ 0"}},
		{"unknown transport", base + "transports: {sse: 1}\n", []string{"transports.sse: unknown transport"}},
		{"no transport weight", base + "transports: {ws: 0}\n", []string{"no transport has a weight"}},
		{"storm fraction", base + "reconnect_storms: [{at: 1s, fraction: 1.5}]\n", []string{"reconnect_storms[0].fraction"}},
		{"storm after the end", base + "reconnect_storms: [{at: 9s, fraction: 0.5}]\n", []string{"reconnect_storms[0].at"}},
		{"partition without side", base + "faults: [{at: 1s, action: partition, heal_after: 1s}]\n", []string{"faults[0].nodes: a partition cuts off nodes"}},
		{"partition without heal", base + "faults: [{at: 1s, action: partition, nodes: [1]}]\n", []string{"faults[0].heal_after: must be > 0"}},
		{"partition both sides given", base + "faults: [{at: 1s, action: partition, nodes: [1], region: r1, heal_after: 1s}]\n", []string{"one of the two"}},
		{"partition node twice", base + "faults: [{at: 1s, action: partition, nodes: [1, 1], heal_after: 1s}]\n", []string{"faults[0].nodes[1]"}},
		{"partition with kill fields", base + "faults: [{at: 1s, action: partition, nodes: [1], heal_after: 1s, restart_after: 1s}]\n", []string{"node and restart_after are for kills"}},
		{"kill with partition fields", base + "faults: [{at: 1s, action: kill, heal_after: 1s}]\n", []string{"nodes, region and heal_after are for partitions"}},
		{"fault action missing", base + "faults: [{at: 1s}]\n", []string{"faults[0].action: missing: kill, stop or partition"}},
		{"fault action unknown", base + "faults: [{at: 1s, action: pause}]\n", []string{"unknown action \"pause\" (known: kill, stop, partition)"}},
		{"stop without resume", base + "faults: [{at: 1s, action: stop, node: 0}]\n", []string{"faults[0].resume_after: must be > 0"}},
		{"stop with kill and partition fields", base + "faults: [{at: 1s, action: stop, resume_after: 1s, restart_after: 1s, nodes: [1]}]\n", []string{"a stop takes node and resume_after"}},
		{"stop node index", base + "target: {nodes: [\"http://a:1\"]}\nfaults: [{at: 1s, action: stop, node: 1, resume_after: 1s}]\n", []string{"faults[0].node: index 1"}},
		{"stop negative node", base + "faults: [{at: 1s, action: stop, node: -1, resume_after: 1s}]\n", []string{"faults[0].node: must be a node index ≥ 0"}},
		{"kill with resume_after", base + "faults: [{at: 1s, action: kill, resume_after: 1s}]\n", []string{"resume_after for stops"}},
		{"partition with resume_after", base + "faults: [{at: 1s, action: partition, nodes: [1], heal_after: 1s, resume_after: 1s}]\n", []string{"node and resume_after for stops"}},
		{"fault node index", base + "target: {nodes: [\"http://a:1\"]}\nfaults: [{at: 1s, action: kill, node: 1}]\n", []string{"faults[0].node: index 1"}},
		{"node url", base + "target: {nodes: [\"ws://a:1/v1/ws\"]}\n", []string{"target.nodes[0]", "http://"}},
		{"node path", base + "target: {nodes: [\"http://a:1/v1/ws\"]}\n", []string{"without a path"}},
		{"workspace", base + "target: {workspace: \"Demo!\"}\n", []string{"target.workspace"}},
		{"two tokens", base + "target: {agent_token: x, agent_token_env: Y}\n", []string{"not both"}},
		{"timeout", base + "timeout: 1s\n", []string{"timeout: 1s is shorter than duration + drain"}},
		{"idle sources", "idle: {connections: 10, source_addrs: [\"127.0.0.9-127.0.0.2\"]}\nduration: 1s\n", []string{"idle.source_addrs"}},
		{"idle count", "idle: {connections: 0}\nduration: 1s\n", []string{"idle.connections: must be 1.."}},
		{"nothing", "duration: 1s\n", []string{"nothing to run"}},
		{"too many messages", "visitors: 1\nrate: 1000000\nduration: 1h\n", []string{"over the limit"}},
		{"several at once", "visitors: -1\nagents: 5000\nduration: 1s\n", []string{"visitors: must be 0..", "agents: must be 0.."}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseScenario([]byte(c.yaml))
			if err == nil {
				t.Fatalf("no error for:\n%s", c.yaml)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestScenarioReady(t *testing.T) {
	sc, err := ParseScenario([]byte("visitors: 1\nagents: 1\nrate: 1\nduration: 2s\nfaults: [{at: 1s, action: kill}]\ntarget: {agent_token_env: PARLEY_BENCH_TEST_NO_SUCH_VAR}\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = sc.Ready(nil)
	for _, w := range []string{"target.nodes: no node", "$PARLEY_BENCH_TEST_NO_SUCH_VAR is empty", "faults: need --local"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Ready error %v lacks %q", err, w)
		}
	}
	t.Setenv("PARLEY_BENCH_TEST_TOKEN", "tok")
	sc.Target.AgentTokenEnv = "PARLEY_BENCH_TEST_TOKEN"
	sc.Target.Nodes = []string{"http://127.0.0.1:1"}
	if err := sc.Ready(&localcluster.Cluster{Nodes: []*localcluster.Node{{ID: "n1"}}}); err != nil {
		t.Errorf("Ready: %v", err)
	}
	if sc.AgentToken() != "tok" {
		t.Errorf("token from env = %q", sc.AgentToken())
	}
	// A stop needs the harness's own nodes as well, and a node that exists.
	stop, err := ParseScenario([]byte("visitors: 1\nagents: 1\nrate: 1\nduration: 2s\nfaults: [{at: 1s, action: stop, node: 1, resume_after: 1s}]\ntarget: {agent_token: tok}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := stop.Ready(nil); err == nil || !strings.Contains(err.Error(), "faults: need --local") {
		t.Errorf("Ready of a stop without --local: %v", err)
	}
	stop.Target.Nodes = []string{"http://127.0.0.1:1"}
	if err := stop.Ready(&localcluster.Cluster{Nodes: []*localcluster.Node{{ID: "n1"}}}); err == nil || !strings.Contains(err.Error(), "faults[0].node: index 1, but there are 1 nodes") {
		t.Errorf("Ready of a stop of a node that is not there: %v", err)
	}
	if stop.Timeout.D() < stop.Duration.D()+stop.Drain.D()+time.Second {
		t.Errorf("timeout %s leaves no time for the stop", stop.Timeout)
	}
	// Failover needs somewhere to go.
	stop.Failover = true
	if err := stop.Ready(nil); err == nil || !strings.Contains(err.Error(), "failover: needs two nodes or more, there are 1") {
		t.Errorf("Ready of failover with one node: %v", err)
	}
	if sc, err := LoadScenario("testdata/cluster-stop.yaml"); err != nil || !sc.Failover || len(sc.Faults) != 1 || sc.Faults[0].ResumeAfter.D() != 8*time.Second {
		t.Errorf("cluster-stop.yaml: %v", err)
	}
}

// TestPartitionNeedsNamespaces: where network namespaces cannot be made (no
// root, no ip), a partition fault is refused by validation, saying why;
// where they can, it is accepted, and a run refuses it unless the local
// nodes are in namespaces, and refuses a side that holds every node.
func TestPartitionNeedsNamespaces(t *testing.T) {
	const yaml = "visitors: 1\nagents: 1\nrate: 1\nduration: 5s\nfaults: [{at: 1s, action: partition, nodes: [1], heal_after: 2s}]\n"
	saved := partitionsAvailable
	defer func() { partitionsAvailable = saved }()
	partitionsAvailable = func() error { return errors.New("network namespaces need root") }
	_, err := ParseScenario([]byte(yaml))
	if err == nil || !strings.Contains(err.Error(), "faults[0].action: partition needs the nodes in network namespaces") ||
		!strings.Contains(err.Error(), "need root") {
		t.Errorf("without namespaces: %v", err)
	}
	partitionsAvailable = func() error { return nil }
	sc, err := ParseScenario([]byte(yaml))
	if err != nil {
		t.Fatalf("with namespaces: %v", err)
	}
	if sc.Timeout.D() < sc.Duration.D()+sc.Drain.D()+2*time.Second {
		t.Errorf("timeout %s does not count the heal", sc.Timeout)
	}
	sc.Target.AgentToken = "tok"
	cl := &localcluster.Cluster{Nodes: []*localcluster.Node{{ID: "n1", Region: "r0"}, {ID: "n2", Region: "r1"}}}
	sc.Target.Nodes = []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}
	if err := sc.Ready(cl); err == nil || !strings.Contains(err.Error(), "needs the local nodes in network namespaces") {
		t.Errorf("Ready without namespaces: %v", err)
	}
	cl.Lab = new(localcluster.NetLab)
	if err := sc.Ready(cl); err != nil {
		t.Errorf("Ready: %v", err)
	}
	sc.Faults[0].Nodes = nil
	sc.Faults[0].Region = "r9"
	if err := sc.Ready(cl); err == nil || !strings.Contains(err.Error(), `no local node is in region "r9"`) {
		t.Errorf("Ready with an empty region: %v", err)
	}
	sc.Faults[0].Region = ""
	sc.Faults[0].Nodes = []int{0, 1}
	if err := sc.Ready(cl); err == nil || !strings.Contains(err.Error(), "cut off every node") {
		t.Errorf("Ready cutting off everyone: %v", err)
	}
}

func TestParseSourceAddrs(t *testing.T) {
	ips, err := ParseSourceAddrs([]string{"127.0.0.2-127.0.0.4", "127.0.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ip := range ips {
		got = append(got, ip.String())
	}
	if strings.Join(got, ",") != "127.0.0.2,127.0.0.3,127.0.0.4,127.0.1.1" {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{"x", "127.0.0.1-y", "::1", "127.0.0.1-127.0.9.1"} {
		if _, err := ParseSourceAddrs([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTestdataScenariosValid(t *testing.T) {
	for _, p := range []string{"testdata/smoke.yaml", "testdata/kill.yaml", "testdata/load-1k.yaml", "testdata/load-5k.yaml", "testdata/overload-2k.yaml", "testdata/overload-5k.yaml", "testdata/overload-10k.yaml", "testdata/ceiling-1agent-10k.yaml", "testdata/ceiling-1agent-20k.yaml", "testdata/ceiling-1agent-60k.yaml", "testdata/ceiling-1agent-100k.yaml", "testdata/idle-10k.yaml", "testdata/idle-19k.yaml", "testdata/idle-100k.yaml"} {
		if _, err := LoadScenario(p); err != nil {
			t.Errorf("%v", err)
		}
	}
	// Its partition is refused where namespaces cannot be made.
	saved := partitionsAvailable
	defer func() { partitionsAvailable = saved }()
	partitionsAvailable = func() error { return nil }
	if sc, err := LoadScenario("testdata/cluster-faults.yaml"); err != nil || !sc.HasPartition() || sc.Transports["wt"] != 1 {
		t.Errorf("cluster-faults.yaml: %v", err)
	}
}

func TestPickTransport(t *testing.T) {
	count := map[string]int{}
	for i := 0; i < 1000; i++ {
		count[pickTransport(map[string]float64{"ws": 3, "wt": 1}, i)]++
	}
	if count["ws"] < 740 || count["ws"] > 760 || count["wt"] < 240 || count["wt"] > 260 {
		t.Errorf("mix 3:1 gave %v", count)
	}
	if got := pickTransport(map[string]float64{"ws": 1, "wt": 0}, 7); got != "ws" {
		t.Errorf("zero weight picked: %s", got)
	}
}
