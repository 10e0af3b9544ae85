package tracing

import (
	"context"
	"errors"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Off, every method returns at once: no allocation, no span recorded.
func TestOffAllocatesNothing(t *testing.T) {
	var tr *Tracer
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		c, s := tr.Root(ctx, "parley.send")
		if s.IsRecording() || c != ctx {
			t.Fatal("a span of a tracer that is off records")
		}
		_, s = tr.Child(c, "parley.commit")
		s.End()
		s, tp := tr.Send(c, "parley.replicate")
		s.End()
		_, s = tr.Receive(c, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "parley.replication.receive")
		s.End()
		if tp != "" || tr.Traced(c) != nil {
			t.Fatal("a tracer that is off hands on a trace")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per change with tracing off", allocs)
	}
}

// A span sent to a peer as a traceparent continues there, in the same
// trace, as the child of the sender's span; a child of nothing, or of a
// peer that sent none, starts no trace.
func TestTraceparentCrossesToAPeer(t *testing.T) {
	expA, expB := tracetest.NewInMemoryExporter(), tracetest.NewInMemoryExporter()
	a := New(NewProvider(Config{Node: "a"}, sdktrace.WithSyncer(expA)))
	b := New(NewProvider(Config{Node: "b"}, sdktrace.WithSyncer(expB)))
	ctx, root := a.Root(context.Background(), "parley.send")
	span, tp := a.Send(ctx, "parley.replicate")
	if tp == "" {
		t.Fatal("no traceparent for a recorded span")
	}
	_, recv := b.Receive(context.Background(), tp, "parley.replication.receive")
	recv.End()
	span.End()
	root.End()
	got := expB.GetSpans()
	if len(got) != 1 || got[0].SpanContext.TraceID() != span.SpanContext().TraceID() || got[0].Parent.SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("the peer's span %+v is not the child of %v", got, span.SpanContext())
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-0000000000000000-01"} {
		if _, s := b.Receive(context.Background(), bad, "x"); s.IsRecording() {
			t.Errorf("traceparent %q started a span", bad)
		}
	}
	if _, s := a.Child(context.Background(), "x"); s.IsRecording() {
		t.Error("a child of no span records")
	}
	if _, s := a.Child(nil, "x"); s.IsRecording() {
		t.Error("a child of a nil context records")
	}
}

func TestCheckEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4318":             "http://127.0.0.1:4318/v1/traces",
		"http://127.0.0.1:4318/":            "http://127.0.0.1:4318/v1/traces",
		"https://otel.example:443/x/traces": "https://otel.example:443/x/traces",
	} {
		if got, err := CheckEndpoint(in); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"127.0.0.1:4318", "grpc://h:4317", "http://", "http://h:4318/?a=b", "://"} {
		if _, err := CheckEndpoint(in); !errors.Is(err, ErrEndpoint) {
			t.Errorf("%q: %v, want ErrEndpoint", in, err)
		}
	}
}
