package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// BenchmarkSpansOfASend is the tracing work of one message's way, without
// the work itself: the spans a send makes on its node (send, commit,
// fan-out, one replicate, confirm) and on one peer (receive, deliver),
// with their attributes, as the code makes them. Off is a nil Tracer; on,
// every trace is recorded and batched to an exporter that drops it (the
// protobuf encoding and the HTTP post of the OTLP exporter are not in it:
// BenchmarkSendPath in node has them).
//
//	go test -run '^$' -bench SpansOfASend -count 5 ./tracing/
func BenchmarkSpansOfASend(b *testing.B) {
	b.Run("off", func(b *testing.B) { benchSpans(b, nil, nil) })
	b.Run("on", func(b *testing.B) {
		tp := NewProvider(Config{Node: "n1"}, sdktrace.WithBatcher(discard{}))
		defer tp.Shutdown(context.Background())
		tp2 := NewProvider(Config{Node: "n2"}, sdktrace.WithBatcher(discard{}))
		defer tp2.Shutdown(context.Background())
		benchSpans(b, New(tp), New(tp2))
	})
}

func benchSpans(b *testing.B, tr, peer *Tracer) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		sctx, send := tr.Root(ctx, "parley.send")
		if send.IsRecording() {
			send.SetAttributes(Transport("ws"), Workspace("acme"), Role("visitor"), Bytes(60))
		}
		cctx, commit := tr.Child(sctx, "parley.commit")
		fctx, fan := tr.Child(tr.Traced(cctx), "parley.fanout")
		if fan.IsRecording() {
			fan.SetAttributes(Workspace("acme"), Seq(7), Origin("n1"), OSeq(7), Bytes(60))
		}
		rep, tp := tr.Send(fctx, "parley.replicate")
		if rep.IsRecording() {
			rep.SetAttributes(Peer("n2"), Events(1))
		}
		fan.End()
		rctx, recv := peer.Receive(ctx, tp, "parley.replication.receive")
		if recv.IsRecording() {
			recv.SetAttributes(Peer("n1"), Events(1), Bytes(800))
		}
		_, del := peer.Child(peer.Traced(rctx), "parley.deliver")
		if del.IsRecording() {
			del.SetAttributes(Workspace("acme"), Seq(9), Origin("n1"), OSeq(7), Bytes(60))
		}
		del.End()
		recv.End()
		rep.End()
		if commit.IsRecording() {
			commit.SetAttributes(Seq(7), Dup(false))
		}
		commit.End()
		_, confirm := tr.Child(sctx, "parley.confirm")
		confirm.End()
		if send.IsRecording() {
			send.SetAttributes(Seq(7), Dup(false))
		}
		send.End()
	}
}

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
