package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"parley/gateway/wire"

	"github.com/coder/websocket"
)

// errBinary is returned by a transport's Read for a frame that is not text.
var errBinary = errors.New("binary frame")

// hardReadLimit is where the WebSocket library itself cuts a connection
// (close 1009). Frames between wire.MaxFrameBytes and it get a too_large error
// frame first, so that a client learns why.
const hardReadLimit = 4 * wire.MaxFrameBytes

// ServeHTTP upgrades a request to a WebSocket connection and serves it.
// Any origin may connect: the widget runs on customers' sites, and no
// credential rides on cookies (tokens and signatures travel in hello), so a
// cross-site page gains nothing a script could not do by itself.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ip, viaRelay := clientIP(r), false
	if s.cfg.Forwarded != nil {
		if fwd, ok := s.cfg.Forwarded(r); ok {
			ip, viaRelay = fwd, true
		}
	}
	cnt := counted(r.Context(), ip)
	if !s.admit(ip, cnt) {
		s.metrics.Error(wire.CodeRateLimited)
		http.Error(w, `{"code":"rate_limited","message":"too many connections from this address"}`, http.StatusTooManyRequests)
		return
	}
	defer s.release(ip, cnt)
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return
	}
	c.SetReadLimit(hardReadLimit)
	// The connection outlives the request context's cancellation only
	// through Shutdown, which closes it deliberately.
	s.serve(context.WithoutCancel(r.Context()), &wsTransport{c: c}, ip, viaRelay)
}

type wsTransport struct{ c *websocket.Conn }

func (t *wsTransport) Name() string { return "ws" }

func (t *wsTransport) Read(ctx context.Context) ([]byte, error) {
	typ, data, err := t.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, errBinary
	}
	return data, nil
}

func (t *wsTransport) Write(ctx context.Context, frame []byte) error {
	return t.c.Write(ctx, websocket.MessageText, frame)
}

// Close sends a close frame and waits briefly for the client's answer: a
// client that stopped reading must not hold the connection for the library's
// full close-handshake timeout.
func (t *wsTransport) Close(code int, reason string) error {
	done := make(chan error, 1)
	go func() { done <- t.c.Close(websocket.StatusCode(code), reason) }()
	select {
	case err := <-done:
		return err
	case <-time.After(closeGrace):
		return t.c.CloseNow()
	}
}

const closeGrace = 500 * time.Millisecond
