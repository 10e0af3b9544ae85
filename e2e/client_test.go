package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/coder/websocket"
)

// wsClient is a minimal protocol client for end-to-end tests: one reader
// goroutine feeding a channel, so that waiting never closes the connection.
type wsClient struct {
	c      *websocket.Conn
	frames chan map[string]any
}

func dialNode(ctx context.Context, n *nodeProc) (*wsClient, error) {
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.URL, "http")+"/v1/ws", nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	cl := &wsClient{c: c, frames: make(chan map[string]any, 8192)}
	go func() {
		defer close(cl.frames)
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				cl.frames <- m
			}
		}
	}()
	return cl, nil
}

func (cl *wsClient) send(ctx context.Context, v map[string]any) error {
	b, _ := json.Marshal(v)
	return cl.c.Write(ctx, websocket.MessageText, b)
}

// await returns the next frame of type typ matching pred, or an error when
// the connection ends or ctx does.
func (cl *wsClient) await(ctx context.Context, typ string, pred func(map[string]any) bool) (map[string]any, error) {
	for {
		select {
		case m, ok := <-cl.frames:
			if !ok {
				return nil, fmt.Errorf("connection closed waiting for %s", typ)
			}
			if m["type"] == "error" && typ != "error" {
				return nil, fmt.Errorf("error frame: %v", m)
			}
			if (typ == "" || m["type"] == typ) && (pred == nil || pred(m)) {
				return m, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", typ, ctx.Err())
		}
	}
}

// awaitRef returns the next frame answering ref, an error frame included.
func (cl *wsClient) awaitRef(ctx context.Context, ref string) (map[string]any, error) {
	for {
		select {
		case m, ok := <-cl.frames:
			if !ok {
				return nil, fmt.Errorf("connection closed waiting for %s", ref)
			}
			if m["ref"] == ref {
				return m, nil
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", ref, ctx.Err())
		}
	}
}

func (cl *wsClient) close() { cl.c.Close(websocket.StatusNormalClosure, "") }

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
