package gateway

import (
	"sync"
	"testing"
	"time"
)

// TestResyncRenewsEveryLiveLease: for a node that comes back, Resync gives
// one lease per open connection, each renewed (a later timestamp than any
// this node sent before, so it beats the other node's end of it), and the
// agents' open views; closed connections give nothing.
func TestResyncRenewsEveryLiveLease(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	last := map[string]Signal{} // lease ID -> the last signal emitted for it
	e := newEnv(t, func(c *Config) {
		c.OnSignal = func(s Signal) {
			mu.Lock()
			defer mu.Unlock()
			if s.Kind == SignalLease {
				last[s.LeaseID] = s
			}
		}
	})
	sam := e.agent(t, "ws1")
	v, welcome := e.visitor(t, "ws1", nil)
	conv := v.start()
	sam.send(map[string]any{"type": "view", "ref": "vw", "conversation": conv, "viewing": true})
	sam.expect("ack", refIs("vw"))
	gone, _ := e.visitor(t, "ws2", nil)
	gone.c.CloseNow()
	for deadline := time.Now().Add(5 * time.Second); len(e.gw.hub.conns()) != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections in the hub, want 2", len(e.gw.hub.conns()))
		}
	}

	var got []Signal
	if n := e.gw.Resync(func(s Signal) { got = append(got, s) }); n != 2 {
		t.Fatalf("Resync renewed %d leases, want 2 (the closed connection's is over)", n)
	}
	leases, views := map[string]Signal{}, 0
	for _, s := range got {
		switch s.Kind {
		case SignalLease:
			leases[s.Participant] = s
			mu.Lock()
			before := last[s.LeaseID]
			mu.Unlock()
			if s.TS.Compare(before.TS) <= 0 || s.Expires == 0 {
				t.Errorf("lease of %s not renewed: %+v, last sent %+v", s.Participant, s, before)
			}
		case SignalView:
			views++
			if s.Conversation != conv || s.Participant != "a:sam" {
				t.Errorf("view %+v", s)
			}
		}
	}
	if _, ok := leases["v:"+welcome["visitor_id"].(string)]; !ok || leases["a:sam"].LeaseID == "" || views != 1 {
		t.Errorf("Resync sent leases %v and %d views", leases, views)
	}
}
