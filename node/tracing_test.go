package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"parley/gateway/client"
	"parley/internal/eventually"
	"parley/tracing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// A message from a visitor on n1 to an agent on n2 is one trace across
// both nodes: hello, send, commit, fan-out and a replicate span per peer
// on n1; the frame's receive and the delivery on n2, under the replicate
// span. Every span of both nodes (names, attributes, events, links,
// statuses, resources) is scanned for what a person sent or is: the
// message's text (sent and edited), the visitor's name, the message ID
// the client chose, the conversation and visitor IDs, the client's
// address, the agent's token.
func TestTracesCrossNodesWithoutPersonalData(t *testing.T) {
	exps := map[string]*tracetest.InMemoryExporter{}
	nodes, _ := inProcessClusterWith(t, newFaultNet(), 2, func(c *Config) {
		exp := tracetest.NewInMemoryExporter()
		exps[c.NodeID] = exp
		tp := tracing.NewProvider(tracing.Config{Node: c.NodeID, Region: c.Region}, sdktrace.WithSyncer(exp))
		t.Cleanup(func() { tp.Shutdown(context.Background()) })
		c.tracerProvider = tp
		if c.NodeID == "n1" {
			c.NoDemo, c.AgentToken = false, testToken
		}
	})
	n1, n2 := nodes[0], nodes[1]
	const (
		body     = "canary-body-7f3a hello, my card is 4111"
		edited   = "canary-edit-91bc my address is 1 Main St"
		name     = "Canary Name-5d2e"
		msgID    = "canary-msgid-c0ffee"
		clientIP = "127.0.0.1"
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	agentHello := map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": testToken}
	var agent *testConn
	eventually.Holds(t, 20*time.Second, "an agent of the demo workspace says hello on n2", func() error {
		c := dialTest(t, ctx, n2.base, client.Options{})
		c.send(agentHello)
		m := c.await(func(m map[string]any) bool { return m["type"] == "welcome" || m["type"] == "error" })
		if m["type"] != "welcome" {
			c.c.CloseNow()
			return fmt.Errorf("%v", m)
		}
		agent = c
		return nil
	})
	vis := dialTest(t, ctx, n1.base, client.Options{})
	vis.send(map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "visitor", "name": name})
	welcome := vis.await(typeIs("welcome"))
	vis.send(map[string]any{"type": "start", "ref": "s"})
	started := vis.await(typeIs("started"))
	conv, _ := started["conversation"].(string)
	vis.send(map[string]any{"type": "send", "ref": "m", "conversation": conv, "id": msgID, "body": body})
	if m := vis.await(func(m map[string]any) bool { return m["ref"] == "m" }); m["type"] != "ack" {
		t.Fatalf("send: %v", m)
	}
	agent.await(func(m map[string]any) bool { return m["type"] == "deliver" && strings.Contains(fmt.Sprint(m), body) })
	vis.send(map[string]any{"type": "edit", "ref": "e", "conversation": conv, "id": msgID, "body": edited})
	if m := vis.await(func(m map[string]any) bool { return m["ref"] == "e" }); m["type"] != "ack" {
		t.Fatalf("edit: %v", m)
	}
	agent.await(func(m map[string]any) bool { return m["type"] == "deliver" && strings.Contains(fmt.Sprint(m), edited) })
	visitorID, _ := welcome["visitor_id"].(string)
	participant, _ := welcome["participant"].(string)
	if visitorID == "" || participant == "" || conv == "" {
		t.Fatalf("welcome %v, started %v", welcome, started)
	}

	// The send's trace: its spans on n1, and on n2 under its replicate span.
	var send tracetest.SpanStub
	eventually.Holds(t, 10*time.Second, "one trace holds the send's spans on both nodes", func() error {
		var ok bool
		if send, ok = spanNamed(exps["n1"].GetSpans(), "parley.send", trace.TraceID{}); !ok {
			return fmt.Errorf("no parley.send on n1")
		}
		id := send.SpanContext.TraceID()
		for node, names := range map[string][]string{
			"n1": {"parley.commit", "parley.fanout", "parley.replicate", "parley.confirm"},
			"n2": {"parley.replication.receive", "parley.deliver"},
		} {
			for _, name := range names {
				if _, ok := spanNamed(exps[node].GetSpans(), name, id); !ok {
					return fmt.Errorf("no %s on %s in the send's trace", name, node)
				}
			}
		}
		return nil
	})
	id := send.SpanContext.TraceID()
	rep, _ := spanNamed(exps["n1"].GetSpans(), "parley.replicate", id)
	recv, _ := spanNamed(exps["n2"].GetSpans(), "parley.replication.receive", id)
	if recv.Parent.SpanID() != rep.SpanContext.SpanID() || !recv.Parent.IsRemote() {
		t.Errorf("n2's receive span's parent %v, want n1's replicate span %v", recv.Parent.SpanID(), rep.SpanContext.SpanID())
	}
	if _, ok := spanNamed(exps["n1"].GetSpans(), "parley.hello", trace.TraceID{}); !ok {
		t.Error("no parley.hello span on n1")
	}
	if got := attrOf(recv.Resource.Attributes(), "service.instance.id"); got != "n2" {
		t.Errorf("n2's spans name instance %q", got)
	}

	canaries := []string{body, "canary-body", edited, "canary-edit", name, "Canary Name", msgID, "canary-msgid", conv, visitorID, participant, clientIP, testToken}
	var spans int
	for node, exp := range exps {
		for _, s := range exp.GetSpans() {
			spans++
			if leak := leaks(s, canaries); leak != "" {
				t.Errorf("%s: span %s carries %s", node, s.Name, leak)
			}
		}
	}
	t.Logf("%d spans scanned", spans)

	// The scan finds a canary wherever a span could carry it.
	for _, s := range []tracetest.SpanStub{
		{Name: "x " + body},
		{Name: "x", Attributes: []attribute.KeyValue{attribute.String("k", name)}},
		{Name: "x", Attributes: []attribute.KeyValue{attribute.StringSlice("k", []string{"a", conv})}},
		{Name: "x", Events: []sdktrace.Event{{Name: "e", Attributes: []attribute.KeyValue{attribute.String("k", edited)}}}},
	} {
		if leaks(s, canaries) == "" {
			t.Errorf("the scan misses a canary in %+v", s)
		}
	}
}

// spanNamed finds a span by name, in trace id when id is valid.
func spanNamed(spans tracetest.SpanStubs, name string, id trace.TraceID) (tracetest.SpanStub, bool) {
	for _, s := range spans {
		if s.Name == name && (!id.IsValid() || s.SpanContext.TraceID() == id) {
			return s, true
		}
	}
	return tracetest.SpanStub{}, false
}

func attrOf(attrs []attribute.KeyValue, key string) string {
	for _, a := range attrs {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// leaks says which canary a span carries anywhere, "" when none.
func leaks(s tracetest.SpanStub, canaries []string) string {
	texts := []string{s.Name, s.Status.Description, s.InstrumentationScope.Name}
	add := func(attrs []attribute.KeyValue) {
		for _, a := range attrs {
			texts = append(texts, string(a.Key), a.Value.Emit())
		}
	}
	add(s.Attributes)
	if s.Resource != nil {
		add(s.Resource.Attributes())
	}
	for _, e := range s.Events {
		texts = append(texts, e.Name)
		add(e.Attributes)
	}
	for _, l := range s.Links {
		add(l.Attributes)
	}
	for _, text := range texts {
		for _, c := range canaries {
			if c != "" && strings.Contains(text, c) {
				return fmt.Sprintf("%q (in %q)", c, text)
			}
		}
	}
	return ""
}

// -otlp-endpoint takes an http:// or https:// URL; -otlp-sample-ratio a
// fraction; a node with neither traces nothing.
func TestTracingFlags(t *testing.T) {
	for _, bad := range [][]string{
		{"-otlp-endpoint", "127.0.0.1:4318"},
		{"-otlp-endpoint", "grpc://127.0.0.1:4317"},
		{"-otlp-sample-ratio", "1.5"},
		{"-otlp-sample-ratio", "-0.1"},
	} {
		if _, err := ParseFlags(bad); err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(bad[0], "-")) {
			t.Errorf("%v: %v", bad, err)
		}
	}
	c, err := ParseFlags([]string{"-otlp-endpoint", "https://collector.example:4318", "-otlp-sample-ratio", "0.25"})
	if err != nil || c.OTLPEndpoint != "https://collector.example:4318" || c.OTLPSampleRatio != 0.25 {
		t.Fatalf("%+v, %v", c, err)
	}
	r := runNode(t, Config{DataDir: t.TempDir()})
	if r.n.tracer.On() {
		t.Fatal("a node without -otlp-endpoint traces")
	}
}
