package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	protoclient "parley/gateway/client"

	"parley/gateway/wire"
)

// upstreamRelayer relays workspace ws2 to another gateway and serves ws1 here.
type upstreamRelayer struct {
	url   string
	down  atomic.Bool
	dials atomic.Int64
	ip    atomic.Value
}

func (r *upstreamRelayer) Relay(ctx context.Context, ws, key, ip string) (Upstream, error) {
	if ws != "ws2" {
		return nil, ErrServedHere
	}
	if r.down.Load() {
		return nil, fmt.Errorf("test: %w", ErrRelayUnavailable)
	}
	r.dials.Add(1)
	r.ip.Store(ip)
	return DialUpstream(ctx, nil, r.url, http.Header{"X-Test-Relay-For": {ip}})
}

// relayPair is a relaying gateway in front of a serving one; the serving
// one trusts the test header as the relay's claim about the client.
func relayPair(t *testing.T) (edge, serving *env, r *upstreamRelayer) {
	serving = newEnv(t, func(c *Config) {
		c.Node = "serving"
		c.Forwarded = func(req *http.Request) (string, bool) {
			ip := req.Header.Get("X-Test-Relay-For")
			return ip, ip != ""
		}
	})
	r = &upstreamRelayer{url: serving.url}
	edge = newEnv(t, func(c *Config) {
		c.Node = "edge"
		c.Relay = r
		c.HelloTimeout = 300 * time.Millisecond
	})
	return edge, serving, r
}

func TestRelayCarriesTheWholeSession(t *testing.T) {
	t.Parallel()
	edge, serving, r := relayPair(t)

	// A visitor of ws2 on the edge is served by the serving node, whose
	// name the welcome carries; ws1 is served by the edge itself.
	v, welcome := edge.visitor(t, "ws2", nil)
	if welcome["node"] != "serving" {
		t.Fatalf("welcome from %v, want the serving node", welcome["node"])
	}
	if got := r.ip.Load(); got != "127.0.0.1" {
		t.Errorf("relay told the client address %v", got)
	}
	_, local := edge.visitor(t, "ws1", nil)
	if local["node"] != "edge" {
		t.Fatalf("ws1 welcome from %v, want edge", local["node"])
	}

	// Past the hello timeout of the edge (300 ms): a relayed connection is
	// not closed for "no hello", the hello went upstream.
	time.Sleep(500 * time.Millisecond)
	agent := serving.agent(t, "ws2")
	conv := v.start()
	if ack := v.say(conv, "m-000001", "hello through the relay"); ack["seq"] == nil {
		t.Fatalf("ack %v", ack)
	}
	agent.expect("deliver", msgIs("m-000001"))
	r2 := agent.ref()
	agent.send(map[string]any{"type": "send", "ref": r2, "conversation": conv, "id": "m-000002", "body": "answer"})
	agent.expect("ack", refIs(r2))
	v.expect("deliver", msgIs("m-000002"))

	// The edge stored nothing of ws2.
	if convs, err := edge.st.Conversations("ws2", ""); err != nil || len(convs) != 0 {
		t.Errorf("edge store holds %d ws2 conversations (%v)", len(convs), err)
	}
	if convs, err := serving.st.Conversations("ws2", ""); err != nil || len(convs) != 1 {
		t.Errorf("serving store holds %d ws2 conversations (%v), want 1", len(convs), err)
	}

	// Errors come back as the serving node sends them, and a fatal one
	// closes the client's connection with the serving node's code.
	v.send(map[string]any{"type": "send", "ref": "bad", "conversation": conv, "id": "x", "body": "too short an id"})
	if e := v.expect("error", refIs("bad")); e["code"] != wire.CodeBadRequest {
		t.Errorf("bad send through the relay: %v", e)
	}
	v.send(map[string]any{"type": "hello", "v": 1, "workspace": "ws2", "role": "visitor"})
	v.expect("error", func(m map[string]any) bool { return m["code"] == wire.CodeBadRequest })

	v.send(map[string]any{"type": "resume", "ref": "r", "conversation": conv, "after": 0})
	v.expect("resumed", refIs("r"))
	bad := edge.dial(t)
	bad.send(map[string]any{"type": "hello", "v": 1, "workspace": "ws2", "role": "agent", "token": "wrong"})
	if code := closeCode(t, bad); code != wire.CloseAuthFailed {
		t.Errorf("refused agent through the relay closed with %d, want %d", code, wire.CloseAuthFailed)
	}
}

func TestRelayEnds(t *testing.T) {
	t.Parallel()
	t.Run("no serving node reachable", func(t *testing.T) {
		t.Parallel()
		edge, _, r := relayPair(t)
		r.down.Store(true)
		cl := edge.dial(t)
		cl.send(map[string]any{"type": "hello", "ref": "h", "v": 1, "workspace": "ws2", "role": "visitor"})
		if e := cl.expect("error", refIs("h")); e["code"] != wire.CodeUnavailable {
			t.Errorf("error %v", e)
		}
		if code := closeCode(t, cl); code != wire.CloseRestart {
			t.Errorf("closed with %d, want %d (reconnect)", code, wire.CloseRestart)
		}
	})
	t.Run("serving node shuts down", func(t *testing.T) {
		t.Parallel()
		edge, serving, _ := relayPair(t)
		v, _ := edge.visitor(t, "ws2", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		serving.gw.Shutdown(ctx)
		if e := v.expect("error", nil); e["code"] != wire.CodeUnavailable {
			t.Errorf("error %v", e)
		}
		if code := closeCode(t, v); code != wire.CloseRestart {
			t.Errorf("closed with %d, want %d", code, wire.CloseRestart)
		}
	})
	t.Run("edge shuts down", func(t *testing.T) {
		t.Parallel()
		edge, _, _ := relayPair(t)
		v, _ := edge.visitor(t, "ws2", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := edge.gw.Shutdown(ctx); err != nil {
			t.Errorf("shutdown with a relayed connection: %v", err)
		}
		if code := closeCode(t, v); code != wire.CloseRestart {
			t.Errorf("closed with %d, want %d", code, wire.CloseRestart)
		}
	})
	t.Run("client floods", func(t *testing.T) {
		t.Parallel()
		edge, _, _ := relayPair(t)
		v, _ := edge.visitor(t, "ws2", nil)
		for range 200 {
			if err := v.c.Write(context.Background(), []byte(`{"type":"ping"}`)); err != nil {
				break
			}
		}
		if code := closeCode(t, v); code != wire.CloseRateLimited {
			t.Errorf("closed with %d, want %d", code, wire.CloseRateLimited)
		}
	})
}

// A connection relayed here is served here or refused, never relayed on:
// two nodes that disagree about a workspace's region must not bounce it.
func TestRelayedConnectionIsNotRelayedAgain(t *testing.T) {
	t.Parallel()
	relayTo := newEnv(t, nil)
	mid := newEnv(t, func(c *Config) {
		c.Node = "mid"
		c.Relay = &upstreamRelayer{url: relayTo.url}
		c.Forwarded = func(req *http.Request) (string, bool) {
			ip := req.Header.Get("X-Test-Relay-For")
			return ip, ip != ""
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := protoclient.DialWS(ctx, mid.url, protoclient.Options{Header: http.Header{"X-Test-Relay-For": {"10.0.0.9"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(ctx, []byte(`{"type":"hello","v":1,"workspace":"ws2","role":"visitor"}`))
	f, err := c.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(f.Raw); !strings.Contains(got, `"welcome"`) || !strings.Contains(got, `"node":"mid"`) {
		t.Fatalf("relayed connection got %s, want mid's own welcome", got)
	}
}
