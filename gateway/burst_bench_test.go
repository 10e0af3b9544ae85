package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// BenchmarkBurst writes bursts of n frames to one agent connection, the
// way the fan-out does when commits bring n events for it at once: n
// items queued back to back, then read by a client that allocates nothing
// (rawWSClient). One op is one burst. It reports, per burst, the write
// system calls of the whole process (/proc/self/io syscw; the client only
// reads) and the allocations per frame.
//
// path=poll is ServeHTTP's transport. path=perframe is the baseline, the
// transport of the code before issue 16: coder/websocket, one write and one
// context timer per frame (conn.write's and the library's own), behind the
// same queue.
func BenchmarkBurst(b *testing.B) {
	for _, path := range []string{"perframe", "poll"} {
		for _, n := range []int{1, 7, 64} {
			b.Run(fmt.Sprintf("path=%s/frames=%d", path, n), func(b *testing.B) {
				benchBurst(b, path, n)
			})
		}
	}
}

func benchBurst(b *testing.B, path string, n int) {
	e := newEnv(b, nil)
	url := e.url
	if path == "perframe" {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true, CompressionMode: websocket.CompressionDisabled})
			if err != nil {
				return
			}
			c.SetReadLimit(hardReadLimit)
			e.gw.serve(context.Background(), &perFrameWS{c: c}, clientIP(r), false, nil)
		}))
		b.Cleanup(srv.Close)
		url = "ws" + strings.TrimPrefix(srv.URL, "http")
	}
	cl, c := rawAgent(b, e, url)
	// The welcome and presence frames, then nothing.
	for {
		cl.nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := cl.next(); err != nil {
			break
		}
	}
	cl.nc.SetReadDeadline(time.Time{})
	items := make([]*outItem, n)
	for i := range items {
		items[i] = &outItem{kind: outFrame, data: []byte(fmt.Sprintf(`{"type":"deliver","conversation":"c_%024d","seq":%d,"message":{"id":"m-%010d","body":"%s"}}`, i, i+1, i, strings.Repeat("x", 120)))}
	}
	w0 := writeSyscalls(b)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, it := range items {
			c.send(it)
		}
		for range n {
			if _, err := cl.next(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(writeSyscalls(b)-w0)/float64(b.N), "writes/burst")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N*n), "allocs/frame")
}

// writeSyscalls is the process's write system calls so far (write,
// writev and the like), from /proc/self/io.
func writeSyscalls(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Skip("no syscw in /proc/self/io")
	return 0
}

// perFrameWS is the WebSocket transport as it was before issue 16, kept
// for BenchmarkBurst's baseline: coder/websocket, a reader goroutine, and
// one write with its own context timer per frame.
type perFrameWS struct{ c *websocket.Conn }

func (t *perFrameWS) Name() string { return "ws" }

func (t *perFrameWS) Read(ctx context.Context) ([]byte, error) {
	typ, data, err := t.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, errBinary
	}
	return data, nil
}

func (t *perFrameWS) WriteFrames(frames []wframe, timeout time.Duration) error {
	for _, f := range frames {
		if f.op != 0 {
			continue // the library answers pings itself
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := t.c.Write(ctx, websocket.MessageText, f.data)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *perFrameWS) Close(code int, reason string) error {
	return t.c.Close(websocket.StatusCode(code), reason)
}

// rawWSClient is a WebSocket client that reads frames into one buffer and
// allocates nothing per frame, so that a benchmark's allocations are the
// server's.
type rawWSClient struct {
	nc   net.Conn
	br   *bufio.Reader
	buf  []byte
	last []byte // the payload next read, in buf
}

func dialRawWS(url string) (*rawWSClient, error) {
	host := strings.TrimPrefix(url, "ws://")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	return upgradeRawWS(nc, host)
}

// upgradeRawWS opens a WebSocket on nc (TCP or TLS) to host.
func upgradeRawWS(nc net.Conn, host string) (*rawWSClient, error) {
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", host, key)
	br := bufio.NewReaderSize(nc, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAcceptKey(key) {
		nc.Close()
		return nil, fmt.Errorf("handshake: %s", resp.Status)
	}
	return &rawWSClient{nc: nc, br: br, buf: make([]byte, 64<<10)}, nil
}

// rawAgent connects a rawWSClient to url (e's gateway, or a server in
// front of it) and says hello as an agent of ws1; it returns the client
// and its connection on the gateway. The client is closed with the test.
func rawAgent(t testing.TB, e *env, url string) (*rawWSClient, *conn) {
	t.Helper()
	cl, err := dialRawWS(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.nc.Close() })
	if err := cl.writeText([]byte(`{"type":"hello","v":1,"workspace":"ws1","role":"agent","token":"agent-token-ws1"}`)); err != nil {
		t.Fatal(err)
	}
	return cl, onlyConn(t, e)
}

// writeText writes one masked text frame.
func (c *rawWSClient) writeText(p []byte) error {
	var mask [4]byte
	rand.Read(mask[:])
	f := []byte{0x81}
	switch {
	case len(p) < 126:
		f = append(f, 0x80|byte(len(p)))
	case len(p) <= 0xFFFF:
		f = binary.BigEndian.AppendUint16(append(f, 0x80|126), uint16(len(p)))
	default:
		f = binary.BigEndian.AppendUint64(append(f, 0x80|127), uint64(len(p)))
	}
	f = append(f, mask[:]...)
	for i, x := range p {
		f = append(f, x^mask[i&3])
	}
	_, err := c.nc.Write(f)
	return err
}

// next reads one server frame and returns its opcode; the payload is
// read into the client's buffer and dropped.
func (c *rawWSClient) next() (byte, error) {
	h := c.buf[:2]
	if _, err := io.ReadFull(c.br, h); err != nil {
		return 0, err
	}
	op := h[0] & 0x0F
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.br, c.buf[:2]); err != nil {
			return 0, err
		}
		n = int(binary.BigEndian.Uint16(c.buf))
	case 127:
		if _, err := io.ReadFull(c.br, c.buf[:8]); err != nil {
			return 0, err
		}
		n = int(binary.BigEndian.Uint64(c.buf))
	}
	if n > len(c.buf) {
		return 0, errors.New("frame too big for the test client")
	}
	if _, err := io.ReadFull(c.br, c.buf[:n]); err != nil {
		return 0, err
	}
	c.last = c.buf[:n]
	return op, nil
}
