package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/cluster"
	"parley/internal/eventually"

	"github.com/hashicorp/raft"
)

type raftStats struct {
	Raft cluster.Stats `json:"raft"`
}

func (tc *testCluster) stats(t testing.TB, nd *nodeProc) cluster.Stats {
	t.Helper()
	var s raftStats
	mustAPI(t, nd, "GET", "/v1/admin/cluster", tc.root, nil, &s)
	return s.Raft
}

// TestRaftPortRefusesForgedPeers replays the attack of a process without
// the cluster key on the Raft port, with hashicorp/raft's own transport:
// an AppendEntries carrying a session for an admin operator, and a
// RequestVote with a far higher term, against a follower and against the
// leader. Neither moves the term, and the invented session opens nothing.
func TestRaftPortRefusesForgedPeers(t *testing.T) {
	tc := startCluster(t, 3)
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	var op struct {
		Operator struct {
			ID string `json:"id"`
		} `json:"operator"`
	}
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces/acme/operators", tc.root,
		map[string]any{"id": "boss", "email": "boss@acme.test", "name": "Boss", "role": cluster.RoleAdmin}, &op)

	attacker, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer attacker.Close()
	leader := tc.leader(t)
	var follower *nodeProc
	for _, nd := range tc.nodes {
		if nd != leader {
			follower = nd
			break
		}
	}
	for _, target := range []*nodeProc{follower, leader} {
		before := map[*nodeProc]uint64{}
		for _, nd := range tc.nodes {
			before[nd] = tc.stats(t, nd).Term
		}
		st := tc.stats(t, target)
		token := fmt.Sprintf("ps_forged_%d", st.Term)
		h := cluster.HashToken(token)
		cmd, err := cluster.EncodeCommand(cluster.CreateSession{Hash: h, Workspace: "acme", Operator: "boss",
			Created: time.Now(), Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		addr := raft.ServerAddress(tc.raft[indexOf(tc, target)])
		hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n9"), Addr: []byte(attacker.LocalAddr())}
		var ae raft.AppendEntriesResponse
		aeErr := attacker.AppendEntries(raft.ServerID(st.NodeID), addr, &raft.AppendEntriesRequest{
			RPCHeader: hdr, Term: st.Term + 10, PrevLogEntry: st.LastLogIndex, PrevLogTerm: st.Term,
			Entries:           []*raft.Log{{Index: st.LastLogIndex + 1, Term: st.Term + 10, Type: raft.LogCommand, Data: cmd}},
			LeaderCommitIndex: st.LastLogIndex + 1,
		}, &ae)
		var rv raft.RequestVoteResponse
		rvErr := attacker.RequestVote(raft.ServerID(st.NodeID), addr, &raft.RequestVoteRequest{
			RPCHeader: hdr, Term: 5001, LastLogIndex: st.LastLogIndex + 100, LastLogTerm: 5000,
		}, &rv)
		if aeErr == nil || rvErr == nil {
			t.Errorf("%s (%s): the Raft port answered a peer without the key: append %v (success %v), vote %v (granted %v)",
				target.Addr, st.State, aeErr, ae.Success, rvErr, rv.Granted)
		}
		for _, nd := range tc.nodes {
			if got := tc.stats(t, nd).Term; got != before[nd] {
				t.Errorf("%s: term moved from %d to %d", nd.Addr, before[nd], got)
			}
			if status, _ := api(nd, "GET", "/v1/admin/workspaces/acme/secrets", token, nil, nil); status != 401 {
				t.Errorf("%s: the forged session read the secrets: %d", nd.Addr, status)
			}
		}
	}
}

func indexOf(tc *testCluster, nd *nodeProc) int {
	for i, n := range tc.nodes {
		if n == nd {
			return i
		}
	}
	panic("not a node of the cluster")
}

// recordingProxy stands on the path between nodes and keeps every byte it
// carries, both ways.
type recordingProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	bytes  bytes.Buffer
	conns  int
}

func startRecordingProxy(t testing.TB, listen, target string) *recordingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
	return p
}

func (p *recordingProxy) pipe(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	p.mu.Lock()
	p.conns++
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	copyRec := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				p.bytes.Write(buf[:n])
				p.mu.Unlock()
				dst.Write(buf[:n])
			}
			if err != nil {
				break
			}
		}
		dst.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}
	go copyRec(up, c)
	go copyRec(c, up)
	<-done
	<-done
}

func (p *recordingProxy) recorded() ([]byte, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.bytes.Bytes()), p.conns
}

// TestNodeTrafficIsEncrypted puts a recording proxy in front of every
// node's link address (each node advertises the proxy's), so that Raft,
// replication links and relays all go through one: a visitor relayed from
// the us node to the eu nodes chats with an agent; none of the message
// texts, tokens or the visitor's ID is in the bytes the proxies carried.
func TestNodeTrafficIsEncrypted(t *testing.T) {
	const n = 4 // eu, us, ap, eu
	hosts := []string{"127.0.0.61", "127.0.0.62", "127.0.0.63", "127.0.0.64"}
	var proxies []*recordingProxy
	links := make([]string, n)
	for i := range n {
		links[i] = freeAddr(t)
		_, port, _ := net.SplitHostPort(links[i])
		proxies = append(proxies, startRecordingProxy(t, net.JoinHostPort(hosts[i], port), links[i]))
	}
	tc := startClusterOn(t, clusterSpec{bin: parleyBin, n: n, links: links,
		argsFor: func(i int) []string { return []string{"-advertise", hosts[i]} }})
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "region": "eu", "plan": "team"}, nil)
	ctx := testCtx(t, 60*time.Second)
	// The agent signs in through the ap node (its login relayed to the
	// control plane) and works on an eu node.
	agentToken := tc.login(t, tc.nodes[2], tc.nodes[0], "acme", "ann")
	agent, err := dialNode(ctx, tc.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	defer agent.close()
	agent.send(ctx, map[string]any{"type": "hello", "v": 1, "workspace": "acme", "role": "agent", "token": agentToken})
	if _, err := agent.await(ctx, "welcome", nil); err != nil {
		t.Fatal(err)
	}
	// The visitor lands on the us node, which relays it to an eu node.
	secret := "canary-" + hex.EncodeToString(sha256.New().Sum([]byte(t.Name()))[:6])
	visitor, welcome, conv := startVisitor(t, ctx, tc.nodes[1], "acme")
	defer visitor.close()
	visitorID, _ := welcome["visitor_sig"].(string)
	say(t, ctx, visitor, conv, "msg-0001", secret+" my card is 4111 1111 1111 1111")
	if _, err := agent.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "msg-0001" }); err != nil {
		t.Fatal(err)
	}
	say(t, ctx, agent, conv, "msg-0002", "agent-answer-"+secret)
	if _, err := visitor.await(ctx, "deliver", func(m map[string]any) bool { return msgID(m) == "msg-0002" }); err != nil {
		t.Fatal(err)
	}
	// Both eu nodes hold the conversation: it crossed a replication link.
	for _, nd := range []*nodeProc{tc.nodes[0], tc.nodes[3]} {
		eventually.Holds(t, 20*time.Second, nd.Addr+" holds both messages", func() error {
			var d struct {
				Conversations map[string]convDigest `json:"conversations"`
			}
			mustAPI(t, nd, "GET", "/v1/admin/workspaces/acme/digest", tc.root, nil, &d)
			if d.Conversations[conv].Messages != 2 {
				return fmt.Errorf("holds %+v", d.Conversations[conv])
			}
			return nil
		})
	}

	// The public listener serves none of what nodes ask each other.
	for _, path := range []string{"/internal/v1/forward", "/internal/v1/join", "/internal/v1/wait", "/internal/v1/readindex", "/internal/v1/ae/tree"} {
		if status, _ := api(tc.nodes[0], "POST", path, tc.root, map[string]any{}, nil); status != 404 && status != 405 {
			t.Errorf("public POST %s: %d, want 404", path, status)
		}
	}
	if status, _ := api(tc.nodes[0], "GET", "/internal/v1/repl", tc.root, nil, nil); status != 404 {
		t.Errorf("public GET /internal/v1/repl: %d, want 404", status)
	}

	total := 0
	for i, p := range proxies {
		b, conns := p.recorded()
		total += len(b)
		if conns == 0 {
			t.Errorf("proxy of n%d carried no connection: node traffic bypassed it", i+1)
		}
		for _, canary := range []string{secret, "4111 1111", visitorID, agentToken, tc.root, "/internal/v1", "Authorization"} {
			if canary != "" && bytes.Contains(b, []byte(canary)) {
				t.Errorf("proxy of n%d saw %q in clear", i+1, canary)
			}
		}
		if !strings.HasPrefix(string(b), "\x16\x03") {
			t.Errorf("proxy of n%d: traffic does not start with a TLS handshake: % x", i+1, b[:min(len(b), 8)])
		}
	}
	t.Logf("proxies carried %d bytes of node traffic, all of it TLS", total)
}
