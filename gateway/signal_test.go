package gateway

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/crdt"
	"parley/internal/eventually"
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
	eventually.Holds(t, 5*time.Second, "the hub drops the closed connection", func() error {
		if n := len(e.gw.hub.conns()); n != 2 {
			return fmt.Errorf("%d connections in the hub, want 2", n)
		}
		return nil
	})

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

// TestServingListsWhereParticipantsAre: another node's agents make it a
// destination of every conversation of their workspace; another node's
// visitor, of that visitor's own; this node's own connections and other
// workspaces count for nothing.
func TestServingListsWhereParticipantsAre(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.agent(t, "ws1") // this node's own
	exp := time.Now().Add(time.Minute).UnixMilli()
	clock := crdt.NewClock("peer", nil)
	for _, s := range []Signal{
		{Kind: SignalLease, Workspace: "ws1", Participant: "a:kim", Role: "agent", LeaseID: "n2/1", Expires: exp},
		{Kind: SignalLease, Workspace: "ws1", Participant: "v:ada", Role: "visitor", LeaseID: "n3/7", Expires: exp},
		{Kind: SignalLease, Workspace: "ws2", Participant: "a:bo", Role: "agent", LeaseID: "n4/1", Expires: exp},
		{Kind: SignalLease, Workspace: "ws1", Participant: "a:old", Role: "agent", LeaseID: "n5/1", Expires: time.Now().Add(-time.Second).UnixMilli()},
	} {
		s.TS = clock.Now()
		e.gw.ApplySignal(s)
	}
	cases := []struct {
		ws, owner string
		want      string
	}{
		{"ws1", "v:ada", "n2 n3"},
		{"ws1", "v:bea", "n2"},
		{"ws2", "v:ada", "n4"},
		{"ws3", "v:ada", ""},
	}
	for _, tc := range cases {
		if got := strings.Join(e.gw.Serving(tc.ws, tc.owner), " "); got != tc.want {
			t.Errorf("Serving(%s, %s) = %q, want %q", tc.ws, tc.owner, got, tc.want)
		}
	}
}
