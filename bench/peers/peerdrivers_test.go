package peers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"parley/bench/internal/rawws"

	"github.com/coder/websocket"
)

// TestPublishEndsWithItsContext: a server that stops reading fills the
// publisher's socket; publish then returns once its context ends, rather
// than holding the run on the blocked write.
func TestPublishEndsWithItsContext(t *testing.T) {
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
	c, err := rawws.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	p := &natsPublisher{d: &natsDriver{subject: "room"}, sub: &wsSub{c: c, cancel: func() {}}, err: make(chan error, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	payload := make([]byte, 256<<10)
	done := make(chan error, 1)
	go func() {
		for {
			if err := p.publish(ctx, payload); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if ctx.Err() == nil {
			t.Fatalf("publish failed before its context ended: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("publish still blocked 28 s after its context ended")
	}
}
