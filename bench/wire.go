package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"parley/crdt"

	"parley/gateway/client"
	"parley/gateway/wire"

	"github.com/coder/websocket"
	"github.com/quic-go/webtransport-go"
)

// MsgState is a message as one deliver frame shows it: its ts, and a hash
// of the rest of its state (body, edited, deleted). Two frames of one id
// with equal MsgStates show the client the same message. Altered says it
// is shown edited or deleted, which the harness never does.
type MsgState struct {
	TS      crdt.Timestamp
	Rest    uint64
	Altered bool
}

// WSURL turns a node's base URL into its WebSocket endpoint.
func WSURL(base string) string { return client.WSURL(base) }

// dialer opens client connections: WebSockets, optionally from given local
// addresses (one HTTP client per address), and WebTransport sessions.
type dialer struct {
	clients []*http.Client
	local   []net.Addr // source address of each client's connections (nil: any)
	wt      *client.WTDialer
}

func newDialer(sources []net.IP) *dialer {
	d := &dialer{wt: client.NewWTDialer(client.WTConfig{})}
	mk := func(local net.Addr) *http.Client {
		nd := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: local}
		return &http.Client{Transport: &http.Transport{
			DialContext:         nd.DialContext,
			MaxIdleConnsPerHost: -1,
			DisableKeepAlives:   true,
			ForceAttemptHTTP2:   false,
		}}
	}
	if len(sources) == 0 {
		d.clients, d.local = []*http.Client{mk(nil)}, []net.Addr{nil}
	}
	for _, ip := range sources {
		a := &net.TCPAddr{IP: ip}
		d.clients, d.local = append(d.clients, mk(a)), append(d.local, a)
	}
	return d
}

// dial opens connection number i (which picks the source address) to the
// node at base (http://host:port) over transport, ws or wt; the reader
// holds up to queue frames.
func (d *dialer) dial(ctx context.Context, base, transport string, i, queue int) (*client.Conn, error) {
	o := client.Options{HTTPClient: d.clients[i%len(d.clients)], Queue: queue}
	switch transport {
	case "ws":
		return client.DialWS(ctx, client.WSURL(base), o)
	case "wt":
		return d.wt.DialNode(ctx, base, o)
	}
	return nil, fmt.Errorf("transport %q: not implemented", transport)
}

// dialConn opens connection number i to the node at base over
// transport, as the harness's virtual clients use it (conn).
func (d *dialer) dialConn(ctx context.Context, base, transport string, i int) (conn, error) {
	o := client.Options{HTTPClient: d.clients[i%len(d.clients)], Queue: vclientQueue}
	switch transport {
	case "ws":
		if strings.HasPrefix(base, "http://") {
			return dialRawWS(ctx, base, d.local[i%len(d.local)])
		}
		return dialWS(ctx, base, o)
	case "wt":
		c, err := d.wt.DialNode(ctx, base, o)
		if err != nil {
			return nil, err
		}
		return clientConn{c}, nil
	}
	return nil, fmt.Errorf("transport %q: not implemented", transport)
}

// close releases what the WebTransport dialer holds.
func (d *dialer) close() { d.wt.Close() }

// errCode names an error for the errors-by-code table: the wire code when
// the node sent one, else a coarse class.
func errCode(err error) string {
	var we *client.Error
	if errors.As(err, &we) {
		return we.Code
	}
	var he *client.HandshakeError
	if errors.As(err, &he) && he.Status == http.StatusTooManyRequests {
		return wire.CodeRateLimited
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return "close_" + strconv.Itoa(int(ce.Code))
	}
	var se *webtransport.SessionError
	if errors.As(err, &se) {
		return "close_" + strconv.Itoa(int(se.ErrorCode))
	}
	var ste *webtransport.StreamError
	if errors.As(err, &ste) {
		return "stream_reset"
	}
	s := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(s, "timeout"):
		return "timeout"
	case strings.Contains(s, "connection refused"):
		return "conn_refused"
	case strings.Contains(s, "connection reset"):
		return "conn_reset"
	case strings.Contains(s, "EOF"):
		return "eof"
	case strings.Contains(s, "cannot assign requested address"):
		return "no_local_port"
	case strings.Contains(s, "too many open files"):
		return "too_many_files"
	}
	return "transport"
}

// msgIDs names the messages of a run: "pb" + run + "-" + index.
type msgIDs struct{ prefix string }

func (m msgIDs) id(k int) string { return m.prefix + strconv.Itoa(k) }

// index returns the message index of id, or -1 when id is not this run's.
func (m msgIDs) index(id string) int {
	if !strings.HasPrefix(id, m.prefix) {
		return -1
	}
	k, err := strconv.Atoi(id[len(m.prefix):])
	if err != nil || k < 0 {
		return -1
	}
	return k
}

// bodyOf returns an ASCII body of n bytes.
func bodyOf(n int) string {
	const alpha = "abcdefghijklmnopqrstuvwxyz0123456789 "
	b := make([]byte, n)
	for i := range b {
		b[i] = alpha[i%len(alpha)]
	}
	return string(b)
}
