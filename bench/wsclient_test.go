package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"parley/gateway/client"

	"github.com/coder/websocket"
)

// TestRawWSAgainstLibraryServer: the harness's own WebSocket client
// against coder/websocket's server: frames queued and written at once
// arrive as separate messages, in order, of every length encoding;
// messages come back whole; a ping from the server is answered; the
// server's close code ends the connection as a websocket.CloseError.
func TestRawWSAgainstLibraryServer(t *testing.T) {
	t.Parallel()
	sizes := []int{0, 1, 7, 125, 126, 1000, 65535, 65536, 200_000}
	srvErr := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/ws" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			srvErr <- err
			return
		}
		c.SetReadLimit(1 << 20)
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		defer cancel()
		srvErr <- func() error {
			for i, n := range sizes {
				typ, b, err := c.Read(ctx)
				if err != nil {
					return err
				}
				if typ != websocket.MessageText || !bytes.Equal(b, payload(n, i)) {
					return fmt.Errorf("message %d: type %v, %d bytes, want %d", i, typ, len(b), n)
				}
			}
			// Ping needs a reader to see the pong: the client's answer.
			go func() { _, _, _ = c.Read(ctx) }()
			if err := c.Ping(ctx); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			for i, n := range sizes {
				if err := c.Write(ctx, websocket.MessageText, payload(n, i)); err != nil {
					return err
				}
			}
			return c.Close(4001, "bye")
		}()
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, err := dialRawWS(ctx, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.closeNow()
	for i, n := range sizes {
		if err := w.queue(payload(n, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		f, err := w.next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(f.Raw, payload(n, i)) {
			t.Fatalf("message %d: %d bytes, want %d", i, len(f.Raw), n)
		}
	}
	_, err = w.next()
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "bye" || errCode(err) != "close_4001" {
		t.Fatalf("after the server's close: %v (code %s)", err, errCode(err))
	}
	if err := <-srvErr; err != nil && websocket.CloseStatus(err) != 4001 {
		t.Fatalf("server: %v", err)
	}
}

// payload is message i of n bytes, different for each i.
func payload(n, i int) []byte {
	b := []byte(strings.Repeat(string(rune('a'+i%26)), n))
	for j := 0; j < len(b); j += 97 {
		b[j] = byte('0' + j%10)
	}
	return b
}

// TestRawWSRefused: a handshake the node refuses is a
// *client.HandshakeError with its status, as client.DialWS's.
func TestRawWSRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too many", http.StatusTooManyRequests)
	}))
	defer srv.Close()
	_, err := dialRawWS(context.Background(), srv.URL, nil)
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusTooManyRequests || errCode(err) != "rate_limited" {
		t.Fatalf("refused handshake: %v", err)
	}
}
