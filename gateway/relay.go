package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"parley/gateway/wire"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// A node outside a pinned workspace's region keeps none of its data, yet a
// visitor's widget may land on it (the nearest node, a load balancer's
// choice). Such a connection is relayed: after its hello, every frame goes
// unread to a node of the region and every answer comes back unchanged. The
// relaying node stores nothing, decodes nothing past the hello and logs
// nothing of the conversation; it still applies a per-connection frame
// limit (the frame and resume limits together, since it cannot tell them
// apart), so it is not an open pipe.

// Relayer decides whether a workspace's connections are relayed from this
// node, and opens the connection to a node that serves it.
type Relayer interface {
	// Relay returns a connection to a node serving workspace, for a client
	// at ip; key identifies the client (its visitor ID or credential) so
	// that its reconnects reach the same node while that node lives.
	// ErrServedHere when this node serves the workspace itself;
	// ErrRelayUnavailable (wrapped) when no node of the workspace is reachable.
	Relay(ctx context.Context, workspace, key, ip string) (Upstream, error)
}

// Upstream is the relayed side of a connection: whole text frames both ways.
type Upstream interface {
	Read(ctx context.Context) ([]byte, error)
	Write(ctx context.Context, frame []byte) error
	Close() error
}

var (
	// ErrServedHere says a workspace is not relayed from this node.
	ErrServedHere = errors.New("workspace served here")
	// ErrRelayUnavailable says no node serving the workspace is reachable.
	ErrRelayUnavailable = errors.New("no node serving the workspace is reachable")
)

// UpstreamClosed is the error an Upstream's Read returns when the serving
// node closed the connection with a code; the client gets the same code.
type UpstreamClosed struct {
	Code   int
	Reason string
}

func (e *UpstreamClosed) Error() string {
	return fmt.Sprintf("upstream closed: %d %s", e.Code, e.Reason)
}

// relayHello hands the connection to a relay if its hello names a workspace
// served elsewhere. relayed is false when this node serves it.
func (c *conn) relayHello(ctx context.Context, f inFrame, hello []byte) (relayed bool, werr *wireError) {
	if c.srv.cfg.Relay == nil || c.viaRelay {
		// A relayed connection is never relayed again: two nodes that
		// disagree about a workspace's region must not bounce it forever.
		return false, nil
	}
	key := f.VisitorID
	if key == "" {
		key = f.UserID + "\x00" + f.Token + "\x00" + f.IdentityToken
	}
	dctx, cancel := context.WithTimeout(ctx, relayDialTimeout)
	defer cancel()
	up, err := c.srv.cfg.Relay.Relay(dctx, f.Workspace, key, c.ip)
	switch {
	case errors.Is(err, ErrServedHere):
		return false, nil
	case err != nil:
		c.srv.metrics.Relay("failed")
		c.srv.log.Warn("relay unavailable", "err", err)
		return true, fatalf(wire.CodeUnavailable, wire.CloseRestart, "no node serving this workspace is reachable: reconnect later")
	}
	wctx, cancel2 := context.WithTimeout(ctx, c.srv.cfg.WriteTimeout)
	defer cancel2()
	if err := up.Write(wctx, hello); err != nil {
		up.Close()
		c.srv.metrics.Relay("failed")
		return true, fatalf(wire.CodeUnavailable, wire.CloseRestart, "relay failed: reconnect")
	}
	c.relay = up
	c.relaying.Store(true)
	c.srv.metrics.Relay("opened")
	return true, nil
}

const relayDialTimeout = 5 * time.Second

// relayCloseGrace is how long a relay whose write upstream failed waits for
// the serving node's close code before it ends the client's connection as
// lost.
const relayCloseGrace = time.Second

// startRelay carries the rest of a relayed connection: the client's frames
// go upstream through relayFrame (still under this node's frame limit), the
// upstream's frames come back to the writer through a goroutine of the
// connection's, until either side ends. A relayed connection holds that
// goroutine while it lasts.
func (c *conn) startRelay(ctx context.Context) {
	up := c.relay
	c.srv.trackRelay(c, true)
	// The relay does not read frames, so it cannot tell resumes from the
	// rest: it allows both limits together, and the serving node applies
	// each.
	c.relayLim = rate.NewLimiter(rate.Limit(c.srv.cfg.FrameRate+c.srv.cfg.ResumeRate), c.srv.cfg.FrameBurst+c.srv.cfg.ResumeBurst)
	c.relayDone = make(chan struct{})
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer c.srv.trackRelay(c, false)
		defer close(c.relayDone)
		defer up.Close()
		for {
			data, err := up.Read(ctx)
			if err != nil {
				c.fail(upstreamEnd(err))
				return
			}
			// Waiting, unlike send: a slow client slows the upstream,
			// which applies its own slow-consumer rule to the connection.
			if !c.waitRoom() {
				return
			}
			c.send(&outItem{kind: outFrame, data: data})
		}
	}()
}

// relayFrame carries one client frame upstream; false when the connection
// ends with it.
func (c *conn) relayFrame(ctx context.Context, data []byte) bool {
	if data == nil {
		return true // binary: not part of the protocol, not carried
	}
	now := time.Now()
	c.lastSeen.Store(now.UnixMilli())
	if !c.relayLim.AllowN(now, 1) {
		c.fail(fatalf(wire.CodeRateLimited, wire.CloseRateLimited, "too many frames"))
		return false
	}
	c.srv.metrics.FrameIn(c.t.Name())
	wctx, cancel := context.WithTimeout(ctx, c.srv.cfg.WriteTimeout)
	err := c.relay.Write(wctx, data)
	cancel()
	if err != nil {
		// The serving node may have closed the connection on purpose (a
		// flood, a revoked session): its close code comes through the
		// upstream's reader, given a moment.
		timer := time.NewTimer(relayCloseGrace)
		select {
		case <-c.relayDone:
		case <-timer.C:
			c.fail(fatalf(wire.CodeUnavailable, wire.CloseRestart, "relay lost: reconnect"))
		}
		timer.Stop()
		return false
	}
	return true
}

// endRelay closes the upstream once the client's side ended.
func (c *conn) endRelay() {
	if c.relaying.Load() {
		c.relay.Close()
	}
}

// upstreamEnd is how the client's connection ends when the upstream's does:
// with the serving node's own close code (its error frame came through
// already), or, if the link broke, with a request to reconnect.
func upstreamEnd(err error) *wireError {
	var uc *UpstreamClosed
	if errors.As(err, &uc) {
		if uc.Code == int(websocket.StatusNormalClosure) {
			return nil
		}
		return &wireError{Code: uc.Reason, close: uc.Code, relayed: true}
	}
	return fatalf(wire.CodeUnavailable, wire.CloseRestart, "relay lost: reconnect")
}

// trackRelay keeps the relayed connections for Shutdown, which finds the
// others through the hub.
func (s *Server) trackRelay(c *conn, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.relays[c] = struct{}{}
	} else {
		delete(s.relays, c)
	}
}

func (s *Server) relayed() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.relays))
	for c := range s.relays {
		out = append(out, c)
	}
	return out
}

// DialUpstream opens the WebSocket a relaying node uses towards a serving
// node, through client (the node link between them); header carries what
// lets the serving node trust the client's address (see Config.Forwarded).
func DialUpstream(ctx context.Context, client *http.Client, url string, header http.Header) (Upstream, error) {
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client, HTTPHeader: header, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	ws.SetReadLimit(hardReadLimit)
	return &wsUpstream{c: ws}, nil
}

type wsUpstream struct{ c *websocket.Conn }

func (u *wsUpstream) Read(ctx context.Context) ([]byte, error) {
	_, data, err := u.c.Read(ctx)
	if err != nil {
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return nil, &UpstreamClosed{Code: int(ce.Code), Reason: ce.Reason}
		}
		return nil, err
	}
	return data, nil
}

func (u *wsUpstream) Write(ctx context.Context, frame []byte) error {
	return u.c.Write(ctx, websocket.MessageText, frame)
}

func (u *wsUpstream) Close() error { return u.c.CloseNow() }
