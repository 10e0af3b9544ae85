package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkDelivery measures visitor-to-agent delivery through one node over
// real loopback WebSocket connections: visitors send at a fixed total rate
// (open loop: a slow reply never delays the next send), one agent receives
// everything. Latency runs from the visitor's write to the agent's read, and
// includes the fsync that precedes every delivery.
func BenchmarkDelivery(b *testing.B) {
	for _, rate := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("rate=%d/visitors=50", rate), func(b *testing.B) {
			benchDelivery(b, rate, 50)
		})
	}
}

func benchDelivery(b *testing.B, rate, visitors int) {
	commits := &commitTimes{}
	srvLat := &serverLatency{}
	e := newEnvWith(b, commits, func(c *Config) {
		c.FrameRate, c.FrameBurst = 1e6, 1e6
		c.WorkspaceRate, c.WorkspaceBurst = 1e7, 1e7
		c.IPMessageRate, c.IPMessageBurst, c.AddressShare = 1e7, 1e7, 1
		c.IPStartRate, c.IPStartBurst = 1e7, 1e7
		c.IPPlanConversations, c.IPPlanMessages = 1e12, 1e12
		c.SendQueue = 1 << 16
		c.Metrics = srvLat
	})
	ag := e.agent(b, "ws1")
	vs := make([]*client, visitors)
	convs := make([]string, visitors)
	for i := range vs {
		vs[i], _ = e.visitor(b, "ws1", nil)
		convs[i] = vs[i].start()
	}
	// Drain visitors' own frames (acks, delivers) so that they never block.
	for _, v := range vs {
		go func() {
			for range v.c.Frames() {
			}
		}()
	}
	lat := make([]time.Duration, 0, b.N)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(lat) < b.N {
			f, ok := <-ag.c.Frames()
			if !ok {
				return
			}
			raw := f.Raw
			if !strings.Contains(string(raw), `"deliver"`) {
				continue
			}
			var m struct {
				Message struct{ Body string }
			}
			json.Unmarshal(raw, &m)
			if ns, err := strconv.ParseInt(strings.TrimPrefix(m.Message.Body, "t="), 10, 64); err == nil {
				lat = append(lat, time.Since(time.Unix(0, ns)))
			}
		}
	}()
	interval := time.Second / time.Duration(rate)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		// Open loop: message i is due at start + i*interval, whatever happened before.
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		v := vs[i%visitors]
		body := "t=" + strconv.FormatInt(time.Now().UnixNano(), 10)
		frame, _ := json.Marshal(map[string]any{"type": "send", "conversation": convs[i%visitors], "id": fmt.Sprintf("m-%010d", i), "body": body})
		if err := v.c.Write(context.Background(), frame); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("only %d of %d delivered", len(lat), b.N)
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1.0), "max-ms")
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	// The baseline: the store's commit (fsync included), which every
	// delivery waits for, measured in the same run.
	commits.mu.Lock()
	defer commits.mu.Unlock()
	c := commits.d
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	if len(c) > 0 {
		b.ReportMetric(float64(c[len(c)/2].Microseconds())/1000, "commit-p50-ms")
		b.ReportMetric(float64(c[len(c)*99/100].Microseconds())/1000, "commit-p99-ms")
	}
	srvLat.mu.Lock()
	defer srvLat.mu.Unlock()
	sd := srvLat.d
	sort.Slice(sd, func(i, j int) bool { return sd[i] < sd[j] })
	if len(sd) > 0 {
		b.ReportMetric(float64(sd[len(sd)*99/100].Microseconds())/1000, "node-p99-ms")
	}
}

// serverLatency records the node's own view of delivery: from the frame
// read to the deliver frame written to the socket.
type serverLatency struct {
	noMetrics
	mu sync.Mutex
	d  []time.Duration
}

func (s *serverLatency) Delivered(_ string, d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

type commitTimes struct {
	mu sync.Mutex
	d  []time.Duration
}

func (c *commitTimes) ObserveCommit(d time.Duration, _ int, _ error) {
	c.mu.Lock()
	c.d = append(c.d, d)
	c.mu.Unlock()
}
