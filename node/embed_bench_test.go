package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"parley/gateway/client"

	"parley/embedder"
)

// BenchmarkChatLatencyWhileEmbedding measures visitor-to-agent delivery
// through a real node (loopback WebSockets, bbolt on disk) at a fixed rate,
// in alternating phases: the embedding worker idle, then busy re-embedding
// every seeded conversation (the model running, vectors being written).
// Same run, same machine; it reports medians and p99 of each and their
// ratios. Run it alone:
//
//	go test -run '^$' -bench ChatLatencyWhileEmbedding -benchtime 1x -count 3 ./node/
func BenchmarkChatLatencyWhileEmbedding(b *testing.B) {
	needEmbedder(b)
	// As the node runs it: the worker on a niced thread, embedding at most
	// half the time.
	b.Run("worker=niced-duty50", benchChatWhileEmbedding)
	// Without either: what they buy.
	b.Run("worker=plain", func(b *testing.B) {
		tuneWorker = func(c *embedder.WorkerConfig) { c.LowPriority, c.Duty = false, 1 }
		defer func() { tuneWorker = func(*embedder.WorkerConfig) {} }()
		benchChatWhileEmbedding(b)
	})
}

func benchChatWhileEmbedding(b *testing.B) {
	const (
		seeded   = 600 // past conversations to re-embed in the busy phases
		visitors = 20
		rate     = 100 // messages per second, all visitors together
		phase    = 4 * time.Second
		rounds   = 2 // idle, busy, idle, busy
	)
	r := benchNode(b, Config{DataDir: b.TempDir(), AgentToken: testToken, Embedder: "auto", EmbedDebounce: 10 * time.Millisecond, H3Addr: h3Off})
	var keys []embedder.Key
	texts := []string{
		"My parcel has not been delivered and tracking shows nothing",
		"I forgot my password and cannot log in",
		"Can I get a refund for a broken kettle? It stopped working after a week",
		"How do I change the delivery address of my order?",
	}
	for i := range seeded {
		id := cid(1_000_000 + i)
		seedConv(b, r.n.store, "demo", id, texts[i%len(texts)], fmt.Sprintf("order number %d, thanks", i), "A:Let me check that for you.")
		keys = append(keys, embedder.Key{Workspace: "demo", ID: id})
	}
	// Their first embedding is not needed: the busy phases embed them.
	forget := func() {
		for _, k := range keys {
			r.n.emb.worker.Forget(k)
		}
		waitIdle(b, r.n.emb)
	}
	forget()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dial := func(hello map[string]any) *testConn {
		c := dialTest(b, ctx, r.base, client.Options{})
		c.send(hello)
		return c
	}
	agent := dial(map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": testToken})
	agent.await(typeIs("welcome"))

	// The agent's reader records when each message's deliver arrives.
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var lat []time.Duration
	var errFrames []string
	go func() {
		for fr := range agent.c.Frames() {
			raw, now := fr.Raw, time.Now()
			var f struct {
				Type    string `json:"type"`
				Message struct {
					ID string `json:"id"`
				} `json:"message"`
			}
			if json.Unmarshal(raw, &f) != nil || f.Type != "deliver" {
				continue
			}
			mu.Lock()
			if t0, ok := sent[f.Message.ID]; ok {
				lat = append(lat, now.Sub(t0))
				delete(sent, f.Message.ID)
			}
			mu.Unlock()
		}
	}()

	type visitor struct {
		c    *client.Conn
		conv string
	}
	vs := make([]visitor, visitors)
	for i := range vs {
		c := dial(map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "visitor"})
		c.await(typeIs("welcome"))
		c.send(map[string]any{"type": "start", "ref": "s"})
		vs[i] = visitor{c.c, c.await(typeIs("started"))["conversation"].(string)}
		// Acks and delivers to the visitor are read and dropped.
		go func() {
			for f := range c.c.Frames() {
				if f.Type == "error" {
					mu.Lock()
					errFrames = append(errFrames, string(f.Raw))
					mu.Unlock()
				}
			}
		}()
	}
	// Pings keep every connection alive through the long idle waits: the
	// node closes connections that stay silent past the heartbeat.
	go func() {
		ping, _ := json.Marshal(map[string]any{"type": "ping"})
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			agent.c.Write(ctx, ping)
			for _, v := range vs {
				v.c.Write(ctx, ping)
			}
		}
	}()
	// The 20 live conversations settle before measuring.
	waitIdle(b, r.n.emb)

	seq := 0
	// run sends at a fixed rate for d (open loop: each message when it is
	// due) and returns the delivery latencies.
	run := func(d time.Duration) []time.Duration {
		mu.Lock()
		lat = nil
		mu.Unlock()
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		end := time.Now().Add(d)
		for i := 0; time.Now().Before(end); i++ {
			<-tick.C
			v := vs[i%len(vs)]
			seq++
			id := fmt.Sprintf("bench-%08d", seq)
			raw, _ := json.Marshal(map[string]any{"type": "send", "conversation": v.conv, "id": id, "body": "Is my order on its way? Reference " + id})
			mu.Lock()
			sent[id] = time.Now()
			mu.Unlock()
			if err := v.c.Write(ctx, raw); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond) // the last delivers
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(lat)
		clear(sent)
		return out
	}

	var idle, busy []time.Duration
	var embedded uint64
	var busyTime time.Duration
	b.ResetTimer()
	for range rounds {
		waitIdle(b, r.n.emb)
		idle = append(idle, run(phase)...)

		// Busy: every seeded conversation is embedded again.
		r.n.emb.forgetIndexed()
		for _, k := range keys {
			r.n.emb.worker.Notify(k)
		}
		before := r.n.emb.worker.Stats()
		time.Sleep(50 * time.Millisecond) // past the debounce: the worker is running
		start := time.Now()
		busy = append(busy, run(phase)...)
		busyTime += time.Since(start)
		after := r.n.emb.worker.Stats()
		if after.Pending == 0 {
			b.Fatalf("the worker ran out of work during the busy phase (%+v): seed more conversations", after)
		}
		embedded += after.Embedded - before.Embedded
		forget()
	}
	b.StopTimer()
	if len(errFrames) > 0 {
		b.Fatalf("%d error frames, first %s", len(errFrames), errFrames[0])
	}
	if want := int(phase.Seconds()*rate*rounds) * 9 / 10; len(idle) < want || len(busy) < want {
		b.Fatalf("too few deliveries measured: idle %d, busy %d, want %d each", len(idle), len(busy), want)
	}
	q := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
	}
	i50, b50, i99, b99 := q(idle, 0.5), q(busy, 0.5), q(idle, 0.99), q(busy, 0.99)
	b.ReportMetric(i50, "idle-p50-ms")
	b.ReportMetric(b50, "busy-p50-ms")
	b.ReportMetric(b50/i50, "p50-ratio")
	b.ReportMetric(i99, "idle-p99-ms")
	b.ReportMetric(b99, "busy-p99-ms")
	b.ReportMetric(b99/i99, "p99-ratio")
	b.ReportMetric(float64(embedded)/busyTime.Seconds(), "embedded/s")
	b.ReportMetric(float64(len(idle)+len(busy)), "deliveries")
}

// benchNode starts a node for a benchmark; stopped at cleanup.
func benchNode(b *testing.B, cfg Config) *running {
	b.Helper()
	cfg.HTTPAddr = "127.0.0.1:0"
	logs, out := &syncBuffer{}, &syncBuffer{}
	n, err := New(cfg, logs, out)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{n: n, base: "http://" + n.Addr(), logs: logs, out: out, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- n.Run(ctx) }()
	b.Cleanup(r.stop)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(r.base + "/readyz"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return r
			}
		}
	}
	b.Fatal("node never ready")
	return nil
}

// waitIdle waits until the worker has nothing left to do.
func waitIdle(tb testing.TB, e *embedding) {
	tb.Helper()
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if s := e.worker.Stats(); s.Pending == 0 && !s.Busy {
			return
		}
	}
	tb.Fatalf("the worker never went idle: %+v", e.worker.Stats())
}

// forgetIndexed makes the worker treat every conversation as changed.
func (e *embedding) forgetIndexed() {
	e.idxMu.Lock()
	clear(e.heads)
	e.idxMu.Unlock()
}
