package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	protoclient "parley/gateway/client"

	"parley/certs"
	"parley/gateway/wire"
	"parley/internal/eventually"

	"github.com/coder/websocket"
	"github.com/quic-go/webtransport-go"
)

// wtEnv is a gateway serving both WebSocket (env.url) and WebTransport
// over real UDP on 127.0.0.1.
type wtEnv struct {
	*env
	wt    *WebTransport
	wtURL string
	hash  []byte // SHA-256 of the served certificate, as a browser pins it
	met   *countMetrics
	d     *protoclient.WTDialer // accepts the certificate by its hash
}

func newWTEnv(t testing.TB, mod func(*Config)) *wtEnv {
	t.Helper()
	met := &countMetrics{n: map[string]int{}}
	e := newEnv(t, func(c *Config) {
		c.Metrics = met
		if mod != nil {
			mod(c)
		}
	})
	src, err := certs.SelfSigned([]string{"127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := base64.StdEncoding.DecodeString(src.Hashes()[0])
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := e.gw.NewWebTransport(WebTransportConfig{TLS: src.TLSConfig()})
	served := make(chan error, 1)
	go func() { served <- w.Serve(pc) }()
	t.Cleanup(func() {
		w.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		pc.Close()
	})
	d := protoclient.NewWTDialer(protoclient.WTConfig{CertHashes: [][]byte{hash}, Sockets: 1})
	t.Cleanup(d.Close)
	return &wtEnv{env: e, wt: w, wtURL: "https://" + pc.LocalAddr().String() + WebTransportPath, hash: hash, met: met, d: d}
}

// countMetrics counts the gateway's measurements by name and transport.
type countMetrics struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *countMetrics) add(k string, d int) {
	m.mu.Lock()
	m.n[k] += d
	m.mu.Unlock()
}
func (m *countMetrics) get(k string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[k]
}
func (m *countMetrics) Relay(string)                        {}
func (m *countMetrics) ConnOpened(t string)                 { m.add("conns/"+t, 1); m.add("opened/"+t, 1) }
func (m *countMetrics) ConnClosed(t string)                 { m.add("conns/"+t, -1) }
func (m *countMetrics) FrameIn(t string)                    { m.add("frames/"+t, 1) }
func (m *countMetrics) MessageIn(t string)                  { m.add("messages/"+t, 1) }
func (m *countMetrics) Delivered(t string, _ time.Duration) { m.add("delivered/"+t, 1) }
func (m *countMetrics) Error(code string)                   { m.add("error/"+code, 1) }

// pinnedTLS verifies the server by the SHA-256 of its certificate, as
// browsers do with serverCertificateHashes.
func pinnedTLS(hash []byte) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no certificate")
			}
			sum := sha256.Sum256(raw[0])
			if !bytes.Equal(sum[:], hash) {
				return errors.New("certificate hash mismatch")
			}
			return nil
		},
	}
}

func (e *wtEnv) dialWT(t testing.TB) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.d.Dial(ctx, e.wtURL, protoclient.Options{Queue: testQueue})
	if err != nil {
		t.Fatalf("webtransport dial: %v", err)
	}
	t.Cleanup(c.CloseNow)
	return &client{t: t, c: c}
}

// writeRaw writes b as it is: over WebTransport, bytes on the stream with
// no line ending added.
func (cl *client) writeRaw(b []byte) { cl.sendRaw(websocket.MessageText, b) }

func (e *wtEnv) visitorWT(t testing.TB, ws string, extra map[string]any) (*client, map[string]any) {
	t.Helper()
	cl := e.dialWT(t)
	h := map[string]any{"type": "hello", "v": 1, "workspace": ws, "role": "visitor", "name": "Ada"}
	for k, v := range extra {
		h[k] = v
	}
	cl.send(h)
	return cl, cl.expect("welcome", nil)
}

func (e *wtEnv) agentWT(t testing.TB, ws string) *client {
	t.Helper()
	cl := e.dialWT(t)
	cl.send(map[string]any{"type": "hello", "v": 1, "workspace": ws, "role": "agent", "token": "agent-token-" + ws})
	cl.expect("welcome", nil)
	return cl
}

// TestWTChatWithWSAgent: a visitor over WebTransport and an agent over
// WebSocket share conversations, acks, receipts, typing and presence.
func TestWTChatWithWSAgent(t *testing.T) {
	t.Parallel()
	e := newWTEnv(t, nil)
	ag := e.agent(t, "ws1")
	v, w := e.visitorWT(t, "ws1", nil)
	if w["node"] != "t1" || !strings.HasPrefix(w["participant"].(string), "v:") {
		t.Fatalf("welcome: %v", w)
	}
	ag.expect("presence", func(m map[string]any) bool { return m["participant"] == w["participant"] && m["online"] == true })
	conv := v.start()
	v.send(map[string]any{"type": "typing", "conversation": conv, "typing": true})
	ag.expect("typing", func(m map[string]any) bool { return m["participant"] == w["participant"] })

	ack := v.say(conv, "m-00000001", "Hello over QUIC")
	if ack["seq"].(float64) != 1 || ack["dup"] != false {
		t.Fatalf("ack: %v", ack)
	}
	d := ag.expect("deliver", msgIs("m-00000001"))
	if d["message"].(map[string]any)["body"] != "Hello over QUIC" {
		t.Fatalf("agent got %v", d)
	}
	if !seenFrame(v, "deliver", msgIs("m-00000001")) { // the sender's own copy, before or after the ack
		v.expect("deliver", msgIs("m-00000001"))
	}
	// A retry is stored once.
	if again := v.say(conv, "m-00000001", "Hello over QUIC"); again["seq"].(float64) != 1 || again["dup"] != true {
		t.Fatalf("retry ack: %v", again)
	}
	ag.say(conv, "m-00000002", "Hi from a WebSocket")
	v.expect("deliver", msgIs("m-00000002"))
	r := v.ref()
	v.send(map[string]any{"type": "read", "ref": r, "conversation": conv, "seq": 2})
	v.expect("ack", refIs(r))
	ag.expect("read", func(m map[string]any) bool { return m["seq"].(float64) == 2 })
	ag.none("deliver", 200*time.Millisecond)

	if got := e.met.get("conns/wt"); got != 1 {
		t.Errorf("open wt connections = %d, want 1", got)
	}
	if got := e.met.get("delivered/wt"); got < 2 {
		t.Errorf("wt deliveries = %d, want >= 2", got)
	}
	if got := e.met.get("messages/wt"); got != 2 {
		t.Errorf("wt messages in = %d, want 2", got)
	}
	// Leaving ends the visitor's presence.
	v.c.CloseNow()
	ag.expect("presence", func(m map[string]any) bool { return m["participant"] == w["participant"] && m["online"] == false })
	eventually.Holds(t, 5*time.Second, "no WebTransport connection counted", func() error {
		if n := e.met.get("conns/wt"); n != 0 {
			return fmt.Errorf("conns/wt %d", n)
		}
		return nil
	})
}

// TestWTAgentWithWSVisitor is the other way round.
func TestWTAgentWithWSVisitor(t *testing.T) {
	t.Parallel()
	e := newWTEnv(t, nil)
	ag := e.agentWT(t, "ws1")
	v, _ := e.visitor(t, "ws1", nil)
	conv := v.start()
	v.say(conv, "m-00000001", "Hello")
	ag.expect("deliver", msgIs("m-00000001"))
	ag.say(conv, "m-00000002", "Hello from QUIC")
	d := v.expect("deliver", msgIs("m-00000002"))
	if d["message"].(map[string]any)["role"] != "agent" || d["seq"].(float64) != 2 {
		t.Fatalf("visitor got %v", d)
	}
	r := ag.ref()
	ag.send(map[string]any{"type": "list", "ref": r})
	list := ag.expect("conversations", refIs(r))
	if items := list["items"].([]any); len(items) != 1 || items[0].(map[string]any)["head"].(float64) != 2 {
		t.Fatalf("list: %v", list)
	}
}

// TestWTResumeAfterReconnect: a visitor loses its WebTransport session,
// comes back (over WebTransport, then over WebSocket, as the widget does when
// WebTransport breaks) and resumes with neither a gap nor a duplicate.
func TestWTResumeAfterReconnect(t *testing.T) {
	t.Parallel()
	e := newWTEnv(t, nil)
	v, w := e.visitorWT(t, "ws1", nil)
	conv := v.start()
	for i := 1; i <= 3; i++ {
		v.say(conv, fmt.Sprintf("m-v%07d", i), fmt.Sprintf("v%d", i))
	}
	v.c.CloseNow() // as a broken path would
	ag := e.agent(t, "ws1")
	for i := 1; i <= 2; i++ {
		ag.say(conv, fmt.Sprintf("m-a%07d", i), fmt.Sprintf("a%d", i))
	}
	same := map[string]any{"visitor_id": w["visitor_id"], "visitor_sig": w["visitor_sig"]}
	v2, w2 := e.visitorWT(t, "ws1", same)
	if w2["participant"] != w["participant"] {
		t.Fatalf("not the same visitor: %v", w2)
	}
	r := v2.ref()
	v2.send(map[string]any{"type": "resume", "ref": r, "conversation": conv, "after": 3})
	if res := v2.expect("resumed", refIs(r)); res["head"].(float64) != 5 {
		t.Fatalf("resumed: %v", res)
	}
	if got := deliveredSeqs(v2.seen); fmt.Sprint(got) != "[4 5]" {
		t.Fatalf("replayed %v, want [4 5]", got)
	}
	ag.say(conv, "m-a0000003", "a3")
	if d := v2.expect("deliver", nil); d["seq"].(float64) != 6 {
		t.Fatalf("live after resume: %v", d)
	}
	// Fallback: the next connection is a WebSocket; it resumes after 6.
	v2.c.CloseNow()
	ag.say(conv, "m-a0000004", "a4")
	v3, _ := e.visitor(t, "ws1", same)
	r = v3.ref()
	v3.send(map[string]any{"type": "resume", "ref": r, "conversation": conv, "after": 6})
	v3.expect("resumed", refIs(r))
	if got := deliveredSeqs(v3.seen); fmt.Sprint(got) != "[7]" {
		t.Fatalf("replayed over WebSocket %v, want [7]", got)
	}
	// The pending message the visitor resends after the fallback is stored once.
	if ack := v3.say(conv, "m-v0000003", "v3"); ack["dup"] != true || ack["seq"].(float64) != 3 {
		t.Fatalf("resent message: %v", ack)
	}
}

func deliveredSeqs(frames []map[string]any) []float64 {
	var seqs []float64
	for _, m := range frames {
		if m["type"] == "deliver" {
			seqs = append(seqs, m["seq"].(float64))
		}
	}
	return seqs
}

func TestWTBadInput(t *testing.T) {
	t.Parallel()
	e := newWTEnv(t, func(c *Config) { c.FrameRate, c.FrameBurst = 50, 50 })
	mine, _ := e.visitorWT(t, "ws1", nil)
	myConv := mine.start()
	cases := []struct {
		name, line, code string
		close            int
	}{
		{"invalid JSON", `{"type":"send",`, wire.CodeBadFrame, 0},
		{"invalid UTF-8", "{\"type\":\"send\",\"body\":\"\xff\xfe\"}", wire.CodeBadFrame, 0},
		{"not an object", `[1,2]`, wire.CodeBadFrame, 0},
		{"unknown type", `{"type":"launch"}`, wire.CodeUnknownType, 0},
		{"missing type", `{}`, wire.CodeUnknownType, 0},
		{"empty body", fmt.Sprintf(`{"type":"send","conversation":%q,"id":"m-00000009","body":""}`, myConv), wire.CodeBadRequest, 0},
		{"bad conversation id", `{"type":"send","conversation":"../../etc","id":"m-00000009","body":"hi"}`, wire.CodeBadRequest, 0},
		{"someone else's conversation", fmt.Sprintf(`{"type":"send","conversation":%q,"id":"m-00000009","body":"hi"}`, myConv), wire.CodeNotFound, 0},
		{"second hello", `{"type":"hello","v":1,"workspace":"ws1","role":"visitor"}`, wire.CodeBadRequest, 0},
		{"too large", `{"type":"ping","pad":"` + strings.Repeat("a", wire.MaxFrameBytes) + `"}`, wire.CodeTooLarge, wire.CloseTooLarge},
		{"too large, no newline in sight", strings.Repeat("a", 4*wire.MaxFrameBytes), wire.CodeTooLarge, wire.CloseTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, _ := e.visitorWT(t, "ws1", nil)
			v.writeRaw([]byte(c.line + "\n"))
			got := v.expect("error", nil)
			if got["code"] != c.code {
				t.Fatalf("code %v, want %s (%v)", got["code"], c.code, got)
			}
			if c.close != 0 {
				if code := closeCode(t, v); code != c.close {
					t.Fatalf("close code %d, want %d", code, c.close)
				}
				return
			}
			v.send(map[string]any{"type": "ping", "ref": "alive"})
			v.expect("pong", refIs("alive"))
		})
	}
	if evs, _, err := e.st.Events("ws1", myConv, 0, 100); err != nil || len(evs) != 0 {
		t.Fatalf("bad input was stored: %v %v", evs, err)
	}

	t.Run("line framing", func(t *testing.T) {
		v, _ := e.visitorWT(t, "ws1", nil)
		// CRLF, empty lines, and frames split across writes and packed
		// into one write are all frames as usual.
		v.writeRaw([]byte("\n\r\n{\"type\":\"ping\",\"ref\":\"a\"}\r\n{\"type\":\"ping\",\"ref\":\"b\"}\n{\"type\":\"pi"))
		v.expect("pong", refIs("a"))
		v.expect("pong", refIs("b"))
		v.writeRaw([]byte("ng\",\"ref\":\"c\"}\n"))
		v.expect("pong", refIs("c"))
		// A frame of exactly wire.MaxFrameBytes is not too large.
		pad := wire.MaxFrameBytes - len(`{"type":"ping","ref":"d","pad":""}`)
		v.writeRaw([]byte(`{"type":"ping","ref":"d","pad":"` + strings.Repeat("x", pad) + "\"}\r\n"))
		v.expect("pong", refIs("d"))
	})
	t.Run("frame before hello", func(t *testing.T) {
		cl := e.dialWT(t)
		cl.send(map[string]any{"type": "list"})
		if got := cl.expect("error", nil); got["code"] != wire.CodeUnauthenticated {
			t.Fatalf("got %v", got)
		}
		if code := closeCode(t, cl); code != wire.CloseUnauthentic {
			t.Fatalf("close %d", code)
		}
	})
	t.Run("auth failed", func(t *testing.T) {
		cl := e.dialWT(t)
		cl.send(map[string]any{"type": "hello", "v": 1, "workspace": "ws1", "role": "agent", "token": "nope"})
		if got := cl.expect("error", nil); got["code"] != wire.CodeAuthFailed {
			t.Fatalf("got %v", got)
		}
		if code := closeCode(t, cl); code != wire.CloseAuthFailed {
			t.Fatalf("close %d", code)
		}
	})
	t.Run("flood", func(t *testing.T) {
		v, _ := e.visitorWT(t, "ws1", nil)
		v.writeRaw([]byte(strings.Repeat("{\"type\":\"ping\"}\n", 200)))
		if got := v.expect("error", nil); got["code"] != wire.CodeRateLimited {
			t.Fatalf("got %v", got)
		}
		if code := closeCode(t, v); code != wire.CloseRateLimited {
			t.Fatalf("flood not cut off: close %d", code)
		}
	})
	// After all that, the node still serves a fresh client.
	v, _ := e.visitorWT(t, "ws1", nil)
	v.say(v.start(), "m-00000100", "still here")
}

// TestWTShutdownTellsClientsToReconnect: a shutting-down gateway sends
// unavailable and closes the session with 1012, as over WebSocket.
func TestWTShutdownTellsClientsToReconnect(t *testing.T) {
	t.Parallel()
	e := newWTEnv(t, nil)
	v, _ := e.visitorWT(t, "ws1", nil)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- e.gw.Shutdown(ctx)
	}()
	if got := v.expect("error", nil); got["code"] != wire.CodeUnavailable {
		t.Fatalf("got %v", got)
	}
	if code := closeCode(t, v); code != wire.CloseRestart {
		t.Fatalf("close %d", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestWTConnectionsPerIPAreLimited(t *testing.T) {
	t.Parallel()
	e := newWTEnv(t, func(c *Config) { c.MaxConnsPerIP = 1 })
	v, _ := e.visitorWT(t, "ws1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var he *protoclient.HandshakeError
	if _, err := e.d.Dial(ctx, e.wtURL, protoclient.Options{}); !errors.As(err, &he) || he.Status != 429 {
		t.Fatalf("second connection: %v", err)
	}
	v.c.CloseNow()
	eventually.Holds(t, 5*time.Second, "the address's slot frees once its session closes", func() error {
		c, err := e.d.Dial(ctx, e.wtURL, protoclient.Options{})
		if err == nil {
			c.CloseNow()
		}
		return err
	})
}

// TestWTRefusesOtherRequests: the HTTP/3 server hands everything else to
// its Handler, and a session needs a stream within the hello timeout.
func TestWTNoStreamIsClosed(t *testing.T) {
	t.Parallel()
	e := newWTEnv(t, func(c *Config) { c.HelloTimeout = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &webtransport.Transport{TLSClientConfig: pinnedTLS(e.hash)}
	_, sess, err := d.Dial(ctx, e.wtURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.CloseWithError(0, "")
	select {
	case <-sess.Context().Done():
	case <-ctx.Done():
		t.Fatal("a session without a stream stays open")
	}
	var se *webtransport.SessionError
	if _, err := sess.OpenStream(); !errors.As(err, &se) || se.ErrorCode != wire.CloseUnauthentic {
		t.Fatalf("closed with %v", err)
	}
}

func TestWTWrongCertificateIsRefused(t *testing.T) {
	t.Parallel()
	e := newWTEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := protoclient.NewWTDialer(protoclient.WTConfig{CertHashes: [][]byte{make([]byte, 32)}, Sockets: 1})
	defer d.Close()
	if c, err := d.Dial(ctx, e.wtURL, protoclient.Options{}); err == nil {
		c.CloseNow()
		t.Fatal("connected with a wrong certificate hash")
	}
}

// TestLineReader splits streams delivered in every chunking.
func TestLineReader(t *testing.T) {
	t.Parallel()
	in := "{\"a\":1}\n\n{\"b\":2}\r\n\r\n{\"c\":\"é\"}\nunterminated"
	for _, r := range []io.Reader{strings.NewReader(in), iotest.OneByteReader(strings.NewReader(in)), iotest.HalfReader(strings.NewReader(in))} {
		lr := newLineReader(r)
		var got []string
		for {
			l, err := lr.next()
			if err != nil {
				if err != io.EOF {
					t.Fatal(err)
				}
				break
			}
			got = append(got, string(l))
		}
		if fmt.Sprint(got) != `[{"a":1} {"b":2} {"c":"é"}]` {
			t.Fatalf("got %q", got)
		}
	}
}

// FuzzWTFrames feeds arbitrary bytes to the WebTransport line framing: every
// line within the limit comes out whole, as it went in, and passes through
// decodeFrame without panicking; an over-long line comes out cut to
// wire.MaxFrameBytes+1 bytes (too_large) and nothing after it does. Encoded
// frames, whatever the text in them, never contain a raw newline.
func FuzzWTFrames(f *testing.F) {
	f.Add([]byte("{\"type\":\"ping\"}\n"), "hi")
	f.Add([]byte("{\"type\":\"hello\",\"v\":1,\"workspace\":\"demo\",\"role\":\"visitor\"}\r\n\n\n{\"type\":\"ping\"}"), "line\nbreak")
	f.Add([]byte("\xff\xfe\n[1]\n{}\n"), "\u2028\u2029\r\n\x00")
	f.Add(bytes.Repeat([]byte("a"), wire.MaxFrameBytes+1), "")
	f.Add(append(bytes.Repeat([]byte("a"), wire.MaxFrameBytes), '\r', '\n'), "")
	f.Fuzz(func(t *testing.T, data []byte, body string) {
		var want [][]byte
		tooLong := false
		lines := bytes.Split(data, []byte("\n"))
		for _, l := range lines[:len(lines)-1] { // the last piece is unterminated
			l = bytes.TrimSuffix(l, []byte("\r"))
			if len(l) > wire.MaxFrameBytes {
				tooLong = true
				want = append(want, l[:wire.MaxFrameBytes+1])
				break
			}
			if len(l) > 0 {
				want = append(want, l)
			}
		}
		// An unterminated last piece is no frame, unless it is too long to
		// be one whatever follows: then the reader may cut it off early.
		last := lines[len(lines)-1]
		mayCut := !tooLong && len(last) > wire.MaxFrameBytes+1
		lr := newLineReader(iotest.HalfReader(bytes.NewReader(data)))
		var got [][]byte
		var end error
		for {
			l, err := lr.next()
			if err != nil {
				end = err
				break
			}
			if bytes.IndexByte(l, '\n') >= 0 || len(l) > wire.MaxFrameBytes+1 || len(l) == 0 {
				t.Fatalf("bad frame %q", l)
			}
			if _, werr := decodeFrame(l); (len(l) > wire.MaxFrameBytes) != (werr != nil && werr.Code == wire.CodeTooLarge) {
				t.Fatalf("frame of %d bytes decoded as %v", len(l), werr)
			}
			got = append(got, l)
		}
		if mayCut && len(got) == len(want)+1 {
			tooLong = true
			want = append(want, last[:wire.MaxFrameBytes+1])
		}
		if tooLong != errors.Is(end, errLineTooLong) || (!tooLong && end != io.EOF) {
			t.Fatalf("ended with %v, too long %v", end, tooLong)
		}
		if len(got) != len(want) {
			t.Fatalf("%d frames, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d = %q, want %q", i, got[i], want[i])
			}
		}
		// The writer's side of the framing.
		if !utf8.ValidString(body) {
			body = strings.ToValidUTF8(body, "?")
		}
		enc := encode(wire.Deliver{Type: "deliver", Conversation: "c_x", Seq: 1, Message: wire.Message{ID: "m", Body: body, Name: body}})
		if bytes.IndexByte(enc, '\n') >= 0 || bytes.IndexByte(enc, '\r') >= 0 {
			t.Fatalf("encoded frame contains a raw line break: %q", enc)
		}
	})
}
