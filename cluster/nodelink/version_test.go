package nodelink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"parley/internal/eventually"

	"parley/internal/syncbuf"
)

// syncBuffer is a log output written from the link's goroutines.
type syncBuffer = syncbuf.Buffer

// listenVersions is a link of node id speaking version v, working beside
// min and later, logging to its own buffer.
func listenVersions(t *testing.T, id string, v, min int) (*Link, *syncBuffer) {
	t.Helper()
	var out syncBuffer
	l, err := Listen(Config{Seed: seed(1), NodeID: id, Bind: "127.0.0.1:0", Version: v, MinVersion: min,
		Logger: slog.New(slog.NewTextHandler(&out, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, &out
}

// TestLinkNegotiatesProtocolVersions: nodes whose versions work together
// link (a first-release node, which advertises none, with one that still
// works beside version 1); a node too old for its peer, or one that needs
// a newer version than its peer speaks, is refused, for Raft and HTTP
// alike, and both ends log the same clear error naming the versions and
// who to upgrade.
func TestLinkNegotiatesProtocolVersions(t *testing.T) {
	t.Parallel()
	first, _ := listenVersions(t, "first", 0, 0) // the first release: no extension
	second, secondLog := listenVersions(t, "second", 2, 1)
	third, thirdLog := listenVersions(t, "third", 3, 2)
	newest, newestLog := listenVersions(t, "newest", 3, 3)
	for _, l := range []*Link{first, second, third, newest} {
		acceptAll(l)
	}
	ctx := context.Background()
	for _, pair := range [][2]*Link{{first, second}, {second, first}, {second, third}, {third, second}, {third, newest}} {
		c, err := pair[0].Dial(ctx, pair[1].Addr().String(), ProtoRaft, nil)
		if err != nil {
			t.Fatalf("%s → %s: %v", pair[0].cfg.NodeID, pair[1].cfg.NodeID, err)
		}
		c.Close()
	}
	logs := func(what string, out *syncBuffer, want string) {
		t.Helper()
		eventually.Holds(t, 5*time.Second, what, func() error {
			if !strings.Contains(out.String(), want) {
				return fmt.Errorf("no %q in the log:\n%s", want, out)
			}
			return nil
		})
	}
	// A first-release node checks nothing: the new one it dials refuses
	// it and logs why (the old one sees its connection closed).
	if c, err := first.Dial(ctx, third.Addr().String(), ProtoHTTP, nil); err == nil {
		c.Close()
	}
	logs("the new node logs the old one refused", thirdLog, "link with first refused: it speaks protocol version 1, this node (version 3) needs 2 or later: upgrade first")
	for _, proto := range []string{ProtoRaft, ProtoHTTP} {
		// newest dials second, too old for it; then second dials newest.
		_, err := newest.Dial(ctx, second.Addr().String(), proto, nil)
		var inc *ErrIncompatible
		if !errors.As(err, &inc) || !strings.Contains(err.Error(), "link with second refused: it speaks protocol version 2, this node (version 3) needs 3 or later: upgrade second") {
			t.Fatalf("%s: dial of a node too old: %v", proto, err)
		}
		logs("the old end logs why", secondLog, "link with newest refused: it (version 3) needs protocol version 3 or later, this node speaks 2: upgrade this node")
		_, err = second.Dial(ctx, newest.Addr().String(), proto, nil)
		if !errors.As(err, &inc) || !strings.Contains(err.Error(), "link with newest refused: it (version 3) needs protocol version 3 or later, this node speaks 2: upgrade this node") {
			t.Fatalf("%s: dial of a node that needs a newer version: %v", proto, err)
		}
		logs("the new end logs why", newestLog, "link with second refused: it speaks protocol version 2, this node (version 3) needs 3 or later: upgrade second")
	}
}
