package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"parley/gateway/client"
	"parley/gateway/wire"

	"github.com/coder/websocket"
)

// conn is one virtual client's connection as the harness drives it: it
// writes frames and reads the node's, parsed by parseFrame.
//
// Over WebSocket (wsConn) the harness reads the socket itself, as the
// peers' drivers do: no reader goroutine and queue of
// parley/gateway/client between the socket and the client's own reader,
// no second decode of every frame by encoding/json, one reused buffer.
// Over WebTransport it goes through client.Conn (clientConn).
//
// Neither takes a context per frame: a caller that must bound a wait
// closes the connection when its context ends (context.AfterFunc with
// closeNow), which ends the wait with an error.
type conn interface {
	// write sends one frame (JSON); safe for concurrent use.
	write(b []byte) error
	// next returns the next frame; its Raw is valid until the next call.
	// Only the connection's one reader calls it.
	next() (frame, error)
	// close ends the connection politely (normal close code); closeNow at
	// once. Both unblock next and write.
	close()
	closeNow()
}

// wsConn is a WebSocket read and written directly.
type wsConn struct {
	c   *websocket.Conn
	buf []byte
}

// dialWS opens a WebSocket to the node at base with hc.
func dialWS(ctx context.Context, base string, o client.Options) (*wsConn, error) {
	url := client.WSURL(base)
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: o.HTTPClient})
	if err != nil {
		if resp != nil {
			return nil, &client.HandshakeError{Status: resp.StatusCode, Err: err}
		}
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	c.SetReadLimit(1 << 20)
	return &wsConn{c: c, buf: make([]byte, 0, 1024)}, nil
}

func (w *wsConn) write(b []byte) error {
	return w.c.Write(context.Background(), websocket.MessageText, b)
}

func (w *wsConn) next() (frame, error) {
	_, r, err := w.c.Reader(context.Background())
	if err != nil {
		return frame{}, err
	}
	b := w.buf[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return frame{}, err
		}
	}
	w.buf = b
	return parseFrame(b), nil
}

func (w *wsConn) close()    { _ = w.c.Close(websocket.StatusNormalClosure, "") }
func (w *wsConn) closeNow() { _ = w.c.CloseNow() }

// clientConn is a client.Conn (WebTransport), whose reader parsed each
// frame already.
type clientConn struct{ c *client.Conn }

func (c clientConn) write(b []byte) error { return c.c.Write(context.Background(), b) }

func (c clientConn) next() (frame, error) {
	f, err := c.c.Next(context.Background())
	if err != nil {
		return frame{}, err
	}
	return fromClient(f), nil
}

func (c clientConn) close()    { c.c.Close() }
func (c clientConn) closeNow() { c.c.CloseNow() }

// sendJSON writes v as JSON.
func sendJSON(c conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	return c.write(b)
}

// answer reads frames until the frame of type typ answering ref (with ref
// "", the next of type typ), as client.Conn's Answer: an error frame
// answering ref, or one with no ref, comes back as a *client.Error.
// Frames passed over go to skip (when not nil), with Raw their own copy.
func answer(c conn, typ, ref string, skip func(frame)) (frame, error) {
	for {
		f, err := c.next()
		if err != nil {
			return frame{}, fmt.Errorf("waiting for %s %s: %w", typ, ref, err)
		}
		switch {
		case f.Type == typ && (ref == "" || f.Ref == ref):
			return f, nil
		case f.Type == wire.TypeError && (f.Ref == ref || f.Ref == ""):
			return frame{}, fmt.Errorf("waiting for %s %s: %w", typ, ref, f.asError())
		case skip != nil:
			f.Raw = append([]byte(nil), f.Raw...)
			skip(f)
		}
	}
}

// sayHello says h (its type and version filled in) and returns the welcome;
// frames before it go to skip.
func sayHello(c conn, h wire.Hello, skip func(frame)) (wire.Welcome, error) {
	h.Type, h.V = wire.TypeHello, wire.ProtocolVersion
	var w wire.Welcome
	if err := sendJSON(c, h); err != nil {
		return w, err
	}
	f, err := answer(c, wire.TypeWelcome, "", skip)
	if err != nil {
		return w, err
	}
	return w, json.Unmarshal(f.Raw, &w)
}

// resumeFrame asks for a conversation's events after seq after.
type resumeFrame struct {
	Type         string `json:"type"`
	Ref          string `json:"ref"`
	Conversation string `json:"conversation"`
	After        uint64 `json:"after"`
}

// resume asks for conv's events after seq after.
func resume(c conn, ref, conv string, after uint64) error {
	return sendJSON(c, resumeFrame{Type: wire.TypeResume, Ref: ref, Conversation: conv, After: after})
}

// boundBy closes c if ctx ends before the returned stop is called, so
// that a wait on c ends with it; err then becomes ctx's error.
func boundBy(ctx context.Context, c conn) (stop func(err error) error) {
	s := context.AfterFunc(ctx, c.closeNow)
	return func(err error) error {
		s()
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return err
	}
}
