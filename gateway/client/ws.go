package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/coder/websocket"
)

// DialWS opens a WebSocket to url (ws:// or wss://, see WSURL). A refusal
// of the handshake is a *HandshakeError.
func DialWS(ctx context.Context, url string, o Options) (*Conn, error) {
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: o.httpClient(), HTTPHeader: o.Header})
	if err != nil {
		if resp != nil {
			return nil, &HandshakeError{Status: resp.StatusCode, Err: err}
		}
		return nil, fmt.Errorf("client: dial %s: %w", url, err)
	}
	c.SetReadLimit(o.readLimit())
	rctx, cancel := context.WithCancel(context.Background())
	return newConn(&wsTransport{c: c, rctx: rctx, cancel: cancel}, o), nil
}

// wsTransport carries one frame per text message.
type wsTransport struct {
	c      *websocket.Conn
	rctx   context.Context
	cancel context.CancelFunc
}

func (w *wsTransport) write(ctx context.Context, b []byte, _ bool) error {
	return w.c.Write(ctx, websocket.MessageText, b)
}

func (w *wsTransport) writeBinary(ctx context.Context, b []byte) error {
	return w.c.Write(ctx, websocket.MessageBinary, b)
}

func (w *wsTransport) read() ([]byte, error) {
	_, b, err := w.c.Read(w.rctx)
	return b, err
}

func (w *wsTransport) close(code int, reason string) {
	_ = w.c.Close(websocket.StatusCode(code), reason)
	w.cancel()
}

func (w *wsTransport) closeNow() {
	_ = w.c.CloseNow()
	w.cancel()
}

func (w *wsTransport) closeCode(_ context.Context, err error) (int, error) {
	if code := websocket.CloseStatus(err); code != -1 {
		return int(code), nil
	}
	if err == nil {
		err = errors.New("no error")
	}
	return -1, fmt.Errorf("closed without a close code: %w", err)
}
