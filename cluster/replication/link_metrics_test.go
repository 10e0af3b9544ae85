package replication

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"parley/internal/eventually"

	"github.com/prometheus/client_golang/prometheus"
)

// linkGauges reads one peer's backlog and lag from a registry.
func linkGauges(t *testing.T, reg *prometheus.Registry, peer string) (backlog, lag float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != peer {
				continue
			}
			switch mf.GetName() {
			case "parley_replication_backlog_frames":
				backlog = m.GetGauge().GetValue()
				found++
			case "parley_replication_lag_seconds":
				lag = m.GetGauge().GetValue()
				found++
			}
		}
	}
	return backlog, lag, found == 2
}

// TestLinkBacklogAndLag: frames a peer has not acknowledged are the link's
// backlog, and the oldest one's wait its lag; both fall to zero once the
// peer stores them, and frames a down link fails leave no backlog behind.
func TestLinkBacklogAndLag(t *testing.T) {
	t.Parallel()
	p := newPeer(t, "n2")
	r := sender(t, map[string]*peer{"n2": p})
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.Collector())

	hold := make(chan struct{})
	p.hold.Store(&hold)
	start := time.Now()
	var dones []<-chan error
	for i := 1; i <= 5; i++ {
		done, ok := r.Enqueue(nil, "n2", []Event{ev(i)})
		if !ok {
			t.Fatal("queue full")
		}
		dones = append(dones, done)
	}
	eventually.Holds(t, 10*time.Second, "the backlog counts the unacknowledged frames", func() error {
		backlog, lag, ok := linkGauges(t, reg, "n2")
		if !ok || backlog != 5 {
			return fmt.Errorf("backlog %v (reported: %v)", backlog, ok)
		}
		if lag <= 0 || lag > time.Since(start).Seconds() {
			return fmt.Errorf("lag %v, since the first frame %v", lag, time.Since(start).Seconds())
		}
		return nil
	})
	p.hold.Store(nil)
	close(hold)
	for _, d := range dones {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	eventually.Holds(t, 10*time.Second, "acknowledged frames leave the backlog", func() error {
		if backlog, lag, _ := linkGauges(t, reg, "n2"); backlog != 0 || lag != 0 {
			return fmt.Errorf("backlog %v, lag %v", backlog, lag)
		}
		return nil
	})

	// A peer that cannot be dialled: its frames fail and leave the backlog;
	// so do pushes and signals written to a reachable one.
	done, ok := r.Enqueue(nil, "n9", []Event{ev(1)})
	if !ok {
		t.Fatal("queue full")
	}
	if err := <-done; !errors.Is(err, ErrLinkDown) {
		t.Fatalf("send to an unknown peer: %v", err)
	}
	r.Push("n2", []Event{ev(6)})
	r.Signal("n2", []byte("typing"))
	eventually.Holds(t, 10*time.Second, "failed and written frames leave the backlog", func() error {
		for _, peer := range []string{"n9", "n2"} {
			if backlog, lag, ok := linkGauges(t, reg, peer); !ok || backlog != 0 || lag != 0 {
				return fmt.Errorf("%s: backlog %v, lag %v (reported: %v)", peer, backlog, lag, ok)
			}
		}
		if n := len(p.events()); n != 6 {
			return fmt.Errorf("the peer stored %d of 6 events", n)
		}
		return nil
	})
}
