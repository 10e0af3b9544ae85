package node

import (
	"testing"
	"time"
)

// BenchmarkDeliveredMetric is what the node's metrics cost per frame
// delivered to one recipient (gateway.Metrics.Delivered, called by every
// connection's writer for every message it writes).
func BenchmarkDeliveredMetric(b *testing.B) {
	m := newMetrics()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.Delivered("ws", time.Millisecond)
	}
}
