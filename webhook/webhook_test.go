package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/cluster/membership"
	"parley/cluster/schema"
	"parley/crdt"
	"parley/internal/eventually"
	"parley/store"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestSignatureVerifies(t *testing.T) {
	t.Parallel()
	body := []byte(`{"version":1}`)
	old, cur := []byte("whsec_old"), []byte("whsec_new")
	now := time.Unix(1_800_000_000, 0)
	h := Signature(now, body, [][]byte{cur, old})
	for _, s := range [][]byte{cur, old} {
		if err := Verify(h, body, s, now.Add(time.Minute)); err != nil {
			t.Fatalf("secret %s: %v", s, err)
		}
	}
	if err := Verify(h, body, []byte("whsec_other"), now); !errors.Is(err, ErrNoSignature) {
		t.Fatalf("another secret: %v", err)
	}
	if err := Verify(h, []byte(`{"version":2}`), cur, now); !errors.Is(err, ErrNoSignature) {
		t.Fatalf("another body: %v", err)
	}
	if err := Verify(h, body, cur, now.Add(Tolerance+time.Second)); !errors.Is(err, ErrTimestamp) {
		t.Fatalf("late: %v", err)
	}
	if err := Verify(h, body, cur, now.Add(-Tolerance-time.Second)); !errors.Is(err, ErrTimestamp) {
		t.Fatalf("early: %v", err)
	}
	if a, b := EventID("ws", "c1", "n1", 3), EventID("ws", "c1", "n1", 3); a != b || a == EventID("ws", "c1", "n1", 4) || len(a) != 36 {
		t.Fatalf("event ids %s %s", a, b)
	}
}

// The address is checked when the connection is made, after resolution:
// a name that resolves to loopback is refused like the literal address.
func TestDialRefusesPrivateAddresses(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := netSplit(srv.URL)
	for _, u := range []string{srv.URL, "http://localhost:" + port + "/"} {
		_, err := newClient(2*time.Second, false).Post(u, "application/json", nil)
		if !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("%s: %v, want ErrForbiddenAddress", u, err)
		}
	}
	resp, err := newClient(2*time.Second, true).Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatalf("allowed: %v", err)
	}
	resp.Body.Close()
	for _, a := range []string{"10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "127.0.0.1", "::1", "fe80::1", "fc00::1", "100.64.0.1", "0.0.0.0", "::ffff:127.0.0.1"} {
		if !Forbidden(netip.MustParseAddr(a)) {
			t.Errorf("%s is not forbidden", a)
		}
	}
	for _, a := range []string{"93.184.216.34", "2606:2800:220:1::1"} {
		if Forbidden(netip.MustParseAddr(a)) {
			t.Errorf("%s is forbidden", a)
		}
	}
}

func netSplit(u string) (string, string, error) {
	var host, port string
	_, err := fmt.Sscanf(u, "http://%s", &host)
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == ':' {
			return host[:i], host[i+1:], err
		}
	}
	return host, port, err
}

// fakeControl is one workspace's endpoints, in memory.
type fakeControl struct {
	mu   sync.Mutex
	hook schema.Webhook
	// others are more endpoints, without an outbox or dead letters.
	others []schema.Webhook
	dead   []schema.DeadLetter
	outbox []schema.OutboxEntry
}

func (c *fakeControl) WebhookWorkspaces() []string { return []string{"ws1"} }
func (c *fakeControl) HasWebhooks(ws string) bool  { return ws == "ws1" }
func (c *fakeControl) Webhooks(ws string) ([]schema.Webhook, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]schema.Webhook{c.hook}, c.others...), nil
}
func (c *fakeControl) Secrets(ws, id string, now time.Time) ([][]byte, error) {
	return [][]byte{[]byte("whsec_test")}, nil
}
func (c *fakeControl) DeadLetters(ws, id string) ([]schema.DeadLetter, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.dead), nil
}
func (c *fakeControl) Region(string) string { return "" }
func (c *fakeControl) Outbox(ws, id string) ([]schema.OutboxEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.outbox), nil
}
func (c *fakeControl) Assignment(ws, conv string) (string, uint64, error) { return "bob", 9, nil }
func (c *fakeControl) Apply(ctx context.Context, cmd schema.Command) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch x := cmd.(type) {
	case schema.AddDeadLetters:
		c.dead = append(c.dead, x.Letters...)
	case schema.ResolveDeadLetters:
		c.dead = slices.DeleteFunc(c.dead, func(d schema.DeadLetter) bool { return slices.Contains(x.Delivered, d.EventID) })
	case schema.AckWebhookOutbox:
		c.outbox = slices.DeleteFunc(c.outbox, func(e schema.OutboxEntry) bool { return e.Index <= x.Through })
	}
	c.hook.Pending = len(c.outbox)
	return nil
}
func (c *fakeControl) addOutbox(e ...schema.OutboxEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outbox = append(c.outbox, e...)
	c.hook.Pending = len(c.outbox)
}

func (c *fakeControl) redeliverAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.dead {
		c.dead[i].Redeliver = true
	}
}

type oneMember struct{}

func (oneMember) Members() []membership.Member { return []membership.Member{{ID: "n1"}} }

type noPeers struct{}

func (noPeers) Post(context.Context, string, string, []byte) ([]byte, error) { return nil, nil }

// receiver records verified deliveries; while down it answers 503.
type receiver struct {
	mu   sync.Mutex
	down bool
	got  []Payload
	ids  map[string]int
	raw  [][]byte // every body received
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raw = append(r.raw, body)
	if r.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if err := Verify(req.Header.Get(HeaderSignature), body, []byte("whsec_test"), time.Now()); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil || p.ID != req.Header.Get(HeaderEventID) || p.Version != Version {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.ids[p.ID]++
	if r.ids[p.ID] == 1 {
		r.got = append(r.got, p)
	}
}

func (r *receiver) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.got {
		s := p.Type
		if p.Data.Message != nil {
			s += " " + p.Data.Message.ID + " " + p.Data.Message.Body
		}
		if p.Data.Assignment != nil {
			s += fmt.Sprintf(" %s %s %d", p.Conversation, p.Data.Assignment.Operator, p.Data.Assignment.Version)
		}
		if p.Data.Visitor != nil {
			s += " " + p.Data.Visitor.ID
		}
		if p.Data.Status != nil {
			s += fmt.Sprintf(" %s %d %s", p.Data.Status.Status, p.Data.Status.Until, p.Data.Status.By)
		}
		out = append(out, s)
	}
	return out
}

func (r *receiver) setDown(v bool) {
	r.mu.Lock()
	r.down = v
	r.mu.Unlock()
}

// receiving starts a receiver and an endpoint of ws1 at it that wants every
// event, made a minute ago.
func receiving(t *testing.T) (*receiver, *fakeControl) {
	rcv := &receiver{ids: map[string]int{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	return rcv, &fakeControl{hook: schema.Webhook{ID: "wh_1", Workspace: "ws1", URL: srv.URL, Created: time.Now().Add(-time.Minute),
		Events: schema.WebhookEventTypes}}
}

// Events of a conversation arrive signed, in order, once each; while the
// endpoint fails they are retried; past the retry period they are dead
// letters, and redelivered when marked.
func TestDispatcherDeliversInOrderAndDeadLetters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rcv, ctl := receiving(t)
	retryFor := 3 * time.Second
	st, d := openDispatcher(t, ctl, Config{RetryFor: retryFor, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, Rescan: 100 * time.Millisecond})

	now := time.Now().UnixMilli()
	if err := st.CreateConversation(ctx, store.Conversation{Workspace: "ws1", ID: "c1", Owner: "u:42", Created: now}); err != nil {
		t.Fatal(err)
	}
	ts := func(i int64) crdt.Timestamp { return crdt.Timestamp{Wall: now + i, Node: "n1"} }
	apply := func(ch store.Change) {
		t.Helper()
		ch.Workspace, ch.Conversation = "ws1", "c1"
		if _, err := st.Apply(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	apply(store.Change{Kind: store.Send, Participant: "v:a", Message: crdt.NewMessage("m1", "v:a", "visitor", "", "hello", ts(1))})
	apply(store.Change{Kind: store.Send, Participant: "a:s", Message: crdt.NewMessage("m2", "a:s", "agent", "Sam", "hi", ts(2))})
	want := []string{"conversation.created", "visitor.identified u:42", "message.created m1 hello", "message.created m2 hi"}
	eventually.Holds(t, 10*time.Second, "the first events", func() error {
		if got := rcv.types(); !slices.Equal(got, want) {
			return fmt.Errorf("got %q", got)
		}
		return nil
	})
	// Down: retried, then delivered in order when it is back.
	rcv.setDown(true)
	apply(store.Change{Kind: store.Send, Participant: "v:a", Message: crdt.NewMessage("m3", "v:a", "visitor", "", "third", ts(3))})
	apply(store.Change{Kind: store.Delete, Participant: "v:a", Message: crdt.Message{ID: "m1"}, TS: ts(4)})
	eventually.Holds(t, 10*time.Second, "a failed attempt", func() error {
		if testutilCount(d.m.failed) == 0 {
			return errors.New("no failure yet")
		}
		return nil
	})
	rcv.setDown(false)
	want = append(want, "message.created m3 third", "message.deleted m1 ")
	eventually.Holds(t, 10*time.Second, "the events sent while it was down", func() error {
		if got := rcv.types(); !slices.Equal(got, want) {
			return fmt.Errorf("got %q", got)
		}
		return nil
	})
	// The control plane's events, from the outbox, in log order, acked.
	ctl.addOutbox(schema.OutboxEntry{Index: 7, Type: schema.EventConversationAssigned, At: time.Now(), Conversation: "c1", Operator: "ann", Version: 1},
		schema.OutboxEntry{Index: 9, Type: schema.EventVisitorErased, At: time.Now(), Visitor: "v:0123456789abcdef0123456789abcdef"})
	want = append(want, "conversation.assigned c1 ann 1", "visitor.erased v:0123456789abcdef0123456789abcdef")
	eventually.Holds(t, 10*time.Second, "the outbox's events", func() error {
		if got := rcv.types(); !slices.Equal(got, want) {
			return fmt.Errorf("got %q", got)
		}
		if box, _ := ctl.Outbox("ws1", "wh_1"); len(box) != 0 {
			return fmt.Errorf("outbox left %+v", box)
		}
		return nil
	})
	// Down past the retry period: a dead letter, then redelivered.
	rcv.setDown(true)
	apply(store.Change{Kind: store.Send, Participant: "v:a", Message: crdt.NewMessage("m4", "v:a", "visitor", "", "late", ts(5))})
	eventually.Holds(t, retryFor+10*time.Second, "a dead letter", func() error {
		if l, _ := ctl.DeadLetters("ws1", "wh_1"); len(l) != 1 || l[0].Type != "message.created" {
			return fmt.Errorf("dead letters %+v", l)
		}
		return nil
	})
	rcv.setDown(false)
	ctl.redeliverAll()
	want = append(want, "message.created m4 late")
	eventually.Holds(t, 10*time.Second, "the redelivery", func() error {
		if got := rcv.types(); !slices.Equal(got, want) {
			return fmt.Errorf("got %q", got)
		}
		if l, _ := ctl.DeadLetters("ws1", "wh_1"); len(l) != 0 {
			return fmt.Errorf("dead letters left %+v", l)
		}
		return nil
	})
}

func testutilCount(v *prometheus.CounterVec) float64 {
	var m dto.Metric
	if err := v.WithLabelValues("wh_1").Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// openDispatcher runs a dispatcher on a store of its own for ctl's
// workspace ws1 until the test ends.
func openDispatcher(t *testing.T, ctl *fakeControl, cfg Config) (*store.Store, *Dispatcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	var d *Dispatcher
	st, err := store.Open(store.Config{Path: filepath.Join(dir, "parley.db"), Origin: "n1", OnCommit: func(evs []store.Event) {
		if d != nil {
			d.Notify(evs)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutWorkspace(ctx, store.Workspace{ID: "ws1"}); err != nil {
		t.Fatal(err)
	}
	cfg.Self, cfg.Store, cfg.Control, cfg.Members, cfg.Peers, cfg.Path = "n1", st, ctl, oneMember{}, noPeers{}, filepath.Join(dir, "webhooks.db")
	cfg.AllowPrivate = true
	d, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		d.Close()
		st.Close()
	})
	return st, d
}

// An endpoint that never answers holds up its own deliveries only:
// another endpoint gets every event at once.
func TestSlowEndpointDelaysNoOther(t *testing.T) {
	t.Parallel()
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(hang)
	rcv := &receiver{ids: map[string]int{}}
	fast := httptest.NewServer(rcv)
	defer fast.Close()
	created := time.Now().Add(-time.Minute)
	ctl := &fakeControl{
		hook:   schema.Webhook{ID: "wh_1", Workspace: "ws1", URL: slow.URL, Created: created, Events: []string{schema.EventMessageCreated}},
		others: []schema.Webhook{{ID: "wh_2", Workspace: "ws1", URL: fast.URL, Created: created, Events: []string{schema.EventMessageCreated}}},
	}
	st, _ := openDispatcher(t, ctl, Config{Timeout: time.Minute, Concurrency: 1})
	ctx := context.Background()
	now := time.Now().UnixMilli()
	var want []string
	for c := range 5 {
		conv := fmt.Sprintf("c%d", c)
		if err := st.CreateConversation(ctx, store.Conversation{Workspace: "ws1", ID: conv, Owner: "v:a", Created: now}); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			id := fmt.Sprintf("m%d-%d", c, i)
			m := crdt.NewMessage(id, "v:a", "visitor", "", "x", crdt.Timestamp{Wall: now + int64(i), Node: "n1"})
			if _, err := st.Apply(ctx, store.Change{Kind: store.Send, Workspace: "ws1", Conversation: conv, Participant: "v:a", Message: m}); err != nil {
				t.Fatal(err)
			}
			want = append(want, "message.created "+id+" x")
		}
	}
	eventually.Holds(t, 10*time.Second, "every event at the fast endpoint", func() error {
		got := rcv.types()
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("got %d of %d: %q", len(got), len(want), got)
		}
		return nil
	})
}

// members is a view of the live nodes that a test changes.
type members struct {
	mu  sync.Mutex
	ids []string
}

func (m *members) Members() []membership.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []membership.Member
	for _, id := range m.ids {
		out = append(out, membership.Member{ID: id, RaftAddr: id})
	}
	return out
}

func (m *members) set(ids ...string) {
	m.mu.Lock()
	m.ids = ids
	m.mu.Unlock()
}

// peers hands a progress share to the dispatcher of the node addressed.
type peers struct {
	mu sync.Mutex
	to map[string]*Dispatcher
}

func (p *peers) Post(_ context.Context, addr, path string, body []byte) ([]byte, error) {
	p.mu.Lock()
	d := p.to[addr]
	p.mu.Unlock()
	if d == nil || path != PathProgress {
		return nil, fmt.Errorf("no node at %s", addr)
	}
	return nil, d.HandleProgress(body)
}

// When the sender goes, the next replica takes over after the progress
// the sender shared: it sends the new events, none it knows delivered.
func TestTakeoverStartsAfterSharedProgress(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	var ds [2]*Dispatcher
	var dmu sync.Mutex
	st, err := store.Open(store.Config{Path: filepath.Join(dir, "parley.db"), Origin: "n1", OnCommit: func(evs []store.Event) {
		dmu.Lock()
		defer dmu.Unlock()
		for _, d := range ds {
			if d != nil {
				d.Notify(evs)
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutWorkspace(ctx, store.Workspace{ID: "ws1"}); err != nil {
		t.Fatal(err)
	}
	rcv := &receiver{ids: map[string]int{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	ctl := &fakeControl{hook: schema.Webhook{ID: "wh_1", Workspace: "ws1", URL: srv.URL, Created: time.Now().Add(-time.Minute), Events: []string{schema.EventMessageCreated}}}
	mem := &members{}
	// The conversation's first replica by rendezvous is its sender.
	order := membership.Replicas([]membership.Member{{ID: "n1"}, {ID: "n2"}}, "c1", "", 2)
	first, second := order[0].ID, order[1].ID
	mem.set(first, second)
	ps := &peers{to: map[string]*Dispatcher{}}
	var done []chan error
	for i, self := range []string{first, second} {
		d, err := New(Config{Self: self, Store: st, Control: ctl, Members: mem, Peers: ps, Path: filepath.Join(dir, self+".db"),
			AllowPrivate: true, Rescan: 100 * time.Millisecond, ShareEvery: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		dmu.Lock()
		ds[i] = d
		dmu.Unlock()
		ps.mu.Lock()
		ps.to[self] = d
		ps.mu.Unlock()
		c := make(chan error)
		done = append(done, c)
		go func() { c <- d.Run(ctx) }()
	}
	defer func() {
		cancel()
		for i, c := range done {
			<-c
			ds[i].Close()
		}
	}()
	now := time.Now().UnixMilli()
	if err := st.CreateConversation(ctx, store.Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a", Created: now}); err != nil {
		t.Fatal(err)
	}
	send := func(from, to int) {
		for i := from; i < to; i++ {
			m := crdt.NewMessage(fmt.Sprintf("m%d", i), "v:a", "visitor", "", "x", crdt.Timestamp{Wall: now + int64(i), Node: "n1"})
			if _, err := st.Apply(ctx, store.Change{Kind: store.Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: m}); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(0, 5)
	eventually.Holds(t, 10*time.Second, "the first sender's deliveries, shared", func() error {
		if n := len(rcv.types()); n != 5 {
			return fmt.Errorf("%d delivered", n)
		}
		cur, err := ds[1].cur.get(streamKey{"ws1", "c1", "wh_1"})
		if err != nil || cur.Vec["n1"] != 5 {
			return fmt.Errorf("the next replica's cursor %+v, %v", cur, err)
		}
		return nil
	})
	mem.set(second) // the sender is gone
	send(5, 8)
	eventually.Holds(t, 10*time.Second, "the takeover's deliveries", func() error {
		if n := len(rcv.types()); n != 8 {
			return fmt.Errorf("%d delivered", n)
		}
		return nil
	})
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for id, n := range rcv.ids {
		if n != 1 {
			t.Errorf("event %s delivered %d times: the takeover resent what was shared as delivered", id, n)
		}
	}
}

// A status set is a conversation.status_changed; notes, tags and the
// visitor's context are never sent, in no payload (the note's canary text
// is in no body received).
func TestStatusChangedAndNotesNeverSent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rcv, ctl := receiving(t)
	st, _ := openDispatcher(t, ctl, Config{BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, Rescan: 100 * time.Millisecond})
	now := time.Now().UnixMilli()
	if err := st.CreateConversation(ctx, store.Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a", Created: now}); err != nil {
		t.Fatal(err)
	}
	const canary = "CANARY-webhook-note"
	internal := func(id, kind, body string, i int64) store.Change {
		m := crdt.NewMessage(id, "a:s", "agent", "Sam", body, crdt.Timestamp{Wall: now + i, Node: "n1"})
		m.Internal, m.Kind = true, kind
		return store.Change{Kind: store.Send, Workspace: "ws1", Conversation: "c1", Participant: "a:s", Message: m}
	}
	for _, ch := range []store.Change{
		{Kind: store.Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: crdt.NewMessage("m1", "v:a", "visitor", "", "hello", crdt.Timestamp{Wall: now + 1, Node: "n1"})},
		internal("n1", "", canary, 2),
		internal("t1", crdt.KindTag, `{"tag":"`+canary[:7]+`x","on":true}`, 3),
		internal("x1", crdt.KindContext, `{"url":"https://`+canary+`.example/"}`, 4),
		internal("s1", crdt.KindStatus, `{"status":"snoozed","until":99}`, 5),
		{Kind: store.Edit, Workspace: "ws1", Conversation: "c1", Participant: "a:s", Message: crdt.Message{ID: "n1"}, Body: canary + " edited", TS: crdt.Timestamp{Wall: now + 6, Node: "n1"}},
		{Kind: store.Delete, Workspace: "ws1", Conversation: "c1", Participant: "a:s", Message: crdt.Message{ID: "n1"}, TS: crdt.Timestamp{Wall: now + 7, Node: "n1"}},
		{Kind: store.Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: crdt.NewMessage("m2", "v:a", "visitor", "", "bye", crdt.Timestamp{Wall: now + 8, Node: "n1"})},
	} {
		if _, err := st.Apply(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"conversation.created", "message.created m1 hello", "conversation.status_changed snoozed 99 a:s", "message.created m2 bye"}
	eventually.Holds(t, 10*time.Second, "the events", func() error {
		if got := rcv.types(); !slices.Equal(got, want) {
			return fmt.Errorf("got %q", got)
		}
		return nil
	})
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, b := range rcv.raw {
		if strings.Contains(string(b), canary[:7]) {
			t.Fatalf("a payload carries internal text: %s", b)
		}
	}
}

// TestNotifySkipsWorkspacesWithoutEndpoints: the events of a workspace
// with no endpoint mark nothing and wake nothing (Notify runs on the
// store's commit path for every message); those of one with an endpoint
// do.
func TestNotifySkipsWorkspacesWithoutEndpoints(t *testing.T) {
	d, err := New(Config{Self: "n1", Control: &fakeControl{}, Members: oneMember{}, Path: filepath.Join(t.TempDir(), "n1.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	msg := func(ws string) []store.Event {
		return []store.Event{{Kind: store.EventMessage, Workspace: ws, Conversation: "c1", Seq: 1}}
	}
	d.Notify(msg("ws2"))
	if len(d.dirty) != 0 || len(d.wake) != 0 {
		t.Fatalf("a workspace without an endpoint: dirty %v, woken %d", d.dirty, len(d.wake))
	}
	d.Notify(msg("ws1"))
	if d.dirty[convKey{"ws1", "c1"}] != 1 || len(d.wake) != 1 {
		t.Fatalf("a workspace with an endpoint: dirty %v, woken %d", d.dirty, len(d.wake))
	}
}
