package node

import (
	"context"
	"errors"
	"testing"

	"parley/gateway/client"
)

// testConn is a test's connection of parley/gateway/client to a node:
// frames as maps, failures fatal, waits bounded by ctx.
type testConn struct {
	t   testing.TB
	ctx context.Context
	c   *client.Conn
}

// dialTest opens a WebSocket to the node at base (http or https) and
// closes it when the test ends.
func dialTest(t testing.TB, ctx context.Context, base string, o client.Options) *testConn {
	t.Helper()
	c, err := client.DialWS(ctx, client.WSURL(base), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseNow)
	return &testConn{t: t, ctx: ctx, c: c}
}

// helloTest dials the node at base, says hello and awaits the frame
// welcome accepts.
func helloTest(t testing.TB, ctx context.Context, base string, hello map[string]any, welcome func(map[string]any) bool) *testConn {
	t.Helper()
	c := dialTest(t, ctx, base, client.Options{})
	c.send(hello)
	c.await(welcome)
	return c
}

func (tc *testConn) send(v map[string]any) {
	tc.t.Helper()
	if err := tc.c.Send(tc.ctx, v); err != nil {
		tc.t.Fatal(err)
	}
}

// await returns the next frame match accepts; frames that are not JSON
// objects are passed over.
func (tc *testConn) await(match func(map[string]any) bool) map[string]any {
	tc.t.Helper()
	var m map[string]any
	if _, err := tc.c.Await(tc.ctx, func(f client.Frame) bool {
		var err error
		m, err = f.Map()
		return err == nil && match(m)
	}, nil); err != nil {
		tc.t.Fatalf("waiting for a frame: %v", err)
	}
	return m
}

// typeIs matches frames of type typ.
func typeIs(typ string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["type"] == typ }
}

// handshakeStatus is the HTTP status of a refused handshake; 0 for
// another error.
func handshakeStatus(err error) int {
	var he *client.HandshakeError
	if errors.As(err, &he) {
		return he.Status
	}
	return 0
}

// holds turns a condition into one for internal/eventually.
func holds(cond func() bool) func() error {
	return func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	}
}
