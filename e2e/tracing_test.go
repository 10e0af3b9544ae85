package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"parley/internal/eventually"
	"parley/internal/localcluster"
)

// jaegerBinary is Jaeger's all-in-one (github.com/jaegertracing/jaeger,
// the version the Makefile pins): $PARLEY_JAEGER, else what `make jaeger`
// prints, which builds it into ~/.cache/parley/tools first when it is not
// there (minutes, once; `make test` builds it before the tests run).
func jaegerBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PARLEY_JAEGER"); p != "" {
		return p
	}
	var out, errb bytes.Buffer
	cmd := exec.Command("make", "-s", "--no-print-directory", "-C", "..", "jaeger")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("make jaeger: %v\n%s%s", err, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	bin := lines[len(lines)-1]
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("make jaeger printed %q: %v", bin, err)
	}
	return bin
}

// jaeger is an all-in-one Jaeger on loopback ports of its own, keeping
// spans in memory.
type jaeger struct {
	otlp  string // OTLP/HTTP receiver, http://host:port
	query string // query API, http://host:port
}

func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	bin := jaegerBinary(t)
	ports := map[string]string{}
	for _, flag := range []string{"collector.otlp.http.host-port", "collector.otlp.grpc.host-port", "query.http-server.host-port",
		"query.grpc-server.host-port", "admin.http.host-port", "collector.http-server.host-port", "collector.grpc-server.host-port"} {
		a, err := localcluster.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		ports[flag] = a
	}
	args := []string{"--memory.max-traces", "10000"}
	for flag, a := range ports {
		args = append(args, "--"+flag+"="+a)
	}
	cmd := exec.Command(bin, args...)
	// Jaeger traces itself to an OTLP gRPC endpoint, 127.0.0.1:4317 unless
	// told: its own receiver here, and nothing sampled.
	cmd.Env = append(os.Environ(), "SPAN_STORAGE_TYPE=memory", "OTEL_TRACES_SAMPLER=always_off",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+ports["collector.otlp.grpc.host-port"])
	logPath := filepath.Join(t.TempDir(), "jaeger.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close() // the process has its own descriptor
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if b, _ := os.ReadFile(logPath); t.Failed() {
			t.Logf("jaeger:\n%s", b)
		}
	})
	j := &jaeger{otlp: "http://" + ports["collector.otlp.http.host-port"], query: "http://" + ports["query.http-server.host-port"]}
	eventually.Holds(t, 30*time.Second, "jaeger's query API answers", func() error {
		select {
		case <-done:
			return fmt.Errorf("jaeger exited")
		default:
		}
		resp, err := http.Get(j.query + "/api/services")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/api/services: %s", resp.Status)
		}
		return nil
	})
	return j
}

// jaegerTrace is a trace as Jaeger's query API gives it.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
		Tags        []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"processes"`
}

// traces asks Jaeger for the traces of a service.
func (j *jaeger) traces(service string) ([]jaegerTrace, error) {
	resp, err := http.Get(j.query + "/api/traces?service=" + service + "&limit=100&lookback=1h")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data []jaegerTrace `json:"data"`
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("/api/traces: %s", resp.Status)
	}
	return out.Data, json.NewDecoder(resp.Body).Decode(&out)
}

// spansByNode lists a trace's operations per node (the process's
// service.instance.id).
func (tr jaegerTrace) spansByNode() map[string][]string {
	out := map[string][]string{}
	for _, s := range tr.Spans {
		node := "?"
		for _, tag := range tr.Processes[s.ProcessID].Tags {
			if tag.Key == "service.instance.id" {
				node = fmt.Sprint(tag.Value)
			}
		}
		out[node] = append(out[node], s.OperationName)
	}
	return out
}

// TestTraceAcrossNodesInJaeger: two nodes export their spans to a real
// Jaeger (all-in-one, memory storage, OTLP over HTTP). A visitor on n1
// sends a message to an agent on n2; Jaeger's query API then holds one
// trace with the send, its commit and its replication on n1 and the
// frame's receive and its delivery on n2, the receive under n1's
// replicate span: the trace context crossed the node link.
func TestTraceAcrossNodesInJaeger(t *testing.T) {
	j := startJaeger(t)
	tc := startCluster(t, 2, "-otlp-endpoint", j.otlp)
	n1, n2 := tc.nodes[0], tc.nodes[1]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 60*time.Second)
	agent := tc.agentOn(t, ctx, n1, n2, "acme", "sam")
	visitor, _, conv := startVisitor(t, ctx, n1, "acme")
	defer visitor.close()
	say(t, ctx, visitor, conv, "m-traced-1", "a message whose way is traced")
	if _, err := agent.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "m-traced-1" }); err != nil {
		t.Fatalf("agent on n2: %v", err)
	}

	var found jaegerTrace
	eventually.Holds(t, 30*time.Second, "Jaeger holds one trace of the send across n1 and n2", func() error {
		trs, err := j.traces("parley")
		if err != nil {
			return err
		}
		for _, tr := range trs {
			by := tr.spansByNode()
			if has(by["n1"], "parley.send", "parley.commit", "parley.fanout", "parley.replicate") &&
				has(by["n2"], "parley.replication.receive", "parley.deliver") {
				found = tr
				return nil
			}
		}
		var seen []string
		for _, tr := range trs {
			seen = append(seen, fmt.Sprint(tr.spansByNode()))
		}
		return fmt.Errorf("%d traces: %s", len(trs), strings.Join(seen, "; "))
	})
	// n2's receive is a child of n1's replicate span.
	ids := map[string]string{}
	for _, s := range found.Spans {
		ids[s.SpanID] = s.OperationName
	}
	for _, s := range found.Spans {
		if s.OperationName != "parley.replication.receive" {
			continue
		}
		if len(s.References) == 0 || ids[s.References[0].SpanID] != "parley.replicate" {
			t.Errorf("n2's receive span refers to %v, not n1's replicate span", s.References)
		}
	}
	t.Logf("trace %s: %v", found.TraceID, found.spansByNode())
}

// has says whether ops holds every one of want.
func has(ops []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, o := range ops {
			found = found || o == w
		}
		if !found {
			return false
		}
	}
	return true
}
