package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// exported is what a node's /metrics names: every series name (a
// histogram's _bucket, _sum and _count beside its own) and every label.
type exported struct{ names, labels map[string]bool }

func (e exported) add(body string) {
	typ := regexp.MustCompile(`(?m)^# TYPE (\S+) (\S+)$`)
	for _, m := range typ.FindAllStringSubmatch(body, -1) {
		e.names[m[1]] = true
		if m[2] == "histogram" || m[2] == "summary" {
			e.names[m[1]+"_bucket"], e.names[m[1]+"_sum"], e.names[m[1]+"_count"] = true, true, true
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^[a-z_:]+\{([^}]*)\}`).FindAllStringSubmatch(body, -1) {
		for _, l := range regexp.MustCompile(`([a-z_]+)="`).FindAllStringSubmatch(m[1], -1) {
			e.labels[l[1]] = true
		}
	}
}

// queryNames are the metric names and the labels grouped by in a PromQL
// expression: names of the node's families (parley_, go_, process_), and
// the labels of by (...) and without (...).
func queryNames(expr string) (names, labels []string) {
	names = regexp.MustCompile(`\b(?:parley|go|process)_[a-z0-9_]+\b`).FindAllString(expr, -1)
	for _, m := range regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`).FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
	}
	return names, labels
}

// missing lists what exprs use that the node does not export; job,
// instance (Prometheus's target labels) and le (histograms') always exist.
func (e exported) missing(where string, exprs []string) []string {
	var out []string
	for _, x := range exprs {
		names, labels := queryNames(x)
		for _, n := range names {
			if !e.names[n] {
				out = append(out, fmt.Sprintf("%s: metric %s", where, n))
			}
		}
		for _, l := range labels {
			if !e.labels[l] && l != "job" && l != "instance" && l != "le" {
				out = append(out, fmt.Sprintf("%s: label %s", where, l))
			}
		}
	}
	return out
}

// deployQueries are the PromQL expressions of deploy/: the alert rules,
// the series of their unit tests, and the dashboard's targets and
// variables.
func deployQueries(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Record, Expr string
			}
		}
	}
	readYAML(t, "../deploy/prometheus/alerts.yaml", &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out["alerts.yaml "+r.Alert+r.Record] = append(out["alerts.yaml "+r.Alert+r.Record], r.Expr)
		}
	}
	var tests struct {
		Tests []struct {
			InputSeries []struct{ Series string } `yaml:"input_series"`
		}
	}
	readYAML(t, "../deploy/prometheus/alerts_test.yaml", &tests)
	for _, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			out["alerts_test.yaml"] = append(out["alerts_test.yaml"], s.Series)
		}
	}
	b, err := os.ReadFile("../deploy/grafana/parley.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Definition string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out["parley.json "+p.Title] = append(out["parley.json "+p.Title], tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		out["parley.json variables"] = append(out["parley.json variables"], v.Definition)
	}
	return out
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestDeployMetricsExist scrapes real nodes, a two-node cluster that has
// replicated a message (so replication's per-peer gauges are there) and a
// node with the embedder on, and fails on a metric or label that the alert
// rules or the dashboard of deploy/ use and no node exports.
func TestDeployMetricsExist(t *testing.T) {
	needEmbedder(t)
	e := exported{names: map[string]bool{}, labels: map[string]bool{}}
	nodes, root := inProcessCluster(t, newFaultNet(), 2)
	if st, code, m := call(t, nodes[0].base, "POST", "/v1/admin/workspaces", root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}); st != 200 {
		t.Fatalf("create workspace: %d %s %v", st, code, m)
	}
	v := &inProcVisitor{t: t, ws: "acme", acked: map[string]bool{}}
	v.write(nodes[0], "m", 1)
	for _, n := range nodes {
		_, body := get(t, n.base+"/metrics")
		e.add(body)
	}
	emb := runNode(t, Config{DataDir: t.TempDir(), AgentToken: testToken, Embedder: "auto"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := helloTest(t, ctx, emb.base, map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "visitor"}, typeIs("welcome"))
	c.send(map[string]any{"type": "nonsense"}) // an error frame: parley_errors_total{code}
	c.await(typeIs("error"))
	_, body := get(t, emb.base+"/metrics")
	e.add(body)
	for _, want := range []string{"parley_replication_lag_seconds", "parley_replication_backlog_frames", "parley_embeddings_pending"} {
		if !e.names[want] {
			t.Fatalf("the nodes scraped do not export %s", want)
		}
	}

	queries := deployQueries(t)
	if len(queries) < 20 {
		t.Fatalf("%d rules and panels read from deploy/", len(queries))
	}
	var missing []string
	for where, exprs := range queries {
		missing = append(missing, e.missing(where, exprs)...)
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("%s: not exported by the node", m)
	}

	// The check itself catches a name or a label the node lacks.
	if got := e.missing("probe", []string{`sum by (peer, shard) (rate(parley_replication_frames_dropped_total[5m]))`}); len(got) != 2 {
		t.Errorf("an unknown metric and label: %v", got)
	}
}
