package replication

import (
	"context"
	"slices"
	"testing"
	"time"
)

// stampConn records when each message reaches the wire.
type stampConn struct{ at chan time.Time }

func (c *stampConn) Read(ctx context.Context) ([]byte, error) { <-ctx.Done(); return nil, ctx.Err() }
func (c *stampConn) Write(_ context.Context, _ []byte) error  { c.at <- time.Now(); return nil }
func (c *stampConn) Close() error                             { return nil }

// BenchmarkDelayedLateness measures how late the delaying wrapper of the
// 40 ms benchmarks lets messages leave beyond their delay, at 1,000 a
// second: its own share of a cross-node tail. The baseline, in the same
// run, is one runtime timer per message (time.AfterFunc): how late this
// machine wakes anything up.
//
//	go test -run '^$' -bench DelayedLateness -benchtime 2000x -count 3 ./cluster/replication/
func BenchmarkDelayedLateness(b *testing.B) {
	const d = 40 * time.Millisecond
	b.Run("wrapper", func(b *testing.B) {
		rec := &stampConn{at: make(chan time.Time, b.N)}
		c := Delayed(rec, d)
		defer c.Close()
		lateness(b, d, rec, c)
	})
	b.Run("timer", func(b *testing.B) {
		rec := &stampConn{at: make(chan time.Time, b.N)}
		lateness(b, d, rec, timerConn{rec, d})
	})
}

// timerConn writes each message after d on a timer of its own.
type timerConn struct {
	c *stampConn
	d time.Duration
}

func (t timerConn) Read(ctx context.Context) ([]byte, error) { return t.c.Read(ctx) }
func (t timerConn) Write(ctx context.Context, b []byte) error {
	time.AfterFunc(t.d, func() { t.c.Write(ctx, b) })
	return nil
}
func (t timerConn) Close() error { return nil }

func lateness(b *testing.B, d time.Duration, rec *stampConn, c Conn) {
	sent := make([]time.Time, b.N)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := range b.N {
		<-tick.C
		sent[i] = time.Now()
		if err := c.Write(context.Background(), []byte{byte(i)}); err != nil {
			b.Fatal(err)
		}
	}
	late := make([]time.Duration, b.N)
	for i := range b.N {
		late[i] = (<-rec.at).Sub(sent[i]) - d
	}
	slices.Sort(late)
	ms := func(p float64) float64 { return float64(late[int(p*float64(len(late)-1))].Microseconds()) / 1000 }
	b.ReportMetric(ms(0.5), "late-p50-ms")
	b.ReportMetric(ms(0.99), "late-p99-ms")
	b.ReportMetric(ms(1), "late-max-ms")
}
