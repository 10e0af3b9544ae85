package membership

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"parley/internal/eventually"
)

func start(t *testing.T, id, region string, key []byte, events chan<- Event) *Membership {
	t.Helper()
	m, err := Start(Config{NodeID: id, Region: region, Zone: region + "-a", HTTPAddr: "127.0.0.1:1" + id[1:], Key: key,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnEvent: func(e Event) {
			if events != nil {
				events <- e
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.list.Shutdown() })
	return m
}

func waitMembers(t *testing.T, m *Membership, n int) {
	t.Helper()
	// Generous: under the race detector on a loaded machine, probes time
	// out and a node may be suspected, then refute, before all settle.
	eventually.Holds(t, 40*time.Second, fmt.Sprintf("%s sees %d members", m.cfg.NodeID, n), func() error {
		if got := len(m.Members()); got != n {
			return fmt.Errorf("%d members", got)
		}
		if got := m.Others(); got != n-1 {
			return fmt.Errorf("%d members, Others %d", n, got)
		}
		return nil
	})
}

func TestMembershipJoinLeaveFail(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	regions := []string{"eu", "eu", "us", "us", "ap"}
	var ms []*Membership
	watch := make(chan Event, 256)
	for i, r := range regions {
		var ev chan<- Event
		if i == 0 {
			ev = watch
		}
		m := start(t, fmt.Sprintf("n%d", i+1), r, key, ev)
		if i > 0 {
			if _, err := m.Join([]string{ms[0].Addr()}); err != nil {
				t.Fatal(err)
			}
		}
		if i == 0 {
			waitMembers(t, m, 1) // alone: no other
		}
		ms = append(ms, m)
	}
	for _, m := range ms {
		waitMembers(t, m, len(ms))
	}
	// Metadata travels: every node knows every other's region and address.
	for _, mb := range ms[4].Members() {
		want := regions[mb.ID[1]-'1']
		if mb.Region != want || mb.Zone != want+"-a" || mb.HTTPAddr == "" || mb.GossipAddr == "" {
			t.Errorf("n5 sees %+v", mb)
		}
	}
	// A graceful leave is Left; a node that stops answering is Failed.
	if err := ms[1].Close(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	ms[2].list.Shutdown() // no leave message: as if the process died
	got := map[string]EventKind{}
	var failedAfter time.Duration
	for deadline := time.After(20 * time.Second); len(got) < 2; {
		select {
		case e := <-watch:
			if e.Kind == Left || e.Kind == Failed {
				got[e.Member.ID] = e.Kind
				if e.Kind == Failed {
					failedAfter = e.At.Sub(killed)
				}
			}
		case <-deadline:
			t.Fatalf("events %v after 20s", got)
		}
	}
	if got["n2"] != Left || got["n3"] != Failed {
		t.Fatalf("events %v, want n2 left, n3 failed", got)
	}
	for _, m := range []*Membership{ms[0], ms[3], ms[4]} {
		waitMembers(t, m, 3)
		if m.Alive("n3") || !m.Alive("n4") {
			t.Errorf("%s: n3 alive %v, n4 alive %v", m.cfg.NodeID, m.Alive("n3"), m.Alive("n4"))
		}
	}
	if ms[0].Failures() != 1 {
		t.Errorf("failures %d, want 1", ms[0].Failures())
	}
	t.Logf("a dead member was declared failed after %s", failedAfter.Round(time.Millisecond))
}

func TestMembershipRefusesAnotherKey(t *testing.T) {
	t.Parallel()
	a := start(t, "n1", "eu", []byte("0123456789abcdef0123456789abcdef"), nil)
	b := start(t, "n2", "eu", []byte("another key, 32 bytes long......"), nil)
	if _, err := b.Join([]string{a.Addr()}); err == nil {
		// The TCP push/pull of a join fails to decrypt; even if memberlist
		// counted the contact, no member may appear.
		time.Sleep(500 * time.Millisecond)
	}
	if len(a.Members()) != 1 || len(b.Members()) != 1 {
		t.Fatalf("nodes with different keys see %d and %d members", len(a.Members()), len(b.Members()))
	}
}

func TestEventsComeInOrderPerMember(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []EventKind
	m := start(t, "n1", "eu", nil, nil)
	m.cfg.OnEvent = func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		if e.Member.ID == "n2" {
			seen = append(seen, e.Kind)
		}
	}
	other := start(t, "n2", "eu", nil, nil)
	if _, err := other.Join([]string{m.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, m, 2)
	other.Close()
	waitMembers(t, m, 1)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 2 || seen[0] != Joined || seen[len(seen)-1] != Left {
		t.Fatalf("events of n2: %v", seen)
	}
}

// TestAdvertiseByName: an advertise address given as a host name (as
// deploy/parley.yaml does, eu-1.parley.internal) is resolved at start;
// memberlist alone refuses anything but an IP address.
func TestAdvertiseByName(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	m, err := Start(Config{NodeID: "n1", HTTPAddr: "127.0.0.1:1", BindAddr: "0.0.0.0:" + port, AdvertiseAddr: "localhost:" + port,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.list.Shutdown() })
	if got := m.Addr(); got != "127.0.0.1:"+port {
		t.Errorf("advertised %s, want 127.0.0.1:%s", got, port)
	}
}

// Each member advertises its protocol version; one that advertises none
// (a node of the first release) runs version 1.
func TestMembersAdvertiseTheirProtocolVersion(t *testing.T) {
	t.Parallel()
	old := start(t, "n1", "eu", nil, nil)
	m, err := Start(Config{NodeID: "n2", Region: "eu", HTTPAddr: "127.0.0.1:12", Proto: 3,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.list.Shutdown() })
	if _, err := m.Join([]string{old.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, old, 2)
	waitMembers(t, m, 2)
	for _, view := range []*Membership{old, m} {
		got := map[string]int{}
		for _, mb := range view.Members() {
			got[mb.ID] = mb.Version()
		}
		if got["n1"] != 1 || got["n2"] != 3 {
			t.Fatalf("%s sees versions %v, want n1 1 and n2 3", view.cfg.NodeID, got)
		}
	}
}
