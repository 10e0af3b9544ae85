package node

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestMetricsFollowTraffic chats through a real node and checks that the
// counters and histograms on /metrics moved accordingly.
func TestMetricsFollowTraffic(t *testing.T) {
	t.Parallel()
	const token = "0123456789abcdef-token"
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: token})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := "ws" + r.base[len("http"):] + "/v1/ws"
	dial := func(hello map[string]any) (*websocket.Conn, func(string) map[string]any) {
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		frames := make(chan map[string]any, 100)
		go func() {
			for {
				_, b, err := c.Read(context.Background())
				if err != nil {
					close(frames)
					return
				}
				var m map[string]any
				json.Unmarshal(b, &m)
				frames <- m
			}
		}()
		b, _ := json.Marshal(hello)
		c.Write(ctx, websocket.MessageText, b)
		await := func(typ string) map[string]any {
			for m := range frames {
				if m["type"] == typ {
					return m
				}
			}
			t.Fatalf("connection closed waiting for %s", typ)
			return nil
		}
		await("welcome")
		return c, await
	}
	send := func(c *websocket.Conn, v map[string]any) {
		b, _ := json.Marshal(v)
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	_, agentAwait := dial(map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": token})
	v, visitorAwait := dial(map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "visitor"})
	send(v, map[string]any{"type": "start"})
	conv := visitorAwait("started")["conversation"]
	for i := range 3 {
		send(v, map[string]any{"type": "send", "conversation": conv, "id": "m-0000000" + strconv.Itoa(i), "body": "hi"})
		visitorAwait("ack")
		agentAwait("deliver")
	}
	send(v, map[string]any{"type": "nonsense"})
	visitorAwait("error")

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
