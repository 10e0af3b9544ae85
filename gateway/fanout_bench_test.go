package gateway

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"parley/crdt"
	"parley/ident"
	"parley/store"
)

// BenchmarkFanout measures what one message event costs the node per
// recipient once it is decided: the hub's fan-out (publish: encode, queue
// on every agent connection) and each connection's writer, started for it,
// taking it off its queue and writing it to a transport that discards it.
// allocs/op is per event: the difference between the recipient counts,
// over the recipients added, is the allocation per recipient (issue 16:
// "each event encoded once, no allocation per recipient").
//
// recipients=N: a transport that cannot be tried (TLS, WebTransport): a
// goroutine per burst writes it. workers/recipients=N: one that can, as a
// WebSocket on plain TCP: the writer workers write it (writers.go).
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			benchFanout(b, n, false)
		})
	}
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("workers/recipients=%d", n), func(b *testing.B) {
			benchFanout(b, n, true)
		})
	}
}

// discard is a transport whose writes go nowhere; each frame written
// counts down wg, so that the benchmark knows when every recipient wrote
// an event.
type discard struct{ wg *sync.WaitGroup }

func (d *discard) Read(context.Context) ([]byte, error) { select {} }
func (d *discard) WriteFrames(frames []wframe, _ time.Duration) error {
	d.wg.Add(-len(frames))
	return nil
}
func (d *discard) Close(int, string) error { return nil }
func (d *discard) Name() string            { return "ws" }

// discardTried is discard whose bursts the writer workers write.
type discardTried struct{ discard }

func (d *discardTried) canTryWrite() bool { return true }
func (d *discardTried) tryWriteFrames(frames []wframe) (bool, error) {
	d.wg.Add(-len(frames))
	return true, nil
}
func (d *discardTried) flushWrites(time.Duration) error { return nil }

func benchFanout(b *testing.B, n int, tried bool) {
	s := New(Config{Store: nil, Auth: testAuth{}, Clock: crdt.NewClock("b1", nil)})
	var wg sync.WaitGroup
	conns := make([]*conn, n)
	for i := range conns {
		var t transport = &discard{wg: &wg}
		if tried {
			t = &discardTried{discard{wg: &wg}}
		}
		c := &conn{srv: s, t: t, stop: make(chan struct{}),
			id: identity{Workspace: "ws1", Role: ident.Agent, Participant: fmt.Sprintf("a:%d", i)}}
		c.writer = c.writeRun
		s.hub.join(c)
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.fail(nil)
		}
		s.writers.close()
	}()
	clock := crdt.NewClock("b1", nil)
	msg := crdt.NewMessage("m-0000001", "v:x", ident.Visitor, "Ada", "a message of about the size of the load scenarios' one hundred and twenty-eight bytes, typed by a visitor", clock.Now())
	ev := []store.Event{{Kind: store.EventMessage, Workspace: "ws1", Conversation: "c_000000000000000000000001", Message: msg, Start: time.Now()}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev[0].Seq = uint64(i + 1)
		ev[0].Stamp = store.Stamp{Origin: "b1", OSeq: uint64(i + 1)}
		wg.Add(n)
		s.Publish(ev)
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/recipient")
}
