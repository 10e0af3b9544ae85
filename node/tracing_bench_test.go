package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"parley/gateway/client"
)

// BenchmarkSendPath measures a visitor's send through a real node
// (loopback WebSocket, bbolt on disk, an agent subscribed) from the frame
// to its ack, one at a time: tracing off (as every node runs unless
// -otlp-endpoint is given) and on, every trace recorded and exported over
// OTLP/HTTP to a sink on loopback. Besides the time per send it reports
// the process's CPU time per send (user and system, client included) and
// the bytes exported per send. The same benchmark without the tracing=on
// case runs on the commit before tracing (docs/benchmarks.md):
//
//	go test -run '^$' -bench SendPath -benchtime 2000x -count 3 ./node/
func BenchmarkSendPath(b *testing.B) {
	b.Run("tracing=off", func(b *testing.B) { benchSendPath(b, Config{}, nil) })
	b.Run("tracing=on", func(b *testing.B) {
		var exported atomic.Int64
		sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			exported.Add(n)
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		b.Cleanup(sink.Close) // after the node's last export
		benchSendPath(b, Config{OTLPEndpoint: sink.URL, OTLPSampleRatio: 1}, &exported)
	})
}

func benchSendPath(b *testing.B, cfg Config, exported *atomic.Int64) {
	cfg.DataDir, cfg.AgentToken, cfg.H3Addr, cfg.Embedder = b.TempDir(), testToken, h3Off, embedderOff
	cfg.FrameRate, cfg.WorkspaceRate, cfg.IPMessageRate, cfg.IPMessageBurst, cfg.AddressShare = 1e6, 1e6, 1e6, 1e6, 1
	cfg.IPPlanMessages, cfg.IPPlanFraction = 1e12, 1
	r := benchNode(b, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agent := dialTest(b, ctx, r.base, client.Options{})
	agent.send(map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": testToken})
	agent.await(typeIs("welcome"))
	go func() {
		for range agent.c.Frames() { // delivers, read and dropped
		}
	}()
	vis := dialTest(b, ctx, r.base, client.Options{})
	vis.send(map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "visitor"})
	vis.await(typeIs("welcome"))
	vis.send(map[string]any{"type": "start", "ref": "s"})
	conv := vis.await(typeIs("started"))["conversation"].(string)
	send := func(i int) {
		ref := fmt.Sprintf("r%d", i)
		vis.send(map[string]any{"type": "send", "ref": ref, "conversation": conv, "id": fmt.Sprintf("m-bench-%08d", i), "body": "a message of an ordinary length, about sixty bytes"})
		if m := vis.await(func(m map[string]any) bool { return m["ref"] == ref }); m["type"] != "ack" {
			b.Fatalf("send %d: %v", i, m)
		}
	}
	for i := range 50 { // warm up
		send(-1 - i)
	}
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	var ex0 int64
	if exported != nil {
		ex0 = exported.Load()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		send(i)
	}
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/send")
	if exported != nil {
		// Spans wait up to a second for their batch: what was exported
		// during the run, a lower bound.
		b.ReportMetric(float64(exported.Load()-ex0)/float64(b.N), "exported-B/send")
	}
}
