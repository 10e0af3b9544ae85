package gateway

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	protoclient "parley/gateway/client"

	"parley/crdt"
	"parley/store"
)

// TestCountedConnectionIsNotCountedTwice serves WebSocket behind a server
// that counts every TCP connection in the gateway's table, as the node's
// listener does: with a cap of one per address, the one connection's
// upgrade gets in, and a second connection's does not.
func TestCountedConnectionIsNotCountedTwice(t *testing.T) {
	t.Parallel()
	st, err := store.Open(store.Config{Path: filepath.Join(t.TempDir(), "p.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutWorkspace(context.Background(), store.Workspace{ID: "ws1"}); err != nil {
		t.Fatal(err)
	}
	conns := NewIPConns(1)
	gw := New(Config{Store: st, Auth: testAuth{}, Clock: crdt.NewClock("t1", nil), Node: "t1", Conns: conns})
	srv := httptest.NewUnstartedServer(gw)
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		ip, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		if !conns.Acquire(ip, conns.Max()) {
			return ctx // over the cap: not counted, so the gateway counts (and refuses) it
		}
		return WithCountedConn(ctx, ip)
	}
	srv.Start()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	c, err := protoclient.DialWS(ctx, url, protoclient.Options{})
	if err != nil {
		t.Fatalf("the connection counted by the listener was refused: %v", err)
	}
	defer c.CloseNow()
	var he *protoclient.HandshakeError
	if _, err := protoclient.DialWS(ctx, url, protoclient.Options{}); !errors.As(err, &he) || he.Status != 429 {
		t.Fatalf("second connection over a cap of 1: err %v", err)
	}
}
