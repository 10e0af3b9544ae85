package node

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"parley/gateway/client"
	"parley/internal/eventually"
)

// TestTLSWebSocketCountedPerAddress: the node's HTTPS listener gives the
// gateway's poller the sockets beneath TLS (gateway.PollableTLS), and a
// wss:// connection read that way is counted once under its address: the
// gateway finds the listener's count beneath the poller's wrapper
// (connContext), so with one connection allowed per address the first is
// served (counted twice, it was refused 429), a second is refused, and one
// is admitted again once the first closed.
func TestTLSWebSocketCountedPerAddress(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := writeTestCert(t, t.TempDir())
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token", MaxConnsPerIP: 1,
		TLSCert: certFile, TLSKey: keyFile})
	a := clientFrom("127.0.0.2", pool)
	c, code := dialWS(t, a, r.base, nil)
	if code != http.StatusSwitchingProtocols {
		t.Fatalf("first connection: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, []byte(`{"type":"hello","v":1,"workspace":"demo","role":"visitor"}`)); err != nil {
		t.Fatal(err)
	}
	for welcomed := false; !welcomed; {
		select {
		case f, ok := <-c.Frames():
			if !ok {
				t.Fatalf("no welcome: %v", c.Err())
			}
			welcomed = bytes.Contains(f.Raw, []byte(`"type":"welcome"`))
		case <-ctx.Done():
			t.Fatal("no welcome")
		}
	}
	// The listener refuses a second connection from the address.
	if c2, err := client.DialWS(ctx, client.WSURL(r.base), client.Options{HTTPClient: a}); err == nil {
		c2.CloseNow()
		t.Fatal("a second connection from the same address was admitted")
	}
	c.CloseNow()
	eventually.Holds(t, 10*time.Second, "a connection from the address admitted again", func() error {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c2, err := client.DialWS(dctx, client.WSURL(r.base), client.Options{HTTPClient: a})
		if err != nil {
			return err
		}
		c2.CloseNow()
		return nil
	})
}
