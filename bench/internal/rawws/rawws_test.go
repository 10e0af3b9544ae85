package rawws

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
	"parley/internal/eventually"

	"github.com/coder/websocket"
)

// TestAgainstLibraryServer: the client against coder/websocket's server:
// text and binary messages queued and written at once arrive as separate
// messages, in order, of every length encoding; messages come back whole
// with their opcode (a buffer reused, each valid until the next); a ping
// from the server is answered; the server's close code ends the
// connection as a websocket.CloseError.
func TestAgainstLibraryServer(t *testing.T) {
	t.Parallel()
	sizes := []int{0, 1, 7, 125, 126, 1000, 65535, 65536, 200_000}
	op := func(i int) Op { return [2]Op{OpText, OpBinary}[i%2] }
	typ := func(i int) websocket.MessageType {
		return [2]websocket.MessageType{websocket.MessageText, websocket.MessageBinary}[i%2]
	}
	srvErr := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/some/path" {
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
				got, b, err := c.Read(ctx)
				if err != nil {
					return err
				}
				if got != typ(i) || !bytes.Equal(b, payload(n, i)) {
					return fmt.Errorf("message %d: type %v, %d bytes, want %v, %d", i, got, len(b), typ(i), n)
				}
			}
			// Ping needs a reader to see the pong: the client's answer.
			go func() { _, _, _ = c.Read(ctx) }()
			if err := c.Ping(ctx); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			for i, n := range sizes {
				if err := c.Write(ctx, typ(i), payload(n, i)); err != nil {
					return err
				}
			}
			return c.Close(4001, "bye")
		}()
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/some/path", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i, n := range sizes {
		if err := c.Queue(op(i), payload(n, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		got, b, err := c.Next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got != op(i) || !bytes.Equal(b, payload(n, i)) {
			t.Fatalf("message %d: op %d, %d bytes, want %d, %d", i, got, len(b), op(i), n)
		}
	}
	_, _, err = c.Next()
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "bye" {
		t.Fatalf("after the server's close: %v", err)
	}
	if _, _, err := c.Next(); err == nil {
		t.Fatal("Next after the close read a message")
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

// TestRefused: a handshake the server refuses is a *client.HandshakeError
// with its status; a URL that is not ws:// is refused before any dial.
func TestRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too many", http.StatusTooManyRequests)
	}))
	defer srv.Close()
	_, err := Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil, 0)
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusTooManyRequests {
		t.Fatalf("refused handshake: %v", err)
	}
	if _, err := Dial(context.Background(), srv.URL, nil, 0); err == nil || !strings.Contains(err.Error(), "not a ws://") {
		t.Fatalf("http:// URL: %v", err)
	}
}

// TestCloseHandshake: Close sends the normal close code, the reader sees
// the server's answer, and a write after it fails.
func TestCloseHandshake(t *testing.T) {
	t.Parallel()
	got := make(chan websocket.StatusCode, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		_, _, err = c.Read(r.Context())
		got <- websocket.CloseStatus(err)
	}))
	defer srv.Close()
	c, err := Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.Next(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	c.Close()
	if code := <-got; code != websocket.StatusNormalClosure {
		t.Fatalf("server saw close code %d", code)
	}
	var ce websocket.CloseError
	if err := <-readErr; !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure {
		t.Fatalf("reader after Close: %v, want the server's answering close", err)
	}
	if err := c.Write(OpText, []byte("x")); err == nil {
		t.Fatal("write after Close succeeded")
	}
}

// TestCloseWhileAWriteIsStuck: a server that stops reading leaves a write
// blocked on a full socket; Close still returns, and the write fails.
func TestCloseWhileAWriteIsStuck(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		<-hold // never reads
	}))
	defer srv.Close()
	defer close(hold)
	c, err := Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1<<20)
	writeErr := make(chan error, 1)
	go func() {
		for {
			if err := c.Write(OpBinary, big); err != nil {
				writeErr <- err
				return
			}
		}
	}()
	// The writer holds the write lock while it is blocked on the full
	// socket; Close, which needs the lock to say goodbye, must not wait on
	// it forever.
	eventually.Holds(t, 10*time.Second, "the writer blocked on a full socket", func() error {
		if c.wmu.TryLock() {
			c.wmu.Unlock()
			return errors.New("the write lock is free")
		}
		return nil
	})
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close stuck behind a blocked write")
	}
	if err := <-writeErr; err == nil {
		t.Fatal("the stuck write succeeded")
	}
}
