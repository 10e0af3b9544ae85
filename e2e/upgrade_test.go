package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"parley/cluster/schema"
	"parley/internal/eventually"
	"parley/internal/localcluster"
)

// previousRelease is the commit TestRollingUpgrade upgrades from: the one
// line of e2e/testdata/previous-release that is not a comment.
func previousRelease(t testing.TB) string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "previous-release"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) != 40 || strings.Trim(line, "0123456789abcdef") != "" {
			t.Fatalf("testdata/previous-release: %q is not a full commit hash", line)
		}
		return line
	}
	t.Fatal("testdata/previous-release names no commit")
	return ""
}

// releaseBinary builds the parley binary of commit hash from this
// clone's own history (git archive, then go build with the module cache
// only), once: it is kept under the user's cache directory
// (~/.cache/parley/releases/HASH/parley). A commit not in the history
// fails the test: an upgrade test that cannot find the release it
// upgrades from must not pass quietly.
func releaseBinary(t testing.TB, hash string) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "parley", "releases", hash)
	bin := filepath.Join(dir, "parley")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if out, err := exec.Command("git", "cat-file", "-e", hash+"^{commit}").CombinedOutput(); err != nil {
		t.Fatalf("the previous release %s (e2e/testdata/previous-release) is not in this clone's history: %v %s\n"+
			"fetch it (git fetch origin %s), or clone with full history", hash, err, out, hash)
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse --show-toplevel: %v", err)
	}
	src := t.TempDir()
	archive := exec.Command("git", "archive", "--format=tar", hash)
	archive.Dir = strings.TrimSpace(string(top)) // the whole tree, not this directory's
	untar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	var archiveErr, untarErr strings.Builder
	archive.Stderr, untar.Stderr = &archiveErr, &untarErr
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v %s", hash, err, archiveErr.String())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("unpacking %s: %v %s", hash, err, untarErr.String())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.CreateTemp(dir, "parley-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	build := exec.Command("go", "build", "-o", tmp.Name(), "./cmd/parley")
	build.Dir = src
	// The module cache only: the release's modules are the ones this
	// machine built it with.
	build.Env = append(os.Environ(), "GOFLAGS=-mod=readonly -buildvcs=false", "GOPROXY=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the previous release %s: %v\n%s", hash, err, out)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// steadyWriter is a visitor writing through the cluster's nodes in turn,
// one message after another until stopped: each is sent with the same id
// until acknowledged (on another node when its node goes away), as the
// widget does. The test pauses it between messages by holding hold.
type steadyWriter struct {
	ws    string
	nodes []*nodeProc
	hold  sync.Mutex

	mu      sync.Mutex
	conv    string
	acked   []string
	resends int
	err     error
}

func (w *steadyWriter) snapshot() (conv string, acked []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conv, append([]string(nil), w.acked...)
}

// run writes until stop is closed, or a send is refused for another
// reason than a node going away (w.err).
func (w *steadyWriter) run(ctx context.Context, stop <-chan struct{}) {
	var (
		v    *wsClient
		vis  map[string]any
		next int
	)
	defer func() {
		if v != nil {
			v.close()
		}
	}()
	fail := func(err error) {
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
	}
	connect := func() error {
		nd := w.nodes[next%len(w.nodes)]
		next++
		if !nd.Running() {
			return errors.New("down")
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := dialNode(cctx, nd)
		if err != nil {
			return err
		}
		welcome, err := c.hello(cctx, w.ws, vis)
		if err != nil {
			c.close()
			return err
		}
		vis = map[string]any{"visitor_id": welcome["visitor_id"], "visitor_sig": welcome["visitor_sig"]}
		if conv, _ := w.snapshot(); conv == "" {
			c.send(cctx, map[string]any{"type": "start", "ref": "s"})
			st, err := c.await(cctx, "started", nil)
			if err != nil {
				c.close()
				return err
			}
			w.mu.Lock()
			w.conv = st["conversation"].(string)
			w.mu.Unlock()
		}
		v = c
		return nil
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			fail(ctx.Err())
			return
		default:
		}
		w.hold.Lock()
		id := fmt.Sprintf("m-%06d", i)
		for try := 0; ; try++ {
			if ctx.Err() != nil || try > 1200 {
				w.hold.Unlock()
				fail(fmt.Errorf("message %s never acknowledged (%d tries): %v", id, try, ctx.Err()))
				return
			}
			if v == nil {
				if err := connect(); err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
			}
			conv, _ := w.snapshot()
			ref := fmt.Sprintf("r-%s-%d", id, try)
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := v.send(actx, map[string]any{"type": "send", "ref": ref, "conversation": conv, "id": id, "body": "upgrade " + id})
			var m map[string]any
			if err == nil {
				m, err = v.awaitRef(actx, ref)
			}
			cancel()
			if err != nil { // the node went away: the same id through another
				v.close()
				v = nil
				w.mu.Lock()
				w.resends++
				w.mu.Unlock()
				continue
			}
			if m["type"] == "ack" {
				w.mu.Lock()
				w.acked = append(w.acked, id)
				w.mu.Unlock()
				break
			}
			if m["code"] != "unavailable" && m["code"] != "overloaded" {
				w.hold.Unlock()
				fail(fmt.Errorf("send %s: %v", id, m))
				return
			}
			w.mu.Lock()
			w.resends++
			w.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
		w.hold.Unlock()
		// Spread the writes: every 25 messages through the next node.
		if i%25 == 24 && v != nil {
			v.close()
			v = nil
		}
	}
}

// clusterVersions is the versions part of /v1/admin/cluster.
type clusterVersions struct {
	Versions struct {
		Node    int            `json:"node"`
		Cluster int            `json:"cluster"`
		Members map[string]int `json:"members"`
	} `json:"versions"`
}

// TestRollingUpgrade upgrades a 3-node cluster of the previous release
// (e2e/testdata/previous-release, built from this clone's history) to
// this build one node at a time, the Raft leader last, while a visitor
// keeps writing through the nodes: each node is stopped with SIGTERM and
// started from the new binary on its data directory, and is a voter again
// with every replica converged before the next. A command newer than the
// previous release (the upgrade probe of test builds) is refused with
// cluster_upgrading, naming the old node, while one remains, and accepted
// once the last is upgraded; no node stops on it. At the end every
// replica's digest is alike and counts every acknowledged message once,
// and each node replays every acknowledged message and nothing else.
func TestRollingUpgrade(t *testing.T) {
	hash := previousRelease(t)
	oldBin := releaseBinary(t, hash)
	newBin := filepath.Join(t.TempDir(), "parley-upgradetest")
	if err := localcluster.Build(context.Background(), newBin, "-tags", "upgradetest"); err != nil {
		t.Fatal(err)
	}
	tc := startClusterBin(t, oldBin, 3)
	mustAPI(t, tc.nodes[0], "POST", "/v1/admin/workspaces", tc.root, map[string]any{"id": "acme", "name": "Acme", "plan": "team"}, nil)
	ctx := testCtx(t, 150*time.Second)

	w := &steadyWriter{ws: "acme", nodes: tc.nodes}
	var noter *wsClient // an agent on a new node, once one old node is left
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, stop)
	}()
	stopped := false
	stopWriter := func() {
		if !stopped {
			stopped = true
			close(stop)
			<-done
		}
	}
	t.Cleanup(stopWriter)
	ackedAtLeast := func(more int, what string) {
		t.Helper()
		_, acked := w.snapshot()
		n := len(acked) + more
		eventually.Holds(t, 30*time.Second, what, func() error {
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.acked) < n {
				return fmt.Errorf("%d acknowledged, want %d (writer: %v)", len(w.acked), n, w.err)
			}
			return nil
		})
	}
	// converged pauses the writer between two messages and waits until
	// every replica holds what it had acknowledged, alike.
	converged := func(what string) {
		t.Helper()
		w.hold.Lock()
		defer w.hold.Unlock()
		conv, acked := w.snapshot()
		tc.waitConverged(t, "acme", conv, len(acked), 60*time.Second)
		t.Logf("%s: %d messages acknowledged, every replica alike", what, len(acked))
	}
	ackedAtLeast(20, "the visitor writes to the old cluster")

	leader := tc.leader(t)
	var order []*nodeProc
	for _, nd := range tc.nodes {
		if nd != leader {
			order = append(order, nd)
		}
	}
	order = append(order, leader)
	probe := func(via *nodeProc) (int, string, string) {
		resp, b, err := request(ctx, via, "POST", "/v1/admin/cluster/upgrade-probe", tc.root, nil)
		if err != nil {
			return 0, "", err.Error()
		}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		return resp.StatusCode, e.Error.Code, e.Error.Message
	}
	for i, nd := range order {
		nd.Stop()
		// The writer goes on through the others while the node is down.
		ackedAtLeast(10, fmt.Sprintf("writes go on while %s is down", nd.ID))
		nd.Bin = newBin
		nd.Restart(t)
		tc.waitVoters(t, 3)
		var cv clusterVersions
		// Every upgraded node (the old ones do not say) sees it run the
		// new version.
		eventually.Holds(t, 30*time.Second, nd.ID+" runs the new version, as the upgraded nodes see", func() error {
			for _, other := range tc.nodes {
				if other.Bin != newBin {
					continue
				}
				cv = clusterVersions{}
				if st, _ := api(other, "GET", "/v1/admin/cluster", tc.root, nil, &cv); st != 200 || cv.Versions.Members[nd.ID] != schema.ProtocolVersion {
					return fmt.Errorf("%s sees %+v (status %d)", other.ID, cv.Versions, st)
				}
			}
			return nil
		})
		ackedAtLeast(10, fmt.Sprintf("writes go on once %s is back", nd.ID))
		converged(fmt.Sprintf("%s upgraded (%d of 3)", nd.ID, i+1))
		if i == len(order)-2 {
			// One old node remains. Make a new node lead (the old one
			// suspended until another is elected): a command it appended
			// would reach the old node, which would stop on it.
			newLeader := leadNew(t, tc, leader, newBin)
			// The probe is refused at the API, through the new leader as
			// through the other new node, naming the old node; nothing is
			// appended.
			for _, via := range tc.nodes {
				if via.Bin != newBin {
					continue
				}
				// Refused throughout; naming the old node's version once
				// gossip sees it alive again after its suspension (until
				// then it is "of unknown version").
				var msg string
				eventually.Holds(t, 30*time.Second, "the probe refused through "+via.ID+", naming "+leader.ID, func() error {
					st, code, m := probe(via)
					if st != 409 || code != "cluster_upgrading" {
						t.Fatalf("probe through %s with %s still old: %d %s %q, want 409 cluster_upgrading", via.ID, leader.ID, st, code, m)
					}
					if msg = m; !strings.Contains(m, leader.ID+" runs 1") {
						return fmt.Errorf("%q does not name %s's version", m, leader.ID)
					}
					return nil
				})
				t.Logf("through %s with %s old: %s", via.ID, leader.ID, msg)
			}
			if cv.Versions.Cluster != 1 {
				t.Fatalf("cluster version %d with an old node, want 1", cv.Versions.Cluster)
			}
			// A note, which the old node would hand to the visitor, is
			// refused on the wire too.
			conv, _ := w.snapshot()
			noter = tc.agentOn(t, ctx, newLeader, newLeader, "acme", "noter")
			noter.send(ctx, map[string]any{"type": "send", "ref": "note-old", "conversation": conv, "id": "n-upgrade-old", "body": "a note", "internal": true})
			if m, err := noter.awaitRef(ctx, "note-old"); err != nil || m["type"] != "error" || m["code"] != "cluster_upgrading" {
				t.Fatalf("a note with %s still old: %v %v, want cluster_upgrading", leader.ID, m, err)
			}
			converged(fmt.Sprintf("%s leads, %s old", newLeader.ID, leader.ID))
			if !leader.Running() {
				t.Fatalf("the old node %s stopped", leader.ID)
			}
		}
	}
	// Every node runs the new version: the probe is accepted, through
	// each node, and no node stops on it.
	for _, nd := range tc.nodes {
		eventually.Holds(t, 30*time.Second, "the probe is accepted through "+nd.ID, func() error {
			if st, code, msg := probe(nd); st != 200 {
				return fmt.Errorf("%d %s %s", st, code, msg)
			}
			return nil
		})
	}
	var cv clusterVersions
	mustAPI(t, tc.nodes[0], "GET", "/v1/admin/cluster", tc.root, nil, &cv)
	if cv.Versions.Cluster != schema.ProtocolVersion {
		t.Fatalf("cluster version %+v after the upgrade", cv.Versions)
	}
	ackedAtLeast(10, "writes go on after the upgrade")
	stopWriter()
	if w.err != nil {
		t.Fatal(w.err)
	}
	conv, acked := w.snapshot()
	tc.waitConverged(t, "acme", conv, len(acked), 60*time.Second)
	for _, nd := range tc.nodes {
		if !nd.Running() {
			t.Fatalf("%s stopped", nd.ID)
		}
	}
	// Each node's agent reads the conversation from its own node: every
	// acknowledged message, nothing else. The digests above count each
	// message once; a message may be replayed twice, at two events holding
	// the same state: a fault of the previous release as much as of this
	// one (the message resent to another node while its first node stops;
	// seen with f1a04e3 alone too), not of the upgrade, logged here and
	// left to its own fix.
	want := map[string]bool{}
	for _, id := range acked {
		want[id] = true
	}
	var twice []string
	for i, nd := range tc.nodes {
		ag := tc.agentOn(t, ctx, nd, nd, "acme", fmt.Sprintf("agent%d", i+1))
		hist, err := ag.history(ctx, conv)
		if err != nil {
			t.Fatalf("history on %s: %v", nd.ID, err)
		}
		states := map[string]string{}
		for _, m := range hist {
			id := msgID(m)
			b, _ := json.Marshal(m["message"])
			if prev, ok := states[id]; ok {
				twice = append(twice, fmt.Sprintf("%s on %s", id, nd.ID))
				if prev != string(b) {
					t.Errorf("%s replays %s as two different states: %s and %s", nd.ID, id, prev, b)
				}
			}
			states[id] = string(b)
			if !want[id] {
				t.Errorf("%s holds %s, never acknowledged", nd.ID, id)
			}
		}
		if len(states) != len(want) {
			t.Errorf("%s holds %d messages, %d acknowledged", nd.ID, len(states), len(want))
		}
	}
	if len(twice) > 0 {
		t.Logf("replayed twice (one message, two events of the same state): %s", strings.Join(twice, ", "))
	}
	t.Logf("%d messages acknowledged through the upgrade from %s (%d resent after a node went away or answered unavailable)", len(acked), hash[:7], w.resends)
	// Once every node runs the new version, notes are taken.
	noter.send(ctx, map[string]any{"type": "send", "ref": "note-new", "conversation": conv, "id": "n-upgrade-new", "body": "a note", "internal": true})
	if m, err := noter.awaitRef(ctx, "note-new"); err != nil || m["type"] != "ack" {
		t.Fatalf("a note after the upgrade: %v %v", m, err)
	}
}

// leadNew makes a node running newBin lead: when old, the node that leads
// is suspended (SIGSTOP) until the others elect one of theirs, then
// continued; it rejoins as a follower.
func leadNew(t *testing.T, tc *testCluster, old *nodeProc, newBin string) *nodeProc {
	t.Helper()
	if ld := tc.leader(t); ld.Bin == newBin {
		return ld
	}
	if err := old.Suspend(); err != nil {
		t.Fatal(err)
	}
	var leader *nodeProc
	eventually.Holds(t, 30*time.Second, "a new node leads while "+old.ID+" is suspended", func() error {
		for _, nd := range tc.nodes {
			if nd == old {
				continue
			}
			var v struct {
				Raft struct {
					LeaderID string `json:"leader_id"`
				} `json:"raft"`
			}
			if st, _ := api(nd, "GET", "/v1/admin/cluster", tc.root, nil, &v); st != 200 {
				continue
			}
			for _, m := range tc.nodes {
				if m.ID == v.Raft.LeaderID && m != old {
					leader = m
					return nil
				}
			}
		}
		return errors.New("no other node leads")
	})
	if _, err := old.Continue(); err != nil {
		t.Fatal(err)
	}
	tc.waitVoters(t, 3)
	// The continued node may call an election before it hears the new
	// leader (another new node may win it); it cannot win one itself
	// while its log is behind.
	eventually.Holds(t, 20*time.Second, "a new node leads once "+old.ID+" is back", func() error {
		if leader = tc.leader(t); leader.Bin != newBin {
			return fmt.Errorf("%s leads", leader.ID)
		}
		return nil
	})
	return leader
}
