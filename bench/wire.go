package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/webtransport-go"
)

// frame is any frame a node sends, with the fields the harness reads.
type frame struct {
	Type         string          `json:"type"`
	Ref          string          `json:"ref"`
	Conversation string          `json:"conversation"`
	ID           string          `json:"id"`
	Seq          uint64          `json:"seq"`
	Dup          bool            `json:"dup"`
	Code         string          `json:"code"`
	Message      json.RawMessage `json:"message"` // deliver: an object; error: a string
	VisitorID    string          `json:"visitor_id"`
	VisitorSig   string          `json:"visitor_sig"`
	HeartbeatMS  int64           `json:"heartbeat_ms"`
	Head         uint64          `json:"head"`
	More         bool            `json:"more"`
	Node         string          `json:"node"`
}

// HLC is a message's ts as a node gives it (docs/protocol.md): hybrid
// logical clock, compared by W, then L, then N.
type HLC struct {
	W int64  `json:"w"` // unix ms
	L uint32 `json:"l"` // logical
	N string `json:"n"` // node
}

// Compare orders stamps as the nodes do: -1, 0 or 1.
func (a HLC) Compare(b HLC) int {
	switch {
	case a.W != b.W:
		return cmp.Compare(a.W, b.W)
	case a.L != b.L:
		return cmp.Compare(a.L, b.L)
	}
	return strings.Compare(a.N, b.N)
}

func (a HLC) String() string { return fmt.Sprintf("%d.%d@%s", a.W, a.L, a.N) }

// MsgState is a message as one deliver frame shows it: its ts, and a hash
// of the rest of its state (body, edited, deleted). Two frames of one id
// with equal MsgStates show the client the same message. Altered says it
// is shown edited or deleted, which the harness never does.
type MsgState struct {
	TS      HLC
	Rest    uint64
	Altered bool
}

// message returns the id and the state of a deliver frame's message.
func (f *frame) message() (string, MsgState) {
	var m struct {
		ID      string          `json:"id"`
		TS      HLC             `json:"ts"`
		Body    string          `json:"body"`
		Edited  json.RawMessage `json:"edited"`
		Deleted bool            `json:"deleted"`
	}
	if len(f.Message) == 0 || f.Message[0] != '{' {
		return "", MsgState{}
	}
	_ = json.Unmarshal(f.Message, &m)
	h := fnv.New64a()
	h.Write([]byte(m.Body))
	h.Write([]byte{0})
	edited := false
	if e := bytes.TrimSpace(m.Edited); len(e) > 0 && !bytes.Equal(e, []byte("null")) {
		h.Write(e)
		edited = true
	}
	if m.Deleted {
		h.Write([]byte{0, 1})
	}
	return m.ID, MsgState{TS: m.TS, Rest: h.Sum64(), Altered: edited || m.Deleted}
}

// errorText returns an error frame's message.
func (f *frame) errorText() string {
	var s string
	_ = json.Unmarshal(f.Message, &s)
	return s
}

// wireError is an error frame received where a specific answer was due.
type wireError struct {
	Code, Message string
}

func (e *wireError) Error() string { return e.Code + ": " + e.Message }

// WSURL turns a node's base URL into its WebSocket endpoint.
func WSURL(base string) string {
	base = strings.TrimRight(base, "/")
	switch {
	case strings.HasPrefix(base, "https://"):
		return "wss://" + strings.TrimPrefix(base, "https://") + "/v1/ws"
	case strings.HasPrefix(base, "http://"):
		return "ws://" + strings.TrimPrefix(base, "http://") + "/v1/ws"
	}
	return base + "/v1/ws"
}

// dialer opens client connections: WebSockets, optionally from given local
// addresses (one HTTP client per address), and WebTransport sessions.
type dialer struct {
	clients []*http.Client
	wt      *wtDialer
}

func newDialer(sources []net.IP) *dialer {
	d := &dialer{}
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
		d.clients = []*http.Client{mk(nil)}
	}
	for _, ip := range sources {
		d.clients = append(d.clients, mk(&net.TCPAddr{IP: ip}))
	}
	d.wt = newWTDialer(d.clients[0])
	return d
}

// dial opens connection number i to the node at base (http://host:port)
// over transport, ws or wt.
func (d *dialer) dial(ctx context.Context, base, transport string, i int) (conn, error) {
	switch transport {
	case "ws":
		c, err := d.dialWS(ctx, WSURL(base), i)
		if err != nil {
			return nil, err
		}
		return wsConn{c}, nil
	case "wt":
		return d.wt.dial(ctx, base)
	}
	return nil, fmt.Errorf("transport %q: not implemented", transport)
}

// close releases what the WebTransport dialer holds.
func (d *dialer) close() { d.wt.close() }

// dialWS opens WebSocket number i (which picks the source address).
func (d *dialer) dialWS(ctx context.Context, url string, i int) (*websocket.Conn, error) {
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: d.clients[i%len(d.clients)]})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
			return nil, &wireError{Code: "rate_limited", Message: "too many connections from this address (HTTP 429)"}
		}
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}

// skipped are frames the harness only counts: recognised by their first
// bytes (the node writes "type" first), they are not decoded.
var skipped = [][]byte{[]byte(`{"type":"typing"`), []byte(`{"type":"presence"`), []byte(`{"type":"pong"`), []byte(`{"type":"read"`)}

// readFrame reads and decodes the next frame.
func readFrame(ctx context.Context, c conn) (*frame, error) {
	b, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range skipped {
		if bytes.HasPrefix(b, p) {
			return &frame{Type: string(p[9 : len(p)-1])}, nil
		}
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("undecodable frame %.200q: %w", b, err)
	}
	return &f, nil
}

// await reads frames until one of type typ (and ref, when set) arrives. An
// error frame with that ref (or with none) is returned as a *wireError.
// Other frames go to other, when not nil.
func await(ctx context.Context, c conn, typ, ref string, other func(*frame)) (*frame, error) {
	for {
		f, err := readFrame(ctx, c)
		if err != nil {
			return nil, err
		}
		if f.Type == typ && (ref == "" || f.Ref == ref) {
			return f, nil
		}
		if f.Type == "error" && (f.Ref == ref || f.Ref == "") {
			return nil, &wireError{Code: f.Code, Message: f.errorText()}
		}
		if other != nil {
			other(f)
		}
	}
}

func writeJSON(ctx context.Context, c conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(ctx, b)
}

// errCode names an error for the errors-by-code table: the wire code when
// the node sent one, else a coarse class.
func errCode(err error) string {
	var we *wireError
	if errors.As(err, &we) {
		return we.Code
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

// sendFrame builds a send frame without reflection; id, conv and body are
// known to need no JSON escaping.
func sendFrame(buf []byte, id, conv, body string) []byte {
	buf = append(buf[:0], `{"type":"send","ref":"`...)
	buf = append(buf, id...)
	buf = append(buf, `","conversation":"`...)
	buf = append(buf, conv...)
	buf = append(buf, `","id":"`...)
	buf = append(buf, id...)
	buf = append(buf, `","body":"`...)
	buf = append(buf, body...)
	return append(buf, `"}`...)
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

// The Parley client protocol over a plain WebSocket, for drivers outside
// this package (the peers comparison's Parley driver): the same frames and
// the same waits as the virtual clients.

// HelloWS writes the hello frame h on c and waits for the welcome; an
// error frame instead is returned as an error.
func HelloWS(ctx context.Context, c *websocket.Conn, h map[string]any) error {
	if err := writeJSON(ctx, wsConn{c}, h); err != nil {
		return err
	}
	_, err := await(ctx, wsConn{c}, "welcome", "", nil)
	return err
}

// StartWS starts a conversation as the visitor of c (a start frame with
// ref) and returns its id once the node answers started.
func StartWS(ctx context.Context, c *websocket.Conn, ref string) (string, error) {
	if err := writeJSON(ctx, wsConn{c}, map[string]any{"type": "start", "ref": ref}); err != nil {
		return "", err
	}
	f, err := await(ctx, wsConn{c}, "started", ref, nil)
	if err != nil {
		return "", err
	}
	return f.Conversation, nil
}

// AppendSendFrame builds into buf a send frame of message id into
// conversation conv; id, conv and body must need no JSON escaping.
func AppendSendFrame(buf []byte, id, conv, body string) []byte {
	return sendFrame(buf, id, conv, body)
}
