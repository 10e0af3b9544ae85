package e2e

import (
	"fmt"
	"parley/gateway/client"
	"parley/gateway/wire"
	"sync"
	"testing"
	"time"

	"parley/internal/eventually"
)

// loadClient is one visitor writing into its own conversation without
// waiting for acks, as a busy widget would.
type loadClient struct {
	identity map[string]any
	conv     string
	mu       sync.Mutex
	sent     []string
	acked    map[string]float64 // id -> seq
}

// TestKillNineKeepsEveryAckedMessageOnce kills the node with SIGKILL in the
// middle of a load, restarts it from its bbolt file, and checks that every
// message the node acknowledged is there exactly once; then the clients
// resend what was never acknowledged, as the widget does, and every message
// is there exactly once.
func TestKillNineKeepsEveryAckedMessageOnce(t *testing.T) {
	// Limits raised so that 16 connections make a real load.
	n := startNode(t, t.TempDir(), "-frame-rate", "5000", "-workspace-rate", "100000")
	ctx := testCtx(t, 2*time.Minute)
	// Each client sends at most perClient messages, so that the resends
	// after the restart stay bounded.
	const clients, perClient = 16, 500
	lcs := make([]*loadClient, clients)
	conns := make([]*wsClient, clients)
	for i := range lcs {
		cl, err := dialNode(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		w, err := cl.visitorHello(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		cl.send(ctx, map[string]any{"type": "start", "ref": "s"})
		st, err := cl.await(ctx, "started", nil)
		if err != nil {
			t.Fatal(err)
		}
		lcs[i] = &loadClient{identity: map[string]any{"visitor_id": w["visitor_id"], "visitor_sig": w["visitor_sig"]}, conv: st["conversation"].(string), acked: map[string]float64{}}
		conns[i] = cl
	}

	// An agent watches everything live; after the kill it resumes each
	// conversation from the last seq it saw, which may be one whose event
	// was shown but never reached the disk.
	agent, err := dialNode(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	agent.send(ctx, map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": n.Token})
	if _, err := agent.await(ctx, "welcome", nil); err != nil {
		t.Fatal(err)
	}
	var agentMu sync.Mutex
	agentSeen := map[string]map[string]bool{} // conversation -> message ids
	agentLast := map[string]float64{}         // conversation -> highest seq
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		for {
			m, err := agent.await(ctx, "deliver", nil)
			if err != nil {
				return
			}
			conv := m["conversation"].(string)
			agentMu.Lock()
			if agentSeen[conv] == nil {
				agentSeen[conv] = map[string]bool{}
			}
			agentSeen[conv][msgID(m)] = true
			agentLast[conv] = max(agentLast[conv], m["seq"].(float64))
			agentMu.Unlock()
		}
	}()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, lc := range lcs {
		cl := conns[i]
		wg.Add(2)
		// Sends the node sheds (overloaded) are sent again, as the
		// widget does, after the next tick: they were never taken.
		shed := make(chan string, perClient)
		go func() { // acks
			defer wg.Done()
			for {
				f, err := cl.c.Await(ctx, func(f client.Frame) bool { return f.Type == "ack" || f.Type == "error" }, nil)
				if err != nil {
					return
				}
				m := frameMap(f)
				if m["type"] == "error" {
					if m["code"] != wire.CodeOverloaded {
						t.Errorf("send refused: %v", m)
						return
					}
					shed <- m["ref"].(string)
					continue
				}
				lc.mu.Lock()
				lc.acked[m["id"].(string)] = m["seq"].(float64)
				lc.mu.Unlock()
			}
		}()
		go func() { // sends as fast as the connection takes them
			defer wg.Done()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for j := 0; ; {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				var id string
				select {
				case id = <-shed:
				default:
					if j == perClient {
						continue
					}
					id = idOf(i, j)
					j++
					lc.mu.Lock()
					lc.sent = append(lc.sent, id)
					lc.mu.Unlock()
				}
				if cl.send(ctx, map[string]any{"type": "send", "ref": id, "conversation": lc.conv, "id": id, "body": "load " + id}) != nil {
					return
				}
			}
		}()
	}
	// Kill once the load is well under way.
	if err := eventually.Poll(30*time.Second, func() error {
		total := 0
		for _, lc := range lcs {
			lc.mu.Lock()
			total += len(lc.acked)
			lc.mu.Unlock()
		}
		if total < 3000 {
			return fmt.Errorf("%d of 3000 messages acknowledged", total)
		}
		return nil
	}); err != nil {
		t.Logf("killing with the load not well under way: %v", err)
	}
	n.Kill9(t)
	close(stop)
	wg.Wait()
	<-agentDone

	n.Restart(t)
	// Someone else writes first after the restart: had the node handed out
	// again a seq the agent saw before the kill, the agent's resume below
	// would skip this reply.
	replier, err := dialNode(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	replier.send(ctx, map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": n.Token})
	if _, err := replier.await(ctx, "welcome", nil); err != nil {
		t.Fatal(err)
	}
	for i, lc := range lcs {
		id := idOf(1000+i, 0)
		replier.send(ctx, map[string]any{"type": "send", "ref": id, "conversation": lc.conv, "id": id, "body": "back after the restart"})
		if _, err := replier.await(ctx, "ack", func(m map[string]any) bool { return m["ref"] == id }); err != nil {
			t.Fatal(err)
		}
		lc.sent = append(lc.sent, id)
	}
	replier.close()
	totalAcked, totalSent, phantoms := 0, 0, 0
	for i, lc := range lcs {
		cl, err := dialNode(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.visitorHello(ctx, lc.identity); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		hist, err := cl.history(ctx, lc.conv)
		if err != nil {
			t.Fatalf("client %d history: %v", i, err)
		}
		count := map[string]int{}
		durableHead := 0.0
		for _, m := range hist {
			count[msgID(m)]++
			if msgID(m) != idOf(1000+i, 0) {
				durableHead = max(durableHead, m["seq"].(float64))
			}
		}
		if agentLast[lc.conv] > durableHead {
			phantoms++ // the agent saw events the kill took back
		}
		for id, seq := range lc.acked {
			if count[id] != 1 {
				t.Errorf("client %d: acknowledged message %s (seq %v) stored %d times after SIGKILL", i, id, seq, count[id])
			}
		}
		for id, c := range count {
			if c != 1 {
				t.Errorf("client %d: message %s stored %d times", i, id, c)
			}
		}
		// Resend everything sent but not acknowledged, with the same IDs,
		// pipelined as the widget does after a reconnect.
		pending := map[string]bool{}
		for _, id := range lc.sent {
			if _, ok := lc.acked[id]; ok || pending[id] {
				continue
			}
			pending[id] = true
			if err := cl.send(ctx, map[string]any{"type": "send", "ref": id, "conversation": lc.conv, "id": id, "body": "load " + id}); err != nil {
				t.Fatal(err)
			}
		}
		for len(pending) > 0 {
			m, err := cl.await(ctx, "ack", nil)
			if err != nil {
				t.Fatalf("client %d resending: %v (%d unacknowledged)", i, err, len(pending))
			}
			delete(pending, m["ref"].(string))
		}
		// Read the history as a reloaded page would: on a new connection.
		cl.close()
		if cl, err = dialNode(ctx, n); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.visitorHello(ctx, lc.identity); err != nil {
			t.Fatal(err)
		}
		hist, err = cl.history(ctx, lc.conv)
		if err != nil {
			t.Fatal(err)
		}
		count = map[string]int{}
		for _, m := range hist {
			count[msgID(m)]++
		}
		for _, id := range lc.sent {
			if count[id] != 1 {
				t.Errorf("client %d: after resending, message %s stored %d times", i, id, count[id])
			}
		}
		if len(count) != len(lc.sent) {
			t.Errorf("client %d: %d messages stored, %d sent", i, len(count), len(lc.sent))
		}
		// The agent, reconnected, resumes from its last seq: together with
		// what it saw before the kill, it has every stored message.
		ag, err := dialNode(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		ag.send(ctx, map[string]any{"type": "hello", "v": 1, "workspace": "demo", "role": "agent", "token": n.Token})
		if _, err := ag.await(ctx, "welcome", nil); err != nil {
			t.Fatal(err)
		}
		replay, err := ag.resumeFrom(ctx, lc.conv, agentLast[lc.conv])
		if err != nil {
			t.Fatal(err)
		}
		seen := agentSeen[lc.conv]
		if seen == nil {
			seen = map[string]bool{}
		}
		for _, m := range replay {
			if m["seq"].(float64) <= agentLast[lc.conv] {
				t.Errorf("client %d: seq %v handed out again after the kill (agent had seen %v)", i, m["seq"], agentLast[lc.conv])
			}
			seen[msgID(m)] = true
		}
		ag.close()
		for id := range count {
			if !seen[id] {
				t.Errorf("client %d: the agent never got message %s: a gap in resume across the kill", i, id)
			}
		}
		totalAcked += len(lc.acked)
		totalSent += len(lc.sent)
		cl.close()
	}
	t.Logf("%d messages sent, %d acknowledged before SIGKILL; all acknowledged ones survived exactly once; "+
		"in %d of %d conversations the agent had been shown events the kill took back, and its resume still missed nothing",
		totalSent, totalAcked, phantoms, clients)
	if totalAcked < 3000 {
		t.Fatalf("only %d acks before the kill: the load never got going", totalAcked)
	}
}
