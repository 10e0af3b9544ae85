package node

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestMetricsFollowTraffic chats through a real node and checks that the
// counters and histograms on /metrics moved accordingly.
func TestMetricsFollowTraffic(t *testing.T) {
	t.Parallel()
	const token = "0123456789abcdef-token"
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: token})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ag := helloTest(t, ctx, r.base, map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": token}, typeIs("welcome"))
	v := helloTest(t, ctx, r.base, map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "visitor"}, typeIs("welcome"))
	v.send(map[string]any{"type": "start"})
	conv := v.await(typeIs("started"))["conversation"]
	for i := range 3 {
		v.send(map[string]any{"type": "send", "conversation": conv, "id": "m-0000000" + strconv.Itoa(i), "body": "hi"})
		v.await(typeIs("ack"))
		ag.await(typeIs("deliver"))
	}
	v.send(map[string]any{"type": "nonsense"})
	v.await(typeIs("error"))

	_, body := get(t, r.base+"/metrics")
	want := []struct {
		re  string
		min float64
	}{
		{`parley_connections\{transport="ws"\} (\S+)`, 2},
		{`parley_messages_in_total\{transport="ws"\} (\S+)`, 3},
		{`parley_messages_out_total\{transport="ws"\} (\S+)`, 6}, // to the agent and back to the visitor
		{`parley_delivery_seconds_count\{transport="ws"\} (\S+)`, 6},
		{`parley_errors_total\{code="unknown_type"\} (\S+)`, 1},
		{`parley_store_commit_seconds_count (\S+)`, 4},
		{`parley_store_batch_size_sum (\S+)`, 4},
	}
	for _, w := range want {
		m := regexp.MustCompile(w.re).FindStringSubmatch(body)
		if m == nil {
			t.Errorf("metric %s missing", w.re)
			continue
		}
		if v, _ := strconv.ParseFloat(m[1], 64); v < w.min {
			t.Errorf("%s = %v, want >= %v", w.re, v, w.min)
		}
	}
}
