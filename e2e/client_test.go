package e2e

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"parley/gateway/client"
	"parley/gateway/wire"
)

// wsClient is a connection of parley/gateway/client as the end-to-end
// tests use it: frames as maps.
type wsClient struct {
	c *client.Conn
}

// dialQueue is how many frames a test's connection holds unread: tests
// read in bursts.
const dialQueue = 8192

func dialNode(ctx context.Context, n *nodeProc) (*wsClient, error) {
	// http.DefaultClient: its transport trusts the package's test
	// certificate (tls_test.go), for nodes that serve HTTPS.
	c, err := client.DialWS(ctx, client.WSURL(n.URL), client.Options{Queue: dialQueue, HTTPClient: http.DefaultClient})
	if err != nil {
		return nil, err
	}
	return &wsClient{c: c}, nil
}

func (cl *wsClient) send(ctx context.Context, v map[string]any) error {
	return cl.c.Send(ctx, v)
}

// frameMap is a frame as a map; nil for one that is not a JSON object.
func frameMap(f client.Frame) map[string]any {
	m, _ := f.Map()
	return m
}

// await returns the next frame of type typ matching pred, or an error when
// an error frame comes first (unless typ is "error"), or when the
// connection ends or ctx does.
func (cl *wsClient) await(ctx context.Context, typ string, pred func(map[string]any) bool) (map[string]any, error) {
	var m map[string]any
	_, err := cl.c.Await(ctx, func(f client.Frame) bool {
		m = frameMap(f)
		if m == nil {
			return false
		}
		return f.Type == wire.TypeError && typ != wire.TypeError ||
			(typ == "" || f.Type == typ) && (pred == nil || pred(m))
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("waiting for %s: %w", typ, err)
	}
	if m["type"] == wire.TypeError && typ != wire.TypeError {
		return nil, fmt.Errorf("error frame: %v", m)
	}
	return m, nil
}

// awaitRef returns the next frame answering ref, an error frame included.
func (cl *wsClient) awaitRef(ctx context.Context, ref string) (map[string]any, error) {
	f, err := cl.c.Await(ctx, func(f client.Frame) bool { return f.Ref == ref }, nil)
	if err != nil {
		return nil, fmt.Errorf("waiting for %s: %w", ref, err)
	}
	return frameMap(f), nil
}

func (cl *wsClient) close() { cl.c.Close() }

// keepAlive pings every interval until ctx ends or a ping cannot be sent,
// as a real client does: the node closes a connection silent for three
// heartbeats (30 s by default), and a test's connection may wait that long
// on something else (a mail, a browser).
func (cl *wsClient) keepAlive(ctx context.Context, interval time.Duration) {
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if cl.send(ctx, map[string]any{"type": "ping"}) != nil {
					return
				}
			}
		}
	}()
}

// visitorHello says hello as a visitor (with a stored identity when id is
// non-nil) and returns the welcome.
func (cl *wsClient) visitorHello(ctx context.Context, id map[string]any) (map[string]any, error) {
	return cl.hello(ctx, "demo", id)
}

// visitorHelloIn says hello as a new anonymous visitor of a workspace.
func (cl *wsClient) visitorHelloIn(ctx context.Context, workspace string) (map[string]any, error) {
	return cl.hello(ctx, workspace, nil)
}

func (cl *wsClient) hello(ctx context.Context, workspace string, id map[string]any) (map[string]any, error) {
	h := map[string]any{"type": "hello", "v": 1, "workspace": workspace, "role": "visitor"}
	for k, v := range id {
		h[k] = v
	}
	if err := cl.send(ctx, h); err != nil {
		return nil, err
	}
	return cl.await(ctx, "welcome", nil)
}

// history resumes conv from the start and returns every deliver frame until
// resumed says the replay is complete.
func (cl *wsClient) history(ctx context.Context, conv string) ([]map[string]any, error) {
	return cl.resumeFrom(ctx, conv, 0)
}

// resumeFrom resumes conv after a seq, following "more", and returns every
// deliver frame of the replay.
func (cl *wsClient) resumeFrom(ctx context.Context, conv string, after float64) ([]map[string]any, error) {
	var out []map[string]any
	for {
		ref := fmt.Sprintf("h%v", after)
		if err := cl.send(ctx, map[string]any{"type": "resume", "ref": ref, "conversation": conv, "after": after}); err != nil {
			return nil, err
		}
		for {
			m, err := cl.await(ctx, "", func(m map[string]any) bool { return m["type"] == "deliver" || m["type"] == "resumed" })
			if err != nil {
				return nil, err
			}
			if m["type"] == "deliver" && m["conversation"] == conv {
				out = append(out, m)
				continue
			}
			if m["type"] == "resumed" && m["ref"] == ref {
				if m["more"] != true {
					return out, nil
				}
				after = m["head"].(float64)
				break
			}
		}
	}
}

func msgID(m map[string]any) string {
	return m["message"].(map[string]any)["id"].(string)
}

func idOf(i, j int) string { return fmt.Sprintf("m-%03d-%06d", i, j) }
