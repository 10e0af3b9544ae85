package membership

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// BenchmarkFailureDetection measures how long gossip takes to declare a
// member dead: 5 members on loopback, one stops answering (shut down
// without leaving, as a killed process), and the time until a survivor
// sees it Failed is recorded. Default timings (500ms probes).
func BenchmarkFailureDetection(b *testing.B) {
	var took []time.Duration
	for i := 0; i < b.N; i++ {
		failed := make(chan time.Time, 8)
		var ms []*Membership
		for j := range 5 {
			id := fmt.Sprintf("n%d", j+1)
			cfg := Config{NodeID: id, HTTPAddr: "127.0.0.1:1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if j == 0 {
				cfg.OnEvent = func(e Event) {
					if e.Kind == Failed {
						failed <- e.At
					}
				}
			}
			m, err := Start(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if j > 0 {
				if _, err := m.Join([]string{ms[0].Addr()}); err != nil {
					b.Fatal(err)
				}
			}
			ms = append(ms, m)
		}
		for len(ms[0].Members()) != 5 {
			time.Sleep(10 * time.Millisecond)
		}
		killed := time.Now()
		ms[4].list.Shutdown()
		select {
		case at := <-failed:
			took = append(took, at.Sub(killed))
		case <-time.After(30 * time.Second):
			b.Fatal("no failure detected in 30s")
		}
		for _, m := range ms[:4] {
			m.list.Shutdown()
		}
	}
	slices.Sort(took)
	b.ReportMetric(took[len(took)/2].Seconds(), "p50-s")
	b.ReportMetric(took[len(took)-1].Seconds(), "max-s")
}
