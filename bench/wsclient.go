package bench

import (
	"context"
	"fmt"
	"net"
	"strings"

	"parley/bench/internal/rawws"
	"parley/gateway/client"
)

// rawWS is a virtual client's connection to a ws:// node through the
// harness's own WebSocket client (bench/internal/rawws): it is what lets
// a virtual client write the sends that are ready at one moment with one
// write(2) (queue, then flush) and read what the node wrote in one
// read(2) (a 64 KiB buffer), with no channel, context or allocation per frame;
// a library connection (coder/websocket) writes each message with a
// write of its own. wss:// nodes go through coder/websocket (wsConn).
type rawWS struct {
	c     *rawws.Conn
	names interner // conversation ids and node names read
}

// dialRawWS opens a WebSocket to base (http://host:port) at /v1/ws; a
// refused handshake is a *client.HandshakeError with its status, as
// client.DialWS's.
func dialRawWS(ctx context.Context, base string, local net.Addr) (*rawWS, error) {
	if !strings.HasPrefix(base, "http://") {
		return nil, fmt.Errorf("raw websocket: %q is not a ws:// node", base)
	}
	c, err := rawws.Dial(ctx, client.WSURL(base), local, 64<<10)
	if err != nil {
		return nil, err
	}
	return &rawWS{c: c, names: interner{}}, nil
}

// queue adds a text frame to those to write with the next flush.
func (w *rawWS) queue(b []byte) error { return w.c.Queue(rawws.OpText, b) }

// write writes a text frame at once (with what is queued before it).
func (w *rawWS) write(b []byte) error { return w.c.Write(rawws.OpText, b) }

// flush writes the frames queued, in one write.
func (w *rawWS) flush() error { return w.c.Flush() }

// next reads the next message and parses it as a frame.
func (w *rawWS) next() (frame, error) {
	_, b, err := w.c.Next()
	if err != nil {
		return frame{}, err
	}
	return parseFrameIn(b, w.names), nil
}

// close says goodbye and waits (at most 2 s) for the node's answer.
func (w *rawWS) close() { w.c.Close() }

func (w *rawWS) closeNow() { w.c.CloseNow() }
