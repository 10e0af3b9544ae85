package gateway

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWritesInOrderPastAFullSocket: frames queued faster than the client
// reads them, so that a writer worker's writev finds the socket full in
// the middle of a burst and hands the rest to a goroutine of the
// connection while more frames are queued, and later turns of the workers
// write again once it drained, reach the client whole, once each and in
// the order they were queued.
func TestWritesInOrderPastAFullSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.SendQueueBytes = 1 << 30 })
	cl, c := rawAgent(t, e, e.url)
	const n = 6000
	prefix := []byte(`{"type":"typing","n":`)
	frame := func(i int) []byte {
		return []byte(fmt.Sprintf(`%s%d,"pad":"%s"}`, prefix, i, strings.Repeat("x", i*7919%12000)))
	}
	read := make(chan error, 1)
	start := make(chan struct{})
	go func() {
		<-start
		cl.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		for want := 0; want < n; {
			op, err := cl.next()
			if err != nil {
				read <- fmt.Errorf("after %d frames: %w", want, err)
				return
			}
			b := cl.buf[:cl.n]
			if op != wsOpText || !bytes.HasPrefix(b, prefix) {
				continue
			}
			end := bytes.IndexByte(b[len(prefix):], ',')
			got, err := strconv.Atoi(string(b[len(prefix) : len(prefix)+max(end, 0)]))
			if err != nil || got != want || !bytes.Equal(b, frame(got)) {
				read <- fmt.Errorf("frame %d: got %.60q (%d bytes)", want, b, len(b))
				return
			}
			want++
		}
		read <- nil
	}()
	for i := range n {
		if i == n/2 {
			// The socket is full by now: the client starts reading while
			// the rest is queued.
			if e.gw.writers.handoffs.Load() == 0 {
				t.Fatalf("%d frames queued for a client that reads nothing, and no burst found the socket full", i)
			}
			close(start)
		}
		c.send(&outItem{kind: outFrame, data: frame(i)})
		if i%16 == 0 {
			runtime.Gosched()
		}
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
}
