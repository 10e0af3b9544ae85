package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"parley/internal/eventually"
)

// agentOn signs in an operator of a workspace through a node and opens an
// agent connection on another (or the same) node.
func (tc *testCluster) agentOn(t testing.TB, ctx context.Context, via, on *nodeProc, ws, id string) *wsClient {
	t.Helper()
	return agentConn(t, ctx, on, ws, tc.login(t, via, on, ws, id))
}

// agentConn opens an agent connection with a session token on a node.
func agentConn(t testing.TB, ctx context.Context, nd *nodeProc, ws, token string) *wsClient {
	t.Helper()
	cl, err := dialNode(ctx, nd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.close)
	cl.send(ctx, map[string]any{"type": "hello", "v": 1, "workspace": ws, "role": "agent", "token": token})
	if _, err := cl.await(ctx, "welcome", nil); err != nil {
		t.Fatalf("agent hello on %s: %v", nd.Addr, err)
	}
	return cl
}

// login invites an operator of a workspace through a node and signs them
// in on another (or the same); it returns the session token.
func (tc *testCluster) login(t testing.TB, via, on *nodeProc, ws, id string) string {
	t.Helper()
	var inv struct{ Index uint64 }
	mustAPI(t, via, "POST", "/v1/admin/workspaces/"+ws+"/operators", tc.root,
		map[string]any{"id": id, "email": id + "@" + ws + ".test", "name": strings.ToUpper(id[:1]) + id[1:], "password": "a good long password"}, &inv)
	var login struct{ Token string }
	mustAPI(t, on, "POST", fmt.Sprintf("/v1/login?min_index=%d", inv.Index), "", map[string]any{"workspace": ws, "email": id + "@" + ws + ".test", "password": "a good long password"}, &login)
	return login.Token
}

// startVisitor connects a new anonymous visitor of ws to a node and starts a
// conversation; it returns the client, its welcome and the conversation.
func startVisitor(t testing.TB, ctx context.Context, nd *nodeProc, ws string) (*wsClient, map[string]any, string) {
	t.Helper()
	v, err := dialNode(ctx, nd)
	if err != nil {
		t.Fatal(err)
	}
	welcome, err := v.visitorHelloIn(ctx, ws)
	if err != nil {
		v.close()
		t.Fatal(err)
	}
	v.send(ctx, map[string]any{"type": "start", "ref": "s"})
	st, err := v.await(ctx, "started", nil)
	if err != nil {
		v.close()
		t.Fatal(err)
	}
	return v, welcome, st["conversation"].(string)
}

func say(t *testing.T, ctx context.Context, cl *wsClient, conv, id, body string) {
	t.Helper()
	ref := "r-" + id
	cl.send(ctx, map[string]any{"type": "send", "ref": ref, "conversation": conv, "id": id, "body": body})
	m, err := cl.awaitRef(ctx, ref)
	if err != nil || m["type"] != "ack" {
		t.Fatalf("send %s: %v %v", id, m, err)
	}
}

// TestCrossNodeChat: a visitor on one node and an agent on another chat
// live: each message reaches the other node in one hop and is delivered
// there, and the third replica holds the conversation too.
func TestCrossNodeChat(t *testing.T) {
	tc := startCluster(t, 3)
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 60*time.Second)
	agent := tc.agentOn(t, ctx, n1, n2, "acme", "sam")

	visitor, _, conv := startVisitor(t, ctx, n1, "acme")
	defer visitor.close()

	for i := range 20 {
		id := fmt.Sprintf("m-v-%06d", i)
		sent := time.Now()
		say(t, ctx, visitor, conv, id, "from the visitor on n1")
		d, err := agent.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == id })
		if err != nil {
			t.Fatalf("agent on n2 never got %s: %v\nn1:\n%s\nn2:\n%s", id, err, grepLog(n1.Logs(), "repl"), grepLog(n2.Logs(), "repl"))
		}
		if d["conversation"] != conv {
			t.Fatalf("deliver %v", d)
		}
		if i == 0 {
			t.Logf("first cross-node delivery within %s of the send", time.Since(sent).Round(time.Microsecond))
		}
	}
	agent.send(ctx, map[string]any{"type": "send", "ref": "reply", "conversation": conv, "id": "m-a-000001", "body": "from the agent on n2"})
	onN2, err := agent.awaitRef(ctx, "reply")
	if err != nil || onN2["type"] != "ack" {
		t.Fatalf("reply: %v %v", onN2, err)
	}
	onN1, err := visitor.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "m-a-000001" })
	if err != nil {
		t.Fatalf("visitor on n1 never got the agent's reply: %v", err)
	}
	// The agent marks everything read on n2, in n2's seqs; the visitor on
	// n1 gets the receipt in n1's.
	agent.send(ctx, map[string]any{"type": "read", "ref": "rd", "conversation": conv, "seq": onN2["seq"]})
	if rd, err := visitor.await(ctx, "read", func(m map[string]any) bool { return m["role"] == "agent" }); err != nil || rd["seq"] != onN1["seq"] {
		t.Fatalf("receipt on n1: %v %v (the reply is seq %v there)", rd, err, onN1["seq"])
	}
	// The third replica has every message, once.
	watcher := tc.agentOn(t, ctx, n1, n3, "acme", "kim")
	var hist []map[string]any
	eventually.Poll(10*time.Second, func() error { // the count below says what is missing
		var err error
		if hist, err = watcher.history(ctx, conv); err == nil && len(hist) < 21 {
			err = fmt.Errorf("%d of 21 messages", len(hist))
		}
		return err
	})
	seen := map[string]int{}
	for _, d := range hist {
		seen[msgID(d)]++
	}
	if len(seen) != 21 {
		t.Fatalf("n3 holds %d messages, want 21: %v", len(seen), seen)
	}
}

// TestPinnedWorkspaceStaysInItsRegion: a workspace pinned to eu, served by
// two eu nodes. A visitor lands on a us node and an agent on an ap node:
// both are relayed to an eu node and chat as if they were there. The
// visitor's eu node is killed; the visitor reconnects to the same us node,
// is relayed to the other eu node, and finds every acknowledged message
// there once. No file of the us and ap nodes, and no line of their logs,
// holds a byte of the conversation.
func TestPinnedWorkspaceStaysInItsRegion(t *testing.T) {
	tc := startCluster(t, 4) // regions eu, us, ap, eu
	n1, us, ap := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	var created struct{ Index uint64 }
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "euonly", "name": "EU only", "region": "eu", "plan": "team"}, &created)
	for _, nd := range tc.nodes {
		mustAPI(t, nd, "GET", fmt.Sprintf("/v1/admin/workspaces/euonly?min_index=%d", created.Index), tc.root, nil, nil)
	}
	ctx := testCtx(t, 90*time.Second)
	byID := map[string]*nodeProc{"n1": tc.nodes[0], "n4": tc.nodes[3]}
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range tc.nodes {
				t.Logf("%s:\n%s", nd.Addr, grepLog(nd.Logs(), "refused"))
			}
		}
	})

	v, welcome, conv := startVisitor(t, ctx, us, "euonly")
	defer v.close()
	upstream := byID[welcome["node"].(string)]
	if upstream == nil {
		t.Fatalf("visitor on the us node served by %v, want an eu node", welcome["node"])
	}
	agent := tc.agentOn(t, ctx, n1, ap, "euonly", "ana")
	acked := map[string]bool{}
	for i := range 5 {
		id := fmt.Sprintf("m-eu-%06d", i)
		say(t, ctx, v, conv, id, "resident data "+id)
		acked[id] = true
		if _, err := agent.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == id }); err != nil {
			t.Fatalf("agent relayed from ap never got %s: %v", id, err)
		}
	}
	agent.send(ctx, map[string]any{"type": "send", "ref": "reply", "conversation": conv, "id": "m-ag-000001", "body": "resident reply"})
	if m, err := agent.awaitRef(ctx, "reply"); err != nil || m["type"] != "ack" {
		t.Fatalf("agent reply through the relay: %v %v", m, err)
	}
	acked["m-ag-000001"] = true
	if _, err := v.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "m-ag-000001" }); err != nil {
		t.Fatalf("visitor relayed from us never got the reply: %v", err)
	}
	// The agents' API of the ap node answers from the eu nodes: a saved
	// reply made through it is kept in eu, and read back through it.
	var login struct{ Token string }
	mustAPI(t, ap, "POST", "/v1/login", "", map[string]any{"workspace": "euonly", "email": "ana@euonly.test", "password": "a good long password"}, &login)
	mustAPI(t, ap, "POST", "/v1/workspaces/euonly/replies", login.Token, map[string]any{"title": "resident title", "body": "resident saved reply"}, nil)
	var replies struct{ Items []struct{ Title string } }
	mustAPI(t, ap, "GET", "/v1/workspaces/euonly/replies", login.Token, nil, &replies)
	if len(replies.Items) != 1 || replies.Items[0].Title != "resident title" {
		t.Errorf("saved replies through the ap node: %+v", replies)
	}
	if n := metric(t, us, `parley_relays_total{outcome="opened"}`); n < 1 {
		t.Errorf("us node counted %v relays", n)
	}

	// The visitor's eu node dies: its relayed connection ends with a
	// request to reconnect, and the same us node relays it to the other.
	upstream.Kill9(t)
	if m, err := v.await(ctx, "error", nil); err != nil || m["code"] != "unavailable" {
		t.Fatalf("visitor connection after its eu node died: %v %v", m, err)
	}
	if _, err := v.await(ctx, "never", nil); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("visitor connection after its eu node died: %v", err)
	}
	v2, err := dialNode(ctx, us)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.close()
	w2, err := v2.visitorHello(ctx, map[string]any{"workspace": "euonly", "visitor_id": welcome["visitor_id"], "visitor_sig": welcome["visitor_sig"]})
	if err != nil {
		t.Fatalf("reconnect through the relay: %v", err)
	}
	if w2["node"] == welcome["node"] || byID[w2["node"].(string)] == nil {
		t.Fatalf("reconnected to %v, want the other eu node", w2["node"])
	}
	// Until gossip declares the dead node gone, a send waits for it as the
	// second replica and is answered unavailable: resend with the same id.
	for try := 0; ; try++ {
		v2.send(ctx, map[string]any{"type": "send", "ref": "after", "conversation": conv, "id": "m-eu-after", "body": "resident data after the failover"})
		m, err := v2.awaitRef(ctx, "after")
		if err == nil && m["type"] == "ack" {
			break
		}
		if err != nil || m["code"] != "unavailable" || try == 20 {
			t.Fatalf("send after the failover: %v %v", m, err)
		}
		if strings.Contains(fmt.Sprint(m["message"]), "127.0.0.1") {
			t.Errorf("the client is told internal addresses: %v", m["message"])
		}
		time.Sleep(300 * time.Millisecond)
	}
	acked["m-eu-after"] = true
	hist, err := v2.history(ctx, conv)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, d := range hist {
		seen[msgID(d)]++
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("after the failover the visitor sees %s %d times", id, seen[id])
		}
	}
	if len(seen) != len(acked) {
		t.Errorf("visitor sees %d messages, %d acknowledged: %v", len(seen), len(acked), seen)
	}

	time.Sleep(time.Second) // time for any stray replication to land
	for _, nd := range []*nodeProc{us, ap} {
		filepath.WalkDir(nd.DataDir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Base(p) == "raft.db" || strings.Contains(p, "snapshots") {
				// The control plane's log names every workspace, by design.
				return err
			}
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("euonly")) || bytes.Contains(b, []byte("resident")) {
				t.Errorf("%s holds data of the eu workspace", p)
			}
			return nil
		})
		if strings.Contains(nd.Logs(), "resident") || strings.Contains(nd.Logs(), conv) {
			t.Errorf("the log of %s mentions the eu conversation", nd.Addr)
		}
	}
}

func grepLog(log, word string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(strings.ToLower(l), word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReplicaKilledAndBack writes through one node while the other replica
// is killed with SIGKILL and restarted: while it is down but not yet
// declared dead, a message is not confirmed (the client resends it, with
// the same id); once gossip declares it dead the node acknowledges alone;
// when it is back, the first new message finds it missing the rest, which
// it is sent; in the end both nodes hold every acknowledged message once.
func TestReplicaKilledAndBack(t *testing.T) {
	tc := startCluster(t, 2)
	n1, n2 := tc.nodes[0], tc.nodes[1]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 120*time.Second)
	w := newVisitorWriter(t, ctx, "acme", "msg")
	w.write(n1, "m-a", 10)
	n2.Kill9(t)
	w.write(n1, "m-b", 20) // the first ones wait for n2 to be declared dead
	n2.Restart(t)
	tc.waitAlive(t, n1, 2, 30*time.Second)
	w.write(n1, "m-c", 10)
	if w.unavailable == 0 {
		t.Error("no message went unconfirmed while the replica was down and not yet declared dead")
	}
	conv, acked := w.conv, w.acked
	// Both nodes hold every acknowledged message, once.
	for i, nd := range tc.nodes {
		ag := tc.agentOn(t, ctx, n1, nd, "acme", fmt.Sprintf("agent%d", i+1))
		hist, err := ag.history(ctx, conv)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, d := range hist {
			seen[msgID(d)]++
		}
		for id := range acked {
			if seen[id] != 1 {
				t.Errorf("%s holds %s %d times", nd.Addr, id, seen[id])
			}
		}
		if len(seen) != len(acked) {
			t.Errorf("%s holds %d messages, %d acknowledged", nd.Addr, len(seen), len(acked))
		}
	}
	t.Logf("%d messages acknowledged; %d sends answered unavailable while the replica was down", len(acked), w.unavailable)
}

// TestResumeOnAnotherNode: an agent reads part of a conversation on one
// node, goes away, and resumes on another with the vector of what it had:
// it gets exactly the messages it missed, each once, then live ones.
func TestResumeOnAnotherNode(t *testing.T) {
	tc := startCluster(t, 3)
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 60*time.Second)
	v, _, conv := startVisitor(t, ctx, n1, "acme")
	defer v.close()

	agent := tc.agentOn(t, ctx, n1, n2, "acme", "sam")
	vec := map[string]int{}
	for i := range 5 {
		id := fmt.Sprintf("m-1-%06d", i)
		say(t, ctx, v, conv, id, "before")
		d, err := agent.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == id })
		if err != nil {
			t.Fatal(err)
		}
		origin, oseq, _ := strings.Cut(d["at"].(string), ".")
		var n int
		fmt.Sscan(oseq, &n)
		vec[origin] = max(vec[origin], n)
	}
	agent.close()
	for i := range 3 {
		say(t, ctx, v, conv, fmt.Sprintf("m-2-%06d", i), "while the agent was away")
	}
	var since []string
	for o, n := range vec {
		since = append(since, fmt.Sprintf("%s.%d", o, n))
	}
	back := tc.agentOn(t, ctx, n1, n3, "acme", "sam2")
	back.send(ctx, map[string]any{"type": "resume", "ref": "r", "conversation": conv, "since": strings.Join(since, ",")})
	var got []string
	for {
		m, err := back.await(ctx, "", func(m map[string]any) bool { return m["type"] == "deliver" || m["ref"] == "r" })
		if err != nil {
			t.Fatal(err)
		}
		if m["type"] != "deliver" {
			break
		}
		got = append(got, msgID(m))
	}
	if strings.Join(got, " ") != "m-2-000000 m-2-000001 m-2-000002" {
		t.Fatalf("resumed on n3 with %v: got %v", since, got)
	}
	say(t, ctx, v, conv, "m-3-000000", "live again")
	if _, err := back.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "m-3-000000" }); err != nil {
		t.Fatal(err)
	}
}

// TestAntiEntropyRepairsAReturningReplica: messages written while a replica
// was dead reach it after it restarts with no further traffic, by
// anti-entropy alone, each once.
func TestAntiEntropyRepairsAReturningReplica(t *testing.T) {
	tc := startCluster(t, 2)
	n1, n2 := tc.nodes[0], tc.nodes[1]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 120*time.Second)
	v, _, conv := startVisitor(t, ctx, n1, "acme")
	defer v.close()
	say(t, ctx, v, conv, "m-before-0001", "before")
	n2.Kill9(t)
	tc.waitAlive(t, n1, 1, 30*time.Second) // n2 declared dead: acks need only n1
	for i := range 10 {
		say(t, ctx, v, conv, fmt.Sprintf("m-down-%06d", i), "while n2 was down")
	}
	n2.Restart(t)
	ag := tc.agentOn(t, ctx, n1, n2, "acme", "sam")
	var seen map[string]int
	start := time.Now()
	eventually.Holds(t, 30*time.Second, "n2 holds every message", func() error {
		hist, err := ag.history(ctx, conv)
		if err != nil {
			t.Fatal(err)
		}
		seen = map[string]int{}
		for _, d := range hist {
			seen[msgID(d)]++
		}
		if len(seen) != 11 {
			return fmt.Errorf("%d of 11 messages: %v", len(seen), seen)
		}
		return nil
	})
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s %d times on n2", id, n)
		}
	}
	if sent := metric(t, n1, "parley_antientropy_events_sent_total"); sent < 10 {
		t.Errorf("anti-entropy sent %v events", sent)
	}
	t.Logf("n2 caught up %s after its restart", time.Since(start).Round(time.Millisecond))
}

// convDigest is what a node holds of one conversation (GET .../digest).
type convDigest struct {
	Vector   map[string]uint64 `json:"vector"`
	State    string            `json:"state"`
	Messages int               `json:"messages"`
}

// digests returns each node's digest of a workspace: conversation ->
// vector and state.
func (tc *testCluster) digests(t testing.TB, ws string) []map[string]convDigest {
	t.Helper()
	var out []map[string]convDigest
	for _, nd := range tc.nodes {
		var d struct {
			Conversations map[string]convDigest `json:"conversations"`
		}
		mustAPI(t, nd, "GET", "/v1/admin/workspaces/"+ws+"/digest", tc.root, nil, &d)
		out = append(out, d.Conversations)
	}
	return out
}

// waitConverged waits until every node holds conv with the same state and
// n messages.
func (tc *testCluster) waitConverged(t testing.TB, ws, conv string, n int, within time.Duration) []map[string]convDigest {
	t.Helper()
	var ds []map[string]convDigest
	eventually.Holds(t, within, fmt.Sprintf("replicas converge on %d messages", n), func() error {
		ds = tc.digests(t, ws)
		for _, d := range ds {
			if d[conv].State != ds[0][conv].State || d[conv].Messages != n ||
				replicationVectorString(d[conv].Vector) != replicationVectorString(ds[0][conv].Vector) {
				var held []string
				for i, d := range ds {
					held = append(held, fmt.Sprintf("n%d: %+v", i+1, d[conv]))
				}
				return errors.New(strings.Join(held, "; "))
			}
		}
		return nil
	})
	return ds
}

// visitorWriter writes as one visitor, through whichever node it is given,
// resending each message with the same id until it is acknowledged, as the
// widget does; it keeps the acknowledged ids.
type visitorWriter struct {
	t           testing.TB
	ctx         context.Context
	ws, conv    string
	body        string
	vis         map[string]any // the visitor's identity, kept across nodes
	acked       map[string]bool
	unavailable int // sends answered unavailable (not confirmed)
}

func newVisitorWriter(t testing.TB, ctx context.Context, ws, body string) *visitorWriter {
	return &visitorWriter{t: t, ctx: ctx, ws: ws, body: body, acked: map[string]bool{}}
}

// write sends n messages prefix-000000... through via, starting the
// conversation on the first call.
func (w *visitorWriter) write(via *nodeProc, prefix string, n int) {
	t, ctx := w.t, w.ctx
	t.Helper()
	v, err := dialNode(ctx, via)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	welcome, err := v.hello(ctx, w.ws, w.vis)
	if err != nil {
		t.Fatal(err)
	}
	w.vis = map[string]any{"visitor_id": welcome["visitor_id"], "visitor_sig": welcome["visitor_sig"]}
	if w.conv == "" {
		v.send(ctx, map[string]any{"type": "start", "ref": "s"})
		st, err := v.await(ctx, "started", nil)
		if err != nil {
			t.Fatal(err)
		}
		w.conv = st["conversation"].(string)
	}
	for i := range n {
		id := fmt.Sprintf("%s-%06d", prefix, i)
		for try := 0; ; try++ {
			ref := fmt.Sprintf("r-%s-%d", id, try)
			v.send(ctx, map[string]any{"type": "send", "ref": ref, "conversation": w.conv, "id": id, "body": w.body})
			m, err := v.awaitRef(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if m["type"] == "ack" {
				w.acked[id] = true
				break
			}
			if m["code"] != "unavailable" || try > 200 {
				t.Fatalf("send %s via %s: %v", id, via.Addr, m)
			}
			w.unavailable++
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestRollingRestartConverges restarts every node in turn, each with SIGTERM
// then SIGKILL on alternate nodes, while a visitor writes through the
// others: afterwards every node holds every acknowledged message once and
// the replicas' digests are identical.
func TestRollingRestartConverges(t *testing.T) {
	tc := startCluster(t, 3)
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	w := newVisitorWriter(t, testCtx(t, 180*time.Second), "acme", "rolling")
	w.write(tc.nodes[0], "m-start", 5)
	for i, nd := range tc.nodes {
		if i%2 == 0 {
			nd.Kill9(t)
		} else {
			nd.Stop()
		}
		other := tc.nodes[(i+1)%len(tc.nodes)]
		w.write(other, fmt.Sprintf("m-during-%d", i), 5)
		nd.Restart(t)
		tc.waitAlive(t, nd, 3, 30*time.Second)
	}
	w.write(tc.nodes[2], "m-end", 5)
	// Every replica converges on the same digest, with every message.
	ds := tc.waitConverged(t, "acme", w.conv, len(w.acked), 30*time.Second)
	t.Logf("%d messages acknowledged through a rolling restart; replicas converged on state %s", len(w.acked), ds[0][w.conv].State)
}

func replicationVectorString(v map[string]uint64) string {
	var parts []string
	for o, n := range v {
		parts = append(parts, fmt.Sprintf("%s.%d", o, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// TestPresenceAndTypingAcrossNodes: an agent on one node sees a visitor of
// another come online and type; when the visitor's node is killed, the
// visitor goes offline for the agent within the failure-detection time.
func TestPresenceAndTypingAcrossNodes(t *testing.T) {
	tc := startCluster(t, 3)
	n1, n2 := tc.nodes[0], tc.nodes[1]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 60*time.Second)
	agent := tc.agentOn(t, ctx, n1, n2, "acme", "sam")
	// Not startVisitor: the agent's presence comes with the welcome, before
	// any reply to start.
	v, err := dialNode(ctx, n1)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	welcome, err := v.visitorHelloIn(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	who := welcome["participant"]
	if _, err := agent.await(ctx, "presence", func(m map[string]any) bool { return m["participant"] == who && m["online"] == true }); err != nil {
		t.Fatalf("agent on n2 never saw the visitor on n1 online: %v", err)
	}
	// The visitor sees the agent of the other node online too.
	if _, err := v.await(ctx, "presence", func(m map[string]any) bool { return m["role"] == "agent" && m["online"] == true }); err != nil {
		t.Fatalf("visitor on n1 never saw the agent on n2: %v", err)
	}
	v.send(ctx, map[string]any{"type": "start", "ref": "s"})
	st, err := v.await(ctx, "started", nil)
	if err != nil {
		t.Fatal(err)
	}
	conv := st["conversation"].(string)
	say(t, ctx, v, conv, "m-p-000001", "hello") // the conversation reaches n2
	v.send(ctx, map[string]any{"type": "typing", "conversation": conv, "typing": true})
	if _, err := agent.await(ctx, "typing", func(m map[string]any) bool { return m["participant"] == who && m["typing"] == true }); err != nil {
		t.Fatalf("agent on n2 never saw the visitor typing: %v", err)
	}
	n1.Kill9(t)
	killed := time.Now()
	if _, err := agent.await(ctx, "presence", func(m map[string]any) bool { return m["participant"] == who && m["online"] == false }); err != nil {
		t.Fatalf("the visitor of a killed node stayed online: %v", err)
	}
	t.Logf("the killed node's visitor went offline for the agent %s after the kill", time.Since(killed).Round(time.Millisecond))
}

// TestErasureReachesEveryReplica: a conversation erased through one node is
// gone from every node that held it, and stays gone; its text is in no file
// of any node, before or after (it is sealed at rest: see
// TestErasureShredsEveryReplica for the moment of the erasure).
func TestErasureReachesEveryReplica(t *testing.T) {
	tc := startCluster(t, 3)
	n1, n2 := tc.nodes[0], tc.nodes[1]
	mustAPI(t, n1, "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 60*time.Second)
	v, _, conv := startVisitor(t, ctx, n1, "acme")
	defer v.close()
	canary := fmt.Sprintf("to be forgotten %x", time.Now().UnixNano())
	for i := range 3 {
		say(t, ctx, v, conv, fmt.Sprintf("m-e-%06d", i), canary)
	}
	// Sealed at rest: not in plaintext on disk even before the erasure.
	if found := scanFiles(t, tc.nodes, []string{canary}); len(found) > 0 {
		t.Fatalf("the messages' text is in plaintext on disk: %v", found)
	}
	var inv struct{ Index uint64 }
	mustAPI(t, n1, "POST", "/v1/admin/workspaces/acme/operators", tc.root, map[string]any{"id": "sam", "email": "sam@acme.test", "name": "Sam", "password": "a good long password"}, &inv)
	var login struct{ Token string }
	mustAPI(t, n2, "POST", fmt.Sprintf("/v1/login?min_index=%d", inv.Index), "", map[string]any{"workspace": "acme", "email": "sam@acme.test", "password": "a good long password"}, &login)
	mustAPI(t, n2, "DELETE", "/v1/workspaces/acme/conversations/"+conv, login.Token, nil, nil)
	// The erasure is in the audit log, the agent's, read on another node.
	eventually.Holds(t, 10*time.Second, "the erasure in the audit log on n1", func() error {
		var p auditPage
		if st, code := api(n1, "GET", "/v1/admin/audit?workspace=acme&action=erase_conversation", tc.root, nil, &p); st != 200 {
			return fmt.Errorf("%d %s", st, code)
		}
		if len(p.Entries) != 1 || p.Entries[0].String() != "erase_conversation operator:sam@127.0.0.1 DELETE /v1/workspaces/{ws}/conversations/{conv} ok" || p.Entries[0].Target != conv {
			return fmt.Errorf("entries %v", p.Entries)
		}
		return nil
	})
	eventually.Holds(t, 10*time.Second, "every node drops the erased conversation", func() error {
		held := 0
		for _, d := range tc.digests(t, "acme") {
			if _, ok := d[conv]; ok {
				held++
			}
		}
		if held > 0 {
			return fmt.Errorf("%d nodes still hold it", held)
		}
		return nil
	})
	// The visitor's next message finds it gone rather than bringing it back.
	v.send(ctx, map[string]any{"type": "send", "ref": "late", "conversation": conv, "id": "m-e-late01", "body": "again"})
	if m, err := v.awaitRef(ctx, "late"); err != nil || m["code"] != "not_found" {
		t.Fatalf("a message to the erased conversation: %v %v", m, err)
	}
	// Nor is it in any file of any node afterwards (the stores also scrub
	// the pages the erasure freed, sealed, within -scrub-after).
	eventually.Holds(t, 20*time.Second, "no file holds the erased text", func() error {
		if found := scanFiles(t, tc.nodes, []string{canary}); len(found) > 0 {
			return fmt.Errorf("still in %v", found)
		}
		return nil
	})
	// The nodes' logs (outside their data directories) never held it.
	for _, nd := range tc.nodes {
		if raw, err := os.ReadFile(nd.LogPath); err != nil || bytes.Contains(raw, []byte(canary)) {
			t.Fatalf("log of %s: holds the text, or %v", nd.Addr, err)
		}
	}
}
