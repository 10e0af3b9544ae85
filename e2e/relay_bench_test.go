package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkRelayedDelivery measures what a relay costs: a workspace pinned
// to eu, an agent on the eu node, and a visitor sending at 200 messages a
// second, open loop, either on the eu node itself (the baseline) or on the
// us node, which relays its connection to eu. Latency runs from the
// visitor's write to the agent's read of the deliver.
//
//	go test -run '^$' -bench RelayedDelivery -benchtime 2000x -count 3 ./e2e/
func BenchmarkRelayedDelivery(b *testing.B) {
	bin, err := benchBinary()
	if err != nil {
		b.Fatal(err)
	}
	tc := startClusterBin(b, bin, 2, "-log-level", "warn", "-frame-rate", "100000", "-workspace-rate", "100000")
	eu, us := tc.nodes[0], tc.nodes[1]
	var created struct{ Index uint64 }
	mustAPI(b, eu, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "euonly", "name": "EU", "region": "eu", "plan": "business"}, &created)
	mustAPI(b, us, "GET", fmt.Sprintf("/v1/admin/workspaces/euonly?min_index=%d", created.Index), tc.root, nil, nil)
	for _, where := range []struct {
		name string
		on   *nodeProc
	}{{"direct", eu}, {"relayed", us}} {
		b.Run(where.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			agent := tc.agentOn(b, ctx, eu, eu, "euonly", fmt.Sprintf("bench%d", time.Now().UnixNano()%1e9))
			measureDelivery(b, ctx, where.on, agent, "euonly")
		})
	}
}

// measureDelivery starts a visitor on a node, sends b.N messages at 200 a
// second, open loop, and reports the agent's delivery latency percentiles.
func measureDelivery(b *testing.B, ctx context.Context, on *nodeProc, agent *wsClient, ws string) {
	b.Helper()
	v, err := dialNode(ctx, on)
	if err != nil {
		b.Fatal(err)
	}
	defer v.close()
	if _, err := v.visitorHelloIn(ctx, ws); err != nil {
		b.Fatal(err)
	}
	v.send(ctx, map[string]any{"type": "start", "ref": "s"})
	st, err := v.await(ctx, "started", nil)
	if err != nil {
		b.Fatal(err)
	}
	conv := st["conversation"].(string)
	sentAt := make([]time.Time, b.N)
	lat := make([]time.Duration, 0, b.N)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(lat) < b.N {
			m, err := agent.await(ctx, "deliver", nil)
			if err != nil {
				return
			}
			var i int
			if _, err := fmt.Sscanf(strings.TrimPrefix(msgID(m), "m-b-"), "%d", &i); err == nil && i < b.N {
				lat = append(lat, time.Since(sentAt[i]))
			}
		}
	}()
	b.ResetTimer()
	tick := time.NewTicker(5 * time.Millisecond) // 200/s
	for i := range b.N {
		<-tick.C
		sentAt[i] = time.Now()
		v.send(ctx, map[string]any{"type": "send", "ref": fmt.Sprint(i), "conversation": conv, "id": fmt.Sprintf("m-b-%08d", i), "body": "benchmark message"})
	}
	tick.Stop()
	<-done
	b.StopTimer()
	if len(lat) < b.N {
		b.Fatalf("%d of %d delivered", len(lat), b.N)
	}
	slices.Sort(lat)
	ms := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}
