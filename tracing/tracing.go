// Package tracing is Parley's OpenTelemetry tracing: the spans of a
// connection's hello and of a message's way (send, commit, fan-out,
// replication to each peer, delivery on the peer), exported over OTLP/HTTP
// when a node is given an endpoint, off otherwise (docs/operations.md,
// *Tracing*).
//
// Off is a nil *Tracer: every method checks for it first, allocates nothing
// and returns a span that records nothing, so the hot path pays a nil
// check. Spans carry IDs that name no person (workspace, node, origin,
// seq, counts, sizes) and never a message's text, a participant's name,
// ID or address, a conversation's ID, or an error's text: callers add
// attributes with the helpers of attrs.go only, and a test scans every
// exported span for canaries (node/tracing_test.go).
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ServiceName is the service.name of every node's spans; nodes differ by
// service.instance.id (the node ID) and cloud.region.
const ServiceName = "parley"

// instrumentation names the tracer (the instrumentation scope).
const instrumentation = "parley"

// Config configures Start. The zero value is tracing off.
type Config struct {
	// Endpoint is the OTLP/HTTP collector's URL, http:// or https://; a
	// URL without a path gets /v1/traces. Empty: tracing off.
	Endpoint string
	// SampleRatio is the fraction of the traces this node starts that are
	// recorded (by trace ID); a trace a peer started is recorded here when
	// the peer recorded it. Zero: 1, every trace.
	SampleRatio float64
	// Node and Region name this node in the spans' resource
	// (service.instance.id, cloud.region). Version is service.version.
	Node, Region, Version string
	// BatchTimeout is how long a finished span may wait before it is
	// exported. Zero: 1s.
	BatchTimeout time.Duration
	// Logger is told when exporting fails, at most once a minute (the
	// collector's address and the failure; no span's content). Zero:
	// slog.Default().
	Logger *slog.Logger
}

// ErrEndpoint is what Start and CheckEndpoint return for an endpoint that
// is not an http:// or https:// URL with a host.
var ErrEndpoint = errors.New("otlp endpoint: not an http:// or https:// URL with a host")

// CheckEndpoint returns the collector URL an endpoint means (with
// /v1/traces when it has no path), or ErrEndpoint.
func CheckEndpoint(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: %q", ErrEndpoint, endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// Start returns the tracer of cfg and what flushes and stops its exporter
// (call it on shutdown); with no Endpoint, a nil Tracer (off) and a
// shutdown that does nothing.
func Start(cfg Config) (*Tracer, func(context.Context) error, error) {
	if cfg.Endpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	u, err := CheckEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, nil, err
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(u))
	if err != nil {
		return nil, nil, fmt.Errorf("otlp exporter: %w", err)
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// The SDK reports failures to a handler of the process's; the last
	// node started in a process has them (one, outside tests).
	var last atomic.Int64
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		now := time.Now().UnixNano()
		if prev := last.Load(); now-prev >= int64(time.Minute) && last.CompareAndSwap(prev, now) {
			cfg.Logger.Warn("tracing: exporting spans failed (reported once a minute)", "endpoint", u, "err", err)
		}
	}))
	tp := NewProvider(cfg, sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(cfg.BatchTimeout)))
	return New(tp), tp.Shutdown, nil
}

// NewProvider is the SDK's provider for cfg's node, sampler and resource,
// with the span processors given (Start's batcher to OTLP; a test's
// in-memory exporter).
func NewProvider(cfg Config, opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	ratio := cfg.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	attrs := []attribute.KeyValue{
		attribute.String("service.name", ServiceName),
		attribute.String("service.instance.id", cfg.Node),
	}
	if cfg.Region != "" {
		attrs = append(attrs, attribute.String("cloud.region", cfg.Region))
	}
	if cfg.Version != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.Version))
	}
	opts = append([]sdktrace.TracerProviderOption{
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	}, opts...)
	return sdktrace.NewTracerProvider(opts...)
}

// Tracer starts Parley's spans. A nil *Tracer is off.
type Tracer struct {
	t trace.Tracer
}

// New returns a Tracer of tp; nil (off) when tp is nil.
func New(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		return nil
	}
	return &Tracer{t: tp.Tracer(instrumentation)}
}

// On says whether t records anything.
func (t *Tracer) On() bool { return t != nil }

// none is the span of a tracer that is off: it records nothing, and
// returning it allocates nothing.
var none = trace.SpanFromContext(context.Background())

// Root starts a span that begins a trace (a client's hello or change),
// whatever ctx carries.
func (t *Tracer) Root(ctx context.Context, name string) (context.Context, trace.Span) {
	if t == nil {
		return ctx, none
	}
	return t.t.Start(ctx, name, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer))
}

// Child starts a span under the one parent carries; none when parent is
// nil or carries no span that records (the change was not traced, or not
// sampled), so that nothing starts a trace of its own halfway.
func (t *Tracer) Child(parent context.Context, name string) (context.Context, trace.Span) {
	if t == nil || parent == nil || !trace.SpanFromContext(parent).IsRecording() {
		return parent, none
	}
	return t.t.Start(parent, name)
}

// Send starts the span of sending to a peer (kind producer) under parent,
// as Child, and returns with it the traceparent to send the peer ("" when
// not recorded).
func (t *Tracer) Send(parent context.Context, name string) (trace.Span, string) {
	if t == nil || parent == nil || !trace.SpanFromContext(parent).IsRecording() {
		return none, ""
	}
	ctx, span := t.t.Start(parent, name, trace.WithSpanKind(trace.SpanKindProducer))
	return span, Traceparent(ctx)
}

// Receive starts the span of what a peer sent (kind consumer) under the
// peer's traceparent; none when traceparent is empty or malformed: a
// peer's frame without one (not traced, or a node of an older version)
// starts no trace here.
func (t *Tracer) Receive(ctx context.Context, traceparent, name string) (context.Context, trace.Span) {
	if t == nil || traceparent == "" {
		return ctx, none
	}
	remote := propagation.TraceContext{}.Extract(ctx, &carrier{v: traceparent})
	if !trace.SpanContextFromContext(remote).IsValid() {
		return ctx, none
	}
	return t.t.Start(remote, name, trace.WithSpanKind(trace.SpanKindConsumer))
}

// Traced returns ctx when it carries a span that records, for a store
// change's or event's Trace; else nil (and always nil when t is off).
func (t *Tracer) Traced(ctx context.Context) context.Context {
	if t == nil || ctx == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return nil
	}
	return ctx
}

// Traceparent is the W3C traceparent of the span ctx carries, "" when it
// records nothing.
func Traceparent(ctx context.Context) string {
	if ctx == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ""
	}
	var c carrier
	propagation.TraceContext{}.Inject(ctx, &c)
	return c.v
}

// Fail marks span failed with a fixed description (never an error's text,
// which may name a conversation or carry a peer's words).
func Fail(span trace.Span, what string) {
	if span.IsRecording() {
		span.SetStatus(codes.Error, what)
	}
}

// carrier holds one traceparent for the W3C propagator (no tracestate:
// nothing of Parley's is in it).
type carrier struct{ v string }

const traceparentHeader = "traceparent"

func (c *carrier) Get(k string) string {
	if k == traceparentHeader {
		return c.v
	}
	return ""
}

func (c *carrier) Set(k, v string) {
	if k == traceparentHeader {
		c.v = v
	}
}

func (c *carrier) Keys() []string { return []string{traceparentHeader} }
