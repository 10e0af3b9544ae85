package gateway

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"parley/crdt"
	"parley/store"
)

// replicaFetcher is a Fetcher whose "replicas" are one other store: it
// copies a conversation from there into the gateway's store as the
// replication's fetch does (the record, then every event with its
// stamp), refusing another owner's. down makes it fail as when no replica
// could be asked; careless copies another owner's conversation all the
// same (the gateway's own owner check must still refuse it).
type replicaFetcher struct {
	replica, local *store.Store

	mu       sync.Mutex
	calls    []string // conv/owner of each call
	down     bool
	careless bool
}

func (f *replicaFetcher) Fetch(ctx context.Context, ws, conv, owner string) error {
	f.mu.Lock()
	f.calls = append(f.calls, conv+"/"+owner)
	down, careless := f.down, f.careless
	f.mu.Unlock()
	if down {
		return fmt.Errorf("%w: node r1: connection refused", ErrReplicasUnreachable)
	}
	rec, err := f.replica.Conversation(ws, conv)
	if err != nil {
		return err
	}
	if owner != "" && rec.Owner != owner && !careless {
		return fmt.Errorf("conversation %s: %w", conv, store.ErrNotFound)
	}
	if err := f.local.EnsureConversation(ctx, rec); err != nil {
		return err
	}
	evs, _, err := f.replica.Events(ws, conv, 0, 1000)
	if err != nil {
		return err
	}
	for _, e := range evs {
		if _, err := f.local.ApplyRemote(ctx, store.Remote{Conversation: rec, Stamp: e.Stamp, Message: e.Message}); err != nil {
			return err
		}
	}
	return nil
}

func (f *replicaFetcher) set(down, careless bool) {
	f.mu.Lock()
	f.down, f.careless = down, careless
	f.mu.Unlock()
}

func (f *replicaFetcher) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// TestConversationsNotHeldAreFetched: a conversation this node does not
// hold is fetched before the client is answered: its owner's resume
// replays it and their send is acknowledged; replicas that cannot be
// asked make it unavailable (the connection stays, a retry fetches
// again); a conversation no replica holds is not_found, and past
// maxFetchMisses of those a connection's unknown IDs are not asked about
// any more; another visitor never gets it, even from a fetch that
// brought it, while an agent does.
func TestConversationsNotHeldAreFetched(t *testing.T) {
	ctx := context.Background()
	replica, err := store.Open(store.Config{Path: filepath.Join(t.TempDir(), "r.db"), Origin: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Close() })
	if err := replica.PutWorkspace(ctx, store.Workspace{ID: "ws1"}); err != nil {
		t.Fatal(err)
	}
	f := &replicaFetcher{replica: replica}
	e := newEnv(t, func(c *Config) { c.Fetch = f })
	f.local = e.st

	v, welcome := e.visitor(t, "ws1", nil)
	owner := welcome["participant"].(string)
	const conv, theirs, third = "c_00000000000000000000000a", "c_00000000000000000000000b", "c_00000000000000000000000c"
	for _, c := range []store.Conversation{{Workspace: "ws1", ID: conv, Owner: owner, OwnerName: "Ada"}, {Workspace: "ws1", ID: theirs, Owner: "v:someone-else"},
		{Workspace: "ws1", ID: third, Owner: "v:a-third"}} {
		if err := replica.CreateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			m := crdt.NewMessage(fmt.Sprintf("m%d", i), c.Owner, "visitor", "", "held elsewhere", crdt.Timestamp{Wall: time.Now().UnixMilli() + int64(i), Node: "r1"})
			if _, err := replica.Apply(ctx, store.Change{Kind: store.Send, Workspace: "ws1", Conversation: c.ID, Participant: c.Owner, Message: m}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Replicas out of reach: unavailable, not not_found, and nothing held.
	f.set(true, false)
	r := v.ref()
	v.send(map[string]any{"type": "resume", "ref": r, "conversation": conv, "after": 0})
	if m := v.expect("error", refIs(r)); m["code"] != "unavailable" {
		t.Fatalf("resume with the replicas out of reach: %v, want unavailable", m)
	}
	if _, err := e.st.Conversation("ws1", conv); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("held after a failed fetch: %v", err)
	}

	// Reachable again: the same connection's retry replays the history
	// and the send is acknowledged.
	f.set(false, false)
	r = v.ref()
	v.send(map[string]any{"type": "resume", "ref": r, "conversation": conv, "after": 0})
	for i := range 3 {
		v.expect("deliver", msgIs(fmt.Sprintf("m%d", i)))
	}
	v.expect("resumed", refIs(r))
	v.say(conv, "m-000003", "after the fetch")
	if got := f.called(); len(got) != 2 || got[1] != conv+"/"+owner {
		t.Fatalf("fetches %v, want two of %s for its owner", got, conv)
	}

	// Another visitor's conversation: not_found, and not held here.
	r = v.ref()
	v.send(map[string]any{"type": "send", "ref": r, "conversation": theirs, "id": "x-000001", "body": "mine?"})
	if m := v.expect("error", refIs(r)); m["code"] != "not_found" {
		t.Fatalf("send to another visitor's conversation: %v, want not_found", m)
	}
	if _, err := e.st.Conversation("ws1", theirs); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another visitor's conversation held after their fetch: %v", err)
	}
	// Even a fetch that brings it: the gateway's owner check stands.
	f.set(false, true)
	r = v.ref()
	v.send(map[string]any{"type": "resume", "ref": r, "conversation": theirs, "after": 0})
	if m := v.expect("error", refIs(r)); m["code"] != "not_found" {
		t.Fatalf("resume of another visitor's conversation: %v, want not_found", m)
	}
	f.set(false, false)
	// An agent is given any, each message once: the events a fetch
	// brings reach the workspace's agents live, held back behind the
	// replay.
	ag := e.agent(t, "ws1")
	r = ag.ref()
	ag.send(map[string]any{"type": "resume", "ref": r, "conversation": third, "after": 0})
	got := map[string]int{}
	for {
		m, err := ag.next(5 * time.Second)
		if err != nil {
			t.Fatalf("the agent's resume: %v (seen %v)", err, ag.seen)
		}
		if m["ref"] == r {
			break
		}
		if m["type"] == "deliver" {
			got[m["message"].(map[string]any)["id"].(string)]++
		}
	}
	if got["m0"] != 1 || got["m1"] != 1 || got["m2"] != 1 || len(got) != 3 {
		t.Fatalf("the agent's resume of a fetched conversation delivered %v, want m0..m2 once", got)
	}
	ag.none("deliver", 100*time.Millisecond)

	if got := f.called(); got[len(got)-1] != third+"/" {
		t.Fatalf("the agent's fetch was %s, want %s for any owner", got[len(got)-1], third)
	}

	// Unknown IDs: not_found, and past maxFetchMisses (counting the
	// other visitor's conversation above) not asked about any more.
	before := len(f.called())
	for i := range maxFetchMisses + 3 {
		r = v.ref()
		v.send(map[string]any{"type": "typing", "ref": r, "conversation": fmt.Sprintf("c_%024x", 0x100+i), "typing": true})
		if m := v.expect("error", refIs(r)); m["code"] != "not_found" {
			t.Fatalf("typing in an unknown conversation: %v, want not_found", m)
		}
	}
	if asked := len(f.called()) - before; asked != maxFetchMisses-1 {
		t.Fatalf("%d unknown conversations asked about, want %d", asked, maxFetchMisses-1)
	}
}
