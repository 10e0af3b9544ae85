package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"parley/bench/internal/rawws"
	"parley/gateway/client"
	"parley/gateway/wire"
	"parley/ident"
)

// wsSub is one subscriber connection: a reader goroutine, and for
// protocols whose clients must speak now and then, a pinger. Close ends
// both and waits for them.
type wsSub struct {
	c      *rawws.Conn
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (s *wsSub) Close() error {
	s.cancel()
	s.c.Close()
	s.wg.Wait()
	return nil
}

// startSub starts read (which returns when the connection ends) and,
// when every > 0, ping every that often.
func startSub(c *rawws.Conn, read func() error, every time.Duration, ping func() error) *wsSub {
	ctx, cancel := context.WithCancel(context.Background())
	s := &wsSub{c: c, cancel: cancel}
	s.wg.Go(func() { _ = read() })
	if every > 0 {
		s.wg.Go(func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if ping() != nil {
						return
					}
				}
			}
		})
	}
	return s
}

// dialWS opens a WebSocket to url with the harness's own client, the same
// for every peer (bench/internal/rawws: one read(2) for what the server
// wrote, a reused buffer, no lock, context or allocation per message read),
// and runs setup on it (the protocol's handshake), closing the
// connection when ctx ends first or setup fails.
func dialWS(ctx context.Context, url string, setup func(c *rawws.Conn) error) (*rawws.Conn, error) {
	c, err := rawws.Dial(ctx, url, nil, 4<<10)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, c.CloseNow)
	err = setup(c)
	if !stop() {
		c.CloseNow()
		return nil, fmt.Errorf("%s: %w", url, context.Cause(ctx))
	}
	if err != nil {
		c.CloseNow()
		return nil, err
	}
	return c, nil
}

// writeCtx writes one message on c, closing c if ctx ends first: a server
// that stops reading would otherwise hold the publisher (and the run)
// on a full socket.
func writeCtx(ctx context.Context, c *rawws.Conn, op rawws.Op, b []byte) error {
	stop := context.AfterFunc(ctx, c.CloseNow)
	err := c.Write(op, b)
	if !stop() {
		return fmt.Errorf("write: %w", context.Cause(ctx))
	}
	return err
}

// parleyDriver: the room is a workspace; subscribers are agents (an agent
// receives every conversation of its workspace); the publisher is a
// visitor sending into its one conversation.
type parleyDriver struct {
	url       string // ws://…/v1/ws
	token     string // operator token
	workspace string
	runID     string
	parse     string // Options.ParleyParse
}

// The Parley driver reads its WebSocket itself, as the other peers'
// drivers do theirs (no reader goroutine of parley/gateway/client between
// the socket and the measurement); it parses frames with the client's
// ParseFrame.

func (d *parleyDriver) hello(c *rawws.Conn, role ident.Role, i int) error {
	h := wire.Hello{Type: wire.TypeHello, V: wire.ProtocolVersion, Workspace: d.workspace, Role: role, Name: "fanout " + string(role) + " " + strconv.Itoa(i)}
	if role == ident.Agent {
		h.Token = d.token
	}
	_, err := parleyCall(c, h, wire.TypeWelcome, "")
	return err
}

// parleyCall writes frame v and reads until the frame of type typ
// answering ref (with ref "", any of type typ); an error frame answering
// ref, or one with no ref, is returned as a *client.Error.
func parleyCall(c *rawws.Conn, v any, typ, ref string) (client.Frame, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return client.Frame{}, err
	}
	if err := c.Write(rawws.OpText, b); err != nil {
		return client.Frame{}, err
	}
	for {
		_, b, err := c.Next()
		if err != nil {
			return client.Frame{}, err
		}
		f := client.ParseFrame(b)
		if f.Type == typ && (ref == "" || f.Ref == ref) {
			return f, nil
		}
		if f.Type == wire.TypeError && (f.Ref == ref || f.Ref == "") {
			return client.Frame{}, f.AsError()
		}
	}
}

// parleyPing keeps a connection the node would otherwise close: it closes
// one silent for three 10 s heartbeats.
var parleyPing = []byte(`{"type":"ping"}`)

func (d *parleyDriver) subscribe(ctx context.Context, i int, onMessage func([]byte)) (io.Closer, error) {
	c, err := dialWS(ctx, d.url, func(c *rawws.Conn) error { return d.hello(c, ident.Agent, i) })
	if err != nil {
		return nil, err
	}
	deliver := []byte(`{"type":"deliver"`)
	read := func() error {
		for {
			_, b, err := c.Next()
			if err != nil {
				return err
			}
			if !bytes.HasPrefix(b, deliver) {
				continue
			}
			var body []byte
			ok := true
			switch d.parse {
			case ParseSearch:
				body = b
			case ParseJSON:
				body, ok = parleyBodyJSON(b)
			default:
				body, ok = parleyBody(b)
			}
			if ok {
				onMessage(body)
			}
		}
	}
	ping := func() error { return c.Write(rawws.OpText, parleyPing) }
	return startSub(c, read, 8*time.Second, ping), nil
}

type parleyPublisher struct {
	d    *parleyDriver
	sub  *wsSub
	conv string
	k    int
	buf  []byte
	err  chan error // the first error frame
}

func (d *parleyDriver) publisher(ctx context.Context) (fanoutPublisher, error) {
	var conv string
	c, err := dialWS(ctx, d.url, func(c *rawws.Conn) error {
		if err := d.hello(c, ident.Visitor, 0); err != nil {
			return err
		}
		f, err := parleyCall(c, wire.Ref{Type: wire.TypeStart, Ref: "s"}, wire.TypeStarted, "s")
		conv = f.Conversation
		return err
	})
	if err != nil {
		return nil, err
	}
	p := &parleyPublisher{d: d, conv: conv, err: make(chan error, 1)}
	errFrame := []byte(`{"type":"error"`)
	// Acks and the visitor's own deliveries are read and dropped; an error
	// frame fails the next publish.
	read := func() error {
		for {
			_, b, err := c.Next()
			if err != nil {
				return err
			}
			if bytes.HasPrefix(b, errFrame) {
				select {
				case p.err <- fmt.Errorf("parley: %.200s", b):
				default:
				}
			}
		}
	}
	ping := func() error { return c.Write(rawws.OpText, parleyPing) }
	p.sub = startSub(c, read, 8*time.Second, ping)
	return p, nil
}

func (p *parleyPublisher) publish(ctx context.Context, payload []byte) error {
	select {
	case err := <-p.err:
		return err
	default:
	}
	id := "fo" + p.d.runID + strconv.Itoa(p.k)
	p.k++
	p.buf = client.AppendSend(p.buf, id, p.conv, string(payload))
	return writeCtx(ctx, p.sub.c, rawws.OpText, p.buf)
}

func (p *parleyPublisher) Close() error { return p.sub.Close() }

// natsDriver: the room is a subject; NATS over the server's WebSocket
// listener (binary messages carrying the text protocol).
type natsDriver struct {
	url     string // ws://host:port
	subject string
}

// natsHandshake reads INFO, sends CONNECT, then extra, then PING, and
// waits for the PONG: the server has processed everything before it.
func natsHandshake(c *rawws.Conn, p *natsParser, name string, extra []byte) error {
	msg := append(natsConnect(name), extra...)
	msg = append(msg, natsPing...)
	gotInfo, sent := false, false
	for {
		_, b, err := c.Next()
		if err != nil {
			return err
		}
		pong := false
		err = p.feed(b, func(op natsOp) error {
			switch op.Kind {
			case "INFO":
				gotInfo = true
			case "-ERR":
				return fmt.Errorf("nats: -ERR %s", op.Arg)
			case "PONG":
				pong = sent
			}
			return nil
		})
		if err != nil {
			return err
		}
		if pong {
			return nil
		}
		if gotInfo && !sent {
			if err := c.Write(rawws.OpBinary, msg); err != nil {
				return err
			}
			sent = true
		}
	}
}

func (d *natsDriver) subscribe(ctx context.Context, i int, onMessage func([]byte)) (io.Closer, error) {
	sub, err := natsSub(d.subject, "1")
	if err != nil {
		return nil, err
	}
	p := &natsParser{}
	c, err := dialWS(ctx, d.url, func(c *rawws.Conn) error {
		return natsHandshake(c, p, "fanout-sub-"+strconv.Itoa(i), sub)
	})
	if err != nil {
		return nil, err
	}
	read := func() error {
		for {
			_, b, err := c.Next()
			if err != nil {
				return err
			}
			err = p.feed(b, func(op natsOp) error {
				switch op.Kind {
				case "MSG":
					onMessage(op.Payload)
				case "PING":
					return c.Write(rawws.OpBinary, natsPong)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return startSub(c, read, 0, nil), nil
}

type natsPublisher struct {
	d   *natsDriver
	sub *wsSub
	buf []byte
	err chan error
}

func (d *natsDriver) publisher(ctx context.Context) (fanoutPublisher, error) {
	p := &natsParser{}
	c, err := dialWS(ctx, d.url, func(c *rawws.Conn) error { return natsHandshake(c, p, "fanout-pub", nil) })
	if err != nil {
		return nil, err
	}
	pub := &natsPublisher{d: d, err: make(chan error, 1)}
	read := func() error {
		for {
			_, b, err := c.Next()
			if err != nil {
				return err
			}
			err = p.feed(b, func(op natsOp) error {
				switch op.Kind {
				case "PING":
					return c.Write(rawws.OpBinary, natsPong)
				case "-ERR":
					select {
					case pub.err <- fmt.Errorf("nats: -ERR %s", op.Arg):
					default:
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	pub.sub = startSub(c, read, 0, nil)
	return pub, nil
}

func (p *natsPublisher) publish(ctx context.Context, payload []byte) error {
	select {
	case err := <-p.err:
		return err
	default:
	}
	var err error
	if p.buf, err = natsPub(p.buf[:0], p.d.subject, payload); err != nil {
		return err
	}
	return writeCtx(ctx, p.sub.c, rawws.OpBinary, p.buf)
}

func (p *natsPublisher) Close() error { return p.sub.Close() }

// centrifugoDriver: the room is a channel; subscribers speak the JSON
// client protocol (client_insecure: no token), the publisher is the
// server HTTP API (api_insecure: no key).
type centrifugoDriver struct {
	url     string // ws://host:port/connection/websocket
	api     string // http://host:port/api
	channel string
	json    bool // Options.CentrifugoJSON
}

func (d *centrifugoDriver) subscribe(ctx context.Context, i int, onMessage func([]byte)) (io.Closer, error) {
	connect, _ := centCommand(1, "connect", map[string]any{"name": "fanout"})
	subscribe, _ := centCommand(2, "subscribe", map[string]any{"channel": d.channel})
	c, err := dialWS(ctx, d.url, func(c *rawws.Conn) error {
		if err := c.Write(rawws.OpText, append(append(connect, '\n'), subscribe...)); err != nil {
			return err
		}
		for {
			_, b, err := c.Next()
			if err != nil {
				return err
			}
			rs, err := decodeCentReplies(b)
			if err != nil {
				return err
			}
			for _, r := range rs {
				if r.Error != nil {
					return r.Error
				}
				if r.ID == 2 && r.Subscribe != nil {
					return nil
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	// A message's replies: publications' data (nil: none) and pings,
	// all read before any is acted on (a reply that does not decode ends
	// the subscriber, as it always did).
	type reply struct {
		data []byte
		ping bool
	}
	var replies []reply
	read := func() error {
		for {
			_, b, err := c.Next()
			if err != nil {
				return err
			}
			replies = replies[:0]
			if d.json {
				rs, err := decodeCentReplies(b)
				if err != nil {
					return err
				}
				for i := range rs {
					replies = append(replies, reply{rs[i].publication(d.channel), rs[i].isPing()})
				}
			} else {
				for line := range centLines(b) {
					data, ping, err := centLine(line, d.channel)
					if err != nil {
						return err
					}
					replies = append(replies, reply{data, ping})
				}
			}
			for _, r := range replies {
				if r.data != nil {
					onMessage(r.data)
				} else if r.ping {
					if err := c.Write(rawws.OpText, centPong); err != nil {
						return err
					}
				}
			}
		}
	}
	return startSub(c, read, 0, nil), nil
}

type centPublisher struct {
	d   *centrifugoDriver
	hc  *http.Client
	buf []byte
}

func (d *centrifugoDriver) publisher(ctx context.Context) (fanoutPublisher, error) {
	return &centPublisher{d: d, hc: &http.Client{Timeout: 10 * time.Second}}, nil
}

func (p *centPublisher) publish(ctx context.Context, payload []byte) error {
	p.buf = centPublishBody(p.buf, p.d.channel, payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.d.api+"/publish", bytes.NewReader(p.buf))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("centrifugo api: HTTP %d: %.200s", resp.StatusCode, b)
	}
	var r struct {
		Error *centError `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("centrifugo api: %w", err)
	}
	if r.Error != nil {
		return r.Error
	}
	return nil
}

func (p *centPublisher) Close() error { p.hc.CloseIdleConnections(); return nil }
