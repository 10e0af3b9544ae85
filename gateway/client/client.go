// Package client is the one Go client of Parley's wire protocol
// (docs/protocol.md): it dials a node over WebSocket or WebTransport, says
// hello as a visitor or an agent, writes frames and reads the node's.
// The gateway's tests, the end-to-end tests, the node's tests and the
// bench all speak to nodes through it. It imports no server package (a
// test checks it), only the protocol's words in parley/gateway/wire.
//
// A Conn owns one reader goroutine, which queues the node's frames until
// Next (or Await) takes them; Close and CloseNow end it.
package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"parley/gateway/wire"
)

// Options of a connection. The zero value dials with a default HTTP
// client, from any source address, with the system's roots.
type Options struct {
	// HTTPClient makes the WebSocket handshake (and DialNode's GET
	// /v1/transport). Nil: a client dialling from LocalAddr with TLS.
	HTTPClient *http.Client
	// LocalAddr is the source address of the connection (nil: any).
	// Ignored when HTTPClient is set.
	LocalAddr net.IP
	// TLS configures wss:// (nil: the system's roots). Ignored when
	// HTTPClient is set.
	TLS *tls.Config
	// Header is sent with the WebSocket handshake.
	Header http.Header
	// ReadLimit is the largest frame read (0: 1 MiB).
	ReadLimit int64
	// Queue is how many frames the reader holds until Next takes them
	// (0: 256). A full queue stops the reader, which pushes back on the
	// node: a client that does not read is a slow consumer.
	Queue int
}

func (o Options) readLimit() int64 {
	if o.ReadLimit > 0 {
		return o.ReadLimit
	}
	return 1 << 20
}

func (o Options) httpClient() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	nd := &net.Dialer{Timeout: 10 * time.Second}
	if o.LocalAddr != nil {
		nd.LocalAddr = &net.TCPAddr{IP: o.LocalAddr}
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:       nd.DialContext,
		TLSClientConfig:   o.TLS,
		DisableKeepAlives: true,
	}}
}

// HandshakeError is a connection the node refused before it was one: the
// HTTP status of its answer (429: too many connections from this address).
type HandshakeError struct {
	Status int
	Err    error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("handshake refused with HTTP %d: %v", e.Status, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// Error is an error frame received where an answer was due.
type Error struct {
	Ref, Code, Message string
	// Retry, for overloaded and some rate_limited errors, is how long to
	// wait before sending the same frame again (the frame's retry_ms); 0:
	// not said.
	Retry time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// ErrClosed is returned by Next once the connection ended and every frame
// it queued was taken; Err says why it ended.
var ErrClosed = errors.New("client: connection closed")

// Frame is one frame from the node: its raw JSON and the fields every
// client matches on. A frame that is not a JSON object has Type "".
type Frame struct {
	Type         string `json:"type"`
	Ref          string `json:"ref"`
	Conversation string `json:"conversation"`
	Code         string `json:"code"`
	Raw          []byte `json:"-"`
}

// Decode decodes the frame into v, one of wire's frame structs.
func (f Frame) Decode(v any) error { return json.Unmarshal(f.Raw, v) }

// Map decodes the frame as a map, for tests that inspect any field.
func (f Frame) Map() (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(f.Raw, &m); err != nil {
		return nil, fmt.Errorf("client: the node sent a frame that is not a JSON object %.200q: %w", f.Raw, err)
	}
	return m, nil
}

// AsError returns an error frame as an *Error.
func (f Frame) AsError() *Error {
	var e wire.Error
	_ = f.Decode(&e)
	return &Error{Ref: f.Ref, Code: f.Code, Message: e.Message, Retry: time.Duration(e.RetryMS) * time.Millisecond}
}

// ParseFrame parses b, a frame from the node, as Next returns it: for
// drivers that read a connection of their own.
func ParseFrame(b []byte) Frame {
	var f Frame
	if json.Unmarshal(b, &f) != nil {
		f = Frame{}
	}
	f.Raw = b
	return f
}

// transport is one connection's way of carrying frames.
type transport interface {
	// write sends one frame; raw writes bytes as they are (no framing).
	write(ctx context.Context, frame []byte, raw bool) error
	writeBinary(ctx context.Context, b []byte) error
	// read returns the next frame (its own copy); only the reader calls it.
	read() ([]byte, error)
	close(code int, reason string)
	closeNow()
	// closeCode returns the code the connection ended with, given the
	// reader's error.
	closeCode(ctx context.Context, err error) (int, error)
}

// Conn is one connection to a node.
type Conn struct {
	t       transport
	frames  chan Frame
	done    chan struct{} // closed when the reader ends
	quit    chan struct{} // closed by Close and CloseNow
	quitMu  sync.Once
	err     error // why the reader ended; set before done closes
	discard atomic.Bool
	n       atomic.Uint64 // refs handed out by Ref
}

func newConn(t transport, o Options) *Conn {
	q := o.Queue
	if q <= 0 {
		q = 256
	}
	c := &Conn{t: t, frames: make(chan Frame, q), done: make(chan struct{}), quit: make(chan struct{})}
	go c.readLoop()
	return c
}

// readLoop is the connection's one reader: it queues frames until the
// connection ends or Close is called.
func (c *Conn) readLoop() {
	defer close(c.done)
	defer close(c.frames)
	for {
		b, err := c.t.read()
		if err != nil {
			c.err = err
			return
		}
		if c.discard.Load() {
			continue
		}
		select {
		case c.frames <- ParseFrame(b):
		case <-c.quit:
			c.err = ErrClosed
			return
		}
	}
}

// Next returns the next frame, or an error when ctx ends or the
// connection ended (after the frames it queued): then Err says why.
func (c *Conn) Next(ctx context.Context) (Frame, error) {
	select {
	case f, ok := <-c.frames:
		if !ok {
			return Frame{}, fmt.Errorf("%w: %w", ErrClosed, c.err)
		}
		return f, nil
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

// Frames is the queue Next reads, for callers that select on it with
// other channels; it is closed once the connection ended and its frames
// were taken.
func (c *Conn) Frames() <-chan Frame { return c.frames }

// Await reads frames until match accepts one and returns it; frames passed
// over go to skip, when not nil.
func (c *Conn) Await(ctx context.Context, match func(Frame) bool, skip func(Frame)) (Frame, error) {
	for {
		f, err := c.Next(ctx)
		if err != nil {
			return Frame{}, err
		}
		if match(f) {
			return f, nil
		}
		if skip != nil {
			skip(f)
		}
	}
}

// Answer awaits the frame of type typ answering ref (with ref "", the next
// frame of type typ). An error frame answering ref, or one with no ref,
// comes back as an *Error. Frames passed over go to skip, when not nil.
func (c *Conn) Answer(ctx context.Context, typ, ref string, skip func(Frame)) (Frame, error) {
	f, err := c.Await(ctx, func(f Frame) bool {
		return f.Type == typ && (ref == "" || f.Ref == ref) ||
			f.Type == wire.TypeError && (f.Ref == ref || f.Ref == "")
	}, skip)
	if err != nil {
		return Frame{}, fmt.Errorf("waiting for %s %s: %w", typ, ref, err)
	}
	if f.Type == wire.TypeError && typ != wire.TypeError {
		return Frame{}, f.AsError()
	}
	return f, nil
}

// Write sends one frame, given as JSON; safe for concurrent use.
func (c *Conn) Write(ctx context.Context, frame []byte) error { return c.t.write(ctx, frame, false) }

// WriteRaw writes b as it is: over WebSocket one text message, over
// WebTransport bytes on the stream with no line ending added. For tests of
// malformed input.
func (c *Conn) WriteRaw(ctx context.Context, b []byte) error { return c.t.write(ctx, b, true) }

// WriteBinary sends b as a WebSocket binary message, which the protocol
// refuses; an error over WebTransport.
func (c *Conn) WriteBinary(ctx context.Context, b []byte) error { return c.t.writeBinary(ctx, b) }

// Send writes v, a frame struct or map, as JSON.
func (c *Conn) Send(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("client: encode frame: %w", err)
	}
	return c.Write(ctx, b)
}

// Ref returns a new ref, unique on this connection.
func (c *Conn) Ref() string { return fmt.Sprintf("r%d", c.n.Add(1)) }

// Hello says h (its type and version filled in) and returns the welcome.
// Frames before the welcome go to skip, when not nil.
func (c *Conn) Hello(ctx context.Context, h wire.Hello, skip func(Frame)) (wire.Welcome, error) {
	h.Type, h.V = wire.TypeHello, wire.ProtocolVersion
	var w wire.Welcome
	if err := c.Send(ctx, h); err != nil {
		return w, err
	}
	f, err := c.Answer(ctx, wire.TypeWelcome, "", skip)
	if err != nil {
		return w, err
	}
	return w, f.Decode(&w)
}

// Start starts a conversation (the visitor's) and returns its id.
func (c *Conn) Start(ctx context.Context) (string, error) {
	ref := c.Ref()
	if err := c.Send(ctx, wire.Ref{Type: wire.TypeStart, Ref: ref}); err != nil {
		return "", err
	}
	f, err := c.Answer(ctx, wire.TypeStarted, ref, nil)
	if err != nil {
		return "", err
	}
	return f.Conversation, nil
}

// Say sends message id with body into conv and returns its ack.
func (c *Conn) Say(ctx context.Context, conv, id, body string) (wire.Ack, error) {
	ref := c.Ref()
	var a wire.Ack
	if err := c.Send(ctx, wire.In{Type: wire.TypeSend, Ref: ref, Conversation: conv, ID: id, Body: &body}); err != nil {
		return a, err
	}
	f, err := c.Answer(ctx, wire.TypeAck, ref, nil)
	if err != nil {
		return a, err
	}
	return a, f.Decode(&a)
}

// Resume asks for conv's events after seq after.
func (c *Conn) Resume(ctx context.Context, ref, conv string, after uint64) error {
	return c.Send(ctx, resumeFrame{Type: wire.TypeResume, Ref: ref, Conversation: conv, After: after})
}

type resumeFrame struct {
	Type         string `json:"type"`
	Ref          string `json:"ref"`
	Conversation string `json:"conversation"`
	After        uint64 `json:"after"`
}

// History resumes conv after seq after, following more, and returns the
// replay's deliver frames of conv.
func (c *Conn) History(ctx context.Context, conv string, after uint64) ([]Frame, error) {
	var out []Frame
	for {
		ref := c.Ref()
		if err := c.Resume(ctx, ref, conv, after); err != nil {
			return nil, err
		}
		for {
			f, err := c.Await(ctx, func(f Frame) bool {
				return f.Type == wire.TypeDeliver && f.Conversation == conv || f.Type == wire.TypeResumed && f.Ref == ref ||
					f.Type == wire.TypeError && f.Ref == ref
			}, nil)
			if err != nil {
				return nil, err
			}
			if f.Type == wire.TypeError {
				return nil, f.AsError()
			}
			if f.Type == wire.TypeDeliver {
				out = append(out, f)
				continue
			}
			var r wire.Resumed
			if err := f.Decode(&r); err != nil {
				return nil, err
			}
			if !r.More {
				return out, nil
			}
			after = r.Head
			break
		}
	}
}

// Discard drops the node's frames from now on, queued ones included: for
// connections kept open only to be counted.
func (c *Conn) Discard() {
	c.discard.Store(true)
	for {
		select {
		case _, ok := <-c.frames:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, nil while it has not.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// CloseCode reads to the end of the connection, dropping the frames still
// coming, and returns the code the node closed it with: a WebSocket close
// status or a WebTransport session's error code; -1 when it ended without
// one.
func (c *Conn) CloseCode(ctx context.Context) (int, error) {
	for {
		if _, err := c.Next(ctx); err != nil {
			if ctx.Err() != nil {
				return -1, fmt.Errorf("the node did not close the connection: %w", ctx.Err())
			}
			break
		}
	}
	return c.t.closeCode(ctx, c.err)
}

// Close ends the connection politely, with the normal close code, and
// waits for the reader.
func (c *Conn) Close() {
	c.quitMu.Do(func() { close(c.quit) })
	c.t.close(wire.CloseNormal, "")
	<-c.done
}

// CloseNow ends the connection at once and waits for the reader.
func (c *Conn) CloseNow() {
	c.quitMu.Do(func() { close(c.quit) })
	c.t.closeNow()
	<-c.done
}

// WSURL turns a node's base URL (http[s]://host:port) into its WebSocket
// endpoint.
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

// AppendSend builds into buf a send frame of message id into conversation
// conv, with id as its ref, without reflection: for load generators. id,
// conv and body must need no JSON escaping.
func AppendSend(buf []byte, id, conv, body string) []byte {
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
