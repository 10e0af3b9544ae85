package store

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"testing"

	"parley/crdt"

	"pgregory.net/rapid"
)

func TestLocalEventsAreStamped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	s := openTest(t, Config{Path: path, Origin: "n1"})
	if err := s.CreateConversation(ctx, Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg(fmt.Sprintf("m%d", i), "v:a", "x", int64(i))}); err != nil {
			t.Fatal(err)
		}
	}
	s.Apply(ctx, Change{Kind: Edit, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: crdt.Message{ID: "m1"}, Body: "y", TS: crdt.Timestamp{Wall: 9, Node: "n1"}})
	evs, _, _ := s.Events("ws1", "c1", 0, 10)
	for i, e := range evs {
		if e.Stamp != (Stamp{Origin: "n1", OSeq: uint64(i + 1)}) {
			t.Errorf("event %d stamped %+v", i, e.Stamp)
		}
	}
	if f, _ := s.Frontier("ws1", "c1"); !maps.Equal(f, map[string]uint64{"n1": 4}) {
		t.Fatalf("frontier %v", f)
	}
	// Receipts travel as vectors: seq -> vector on one node, back on another.
	if v, err := s.VectorAt("ws1", "c1", evs[1].Seq); err != nil || !maps.Equal(v, map[string]uint64{"n1": 2}) {
		t.Fatalf("vector at the second event: %v %v", v, err)
	}
	if seq, err := s.SeqCovered("ws1", "c1", map[string]uint64{"n1": 3, "n9": 7}); err != nil || seq != evs[2].Seq {
		t.Fatalf("seq covered by n1.3: %d %v", seq, err)
	}
	if seq, _ := s.SeqCovered("ws1", "c1", map[string]uint64{"n9": 7}); seq != 0 {
		t.Fatalf("seq covered by another origin only: %d", seq)
	}
	// What a replica missing n1's events from 2 on is sent.
	if oe, err := s.OriginEvents("ws1", "c1", "n1", 2, 10); err != nil || len(oe) != 3 || oe[0].Stamp.OSeq != 2 || oe[2].Message.ID != "m1" || oe[2].Message.Body != "y" {
		t.Fatalf("origin events from 2: %+v %v", oe, err)
	}
	// After an unclean stop the node stamps under a new name, from 1.
	close(s.stop)
	<-s.done
	s.db.Close()
	s.closeOne.Do(func() {})
	s2, err := Open(Config{Path: path, Origin: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Origin() != "n1~1" {
		t.Fatalf("origin after an unclean stop: %q", s2.Origin())
	}
	s2.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: msg("m9", "v:a", "x", 9)})
	if f, _ := s2.Frontier("ws1", "c1"); !maps.Equal(f, map[string]uint64{"n1": 4, "n1~1": 1}) {
		t.Fatalf("frontier %v", f)
	}
	// A client that had n1's four events resumes with exactly the new one.
	got, _, err := s2.EventsSince("ws1", "c1", map[string]uint64{"n1": 4}, 10)
	if err != nil || len(got) != 1 || got[0].Message.ID != "m9" {
		t.Fatalf("since n1.4: %+v %v", got, err)
	}
}

// replicaOp is one step of the convergence property: a participant's change
// on a replica, or a delivery of one origin's next events to another.
type replicaOp struct {
	replica int
	deliver bool
	from    int // deliver: whose events
	n       int // deliver: how many, in order (with a duplicate of the last)
	change  Change
}

// TestReplicasConverge runs two or three replicas that take changes of the
// same conversation (sends, and edits and deletes of their own authors'
// messages) and exchange events in random interleavings, each origin's in
// order, some twice. Once every event has reached every replica, all hold
// the same messages and the same frontier; and a client that saw part of
// one replica's log and resumes on another with its vector ends with every
// message's final state.
func TestReplicasConverge(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		n := rapid.IntRange(2, 3).Draw(rt, "replicas")
		var reps []*Store
		for i := range n {
			s, err := Open(Config{Path: filepath.Join(t.TempDir(), fmt.Sprintf("r%d.db", i)), Origin: fmt.Sprintf("n%d", i+1)})
			if err != nil {
				rt.Fatal(err)
			}
			defer s.Close()
			reps = append(reps, s)
		}
		conv := Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a", Created: 1}
		for _, s := range reps {
			if err := s.ensureConversation(ctx, conv); err != nil {
				rt.Fatal(err)
			}
		}
		// sent[i] is what replica i originated, in oseq order; got[j][i] how
		// many of those replica j has been given.
		sent := make([][]Event, n)
		got := make([][]int, n)
		for j := range got {
			got[j] = make([]int, n)
		}
		authors := []string{"v:a", "a:sam", "a:kim"}
		ids := []string{"m1", "m2", "m3", "m4"}
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for step := range steps {
			r := rapid.IntRange(0, n-1).Draw(rt, "replica")
			if rapid.Bool().Draw(rt, "deliver") {
				from := rapid.IntRange(0, n-1).Draw(rt, "from")
				if from == r || got[r][from] >= len(sent[from]) {
					continue
				}
				k := rapid.IntRange(1, len(sent[from])-got[r][from]).Draw(rt, "k")
				for _, e := range sent[from][got[r][from] : got[r][from]+k] {
					applyRemote(rt, reps[r], conv, e)
				}
				applyRemote(rt, reps[r], conv, sent[from][got[r][from]+k-1]) // a duplicate
				got[r][from] += k
				continue
			}
			id := rapid.SampledFrom(ids).Draw(rt, "id")
			author := rapid.SampledFrom(authors).Draw(rt, "author")
			ts := crdt.Timestamp{Wall: int64(step + 1), Node: reps[r].Origin()}
			ch := Change{Workspace: "ws1", Conversation: "c1", Participant: author}
			switch rapid.IntRange(0, 2).Draw(rt, "kind") {
			case 0:
				ch.Kind, ch.Message = Send, crdt.NewMessage(id, author, "visitor", "", "hello "+id, ts)
			case 1:
				ch.Kind, ch.Message, ch.Body, ch.TS = Edit, crdt.Message{ID: id}, fmt.Sprintf("edit %d", step), ts
			default:
				ch.Kind, ch.Message, ch.TS = Delete, crdt.Message{ID: id}, ts
			}
			res, err := reps[r].Apply(ctx, ch)
			if err != nil || !res.Changed {
				continue // not found, another's message, deleted, or a duplicate
			}
			evs, _, _ := reps[r].Events("ws1", "c1", res.Seq-1, 1)
			sent[r] = append(sent[r], evs[0])
		}
		// A client saw a prefix of replica 0's log.
		log0, _, _ := reps[0].Events("ws1", "c1", 0, 1000)
		seenN := rapid.IntRange(0, len(log0)).Draw(rt, "seen")
		client := map[string]crdt.Message{}
		vec := map[string]uint64{}
		for _, e := range log0[:seenN] {
			client[e.Message.ID] = mergeInto(client, e.Message)
			vec[e.Stamp.Origin] = max(vec[e.Stamp.Origin], e.Stamp.OSeq)
		}
		// Deliver everything still missing.
		for r := range reps {
			for from := range reps {
				if from == r {
					continue
				}
				for _, e := range sent[from][got[r][from]:] {
					applyRemote(rt, reps[r], conv, e)
				}
			}
		}
		want := messages(rt, reps[0])
		f0, _ := reps[0].Frontier("ws1", "c1")
		for i, s := range reps[1:] {
			if got := messages(rt, s); !maps.EqualFunc(got, want, crdt.Message.Equal) {
				rt.Fatalf("replica %d holds %v, replica 0 %v", i+1, got, want)
			}
			if f, _ := s.Frontier("ws1", "c1"); !maps.Equal(f, f0) {
				rt.Fatalf("replica %d frontier %v, replica 0 %v", i+1, f, f0)
			}
		}
		// The client resumes on the last replica with its vector.
		rest, _, err := reps[n-1].EventsSince("ws1", "c1", vec, 1000)
		if err != nil {
			rt.Fatal(err)
		}
		for _, e := range rest {
			if e.Stamp.OSeq <= vec[e.Stamp.Origin] {
				rt.Fatalf("resume sent %s.%d again, which the client's vector %v covers", e.Stamp.Origin, e.Stamp.OSeq, vec)
			}
			client[e.Message.ID] = mergeInto(client, e.Message)
		}
		if !maps.EqualFunc(client, want, crdt.Message.Equal) {
			rt.Fatalf("client after resuming elsewhere holds %v, want %v", client, want)
		}
	})
}

func applyRemote(rt *rapid.T, s *Store, conv Conversation, e Event) {
	if _, err := s.ApplyRemote(context.Background(), Remote{Conversation: conv, Stamp: e.Stamp, Message: e.Message}); err != nil {
		rt.Fatalf("apply %+v: %v", e.Stamp, err)
	}
}

func mergeInto(m map[string]crdt.Message, msg crdt.Message) crdt.Message {
	if cur, ok := m[msg.ID]; ok {
		return crdt.MergeMessage(cur, msg)
	}
	return msg
}

// messages is every message's current state in a store.
func messages(rt *rapid.T, s *Store) map[string]crdt.Message {
	evs, _, err := s.Events("ws1", "c1", 0, 10000)
	if err != nil {
		rt.Fatal(err)
	}
	out := map[string]crdt.Message{}
	for _, e := range evs {
		out[e.Message.ID] = e.Message // later events hold the merged state
	}
	return out
}

// TestSameIDFromTwoOrigins: a visitor's send reaches node a, which stalls;
// the resend with the same ID is accepted by node b with an earlier stamp;
// a resumes and accepts the frame still in its socket. Each then applies
// the other's event: both hold one message with b's stamp, not edited; b
// logs nothing for a's losing copy (no event, no deliver), a logs the
// merged state and reports its own creation as displaced.
func TestSameIDFromTwoOrigins(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := openTest(t, Config{Origin: "na"})
	b := openTest(t, Config{Origin: "nb"})
	conv := Conversation{Workspace: "ws1", ID: "c1", Owner: "v:a"}
	for _, s := range []*Store{a, b} {
		if err := s.CreateConversation(ctx, conv); err != nil {
			t.Fatal(err)
		}
	}
	send := func(s *Store, node string, wall int64) Event {
		m := crdt.NewMessage("x", "v:a", "visitor", "", "hi", crdt.Timestamp{Wall: wall, Node: node})
		if _, err := s.Apply(ctx, Change{Kind: Send, Workspace: "ws1", Conversation: "c1", Participant: "v:a", Message: m}); err != nil {
			t.Fatal(err)
		}
		evs, _, _ := s.Events("ws1", "c1", 0, 10)
		return evs[len(evs)-1]
	}
	ea := send(a, "na", 200)
	eb := send(b, "nb", 100)
	ra, err := a.ApplyRemote(ctx, Remote{Conversation: conv, Stamp: eb.Stamp, Message: eb.Message})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.ApplyRemote(ctx, Remote{Conversation: conv, Stamp: ea.Stamp, Message: ea.Message})
	if err != nil {
		t.Fatal(err)
	}
	if ra.Displaced != ea.Message.Created || !rb.Displaced.IsZero() || rb.Changed {
		t.Fatalf("a: displaced %v; b: displaced %v changed %v", ra.Displaced, rb.Displaced, rb.Changed)
	}
	want := eb.Message
	for name, s := range map[string]*Store{"a": a, "b": b} {
		evs, _, _ := s.Events("ws1", "c1", 0, 10)
		for _, e := range evs {
			if e.Message != want {
				t.Fatalf("%s: event %d holds %+v, want %+v", name, e.Seq, e.Message, want)
			}
		}
		if f, _ := s.Frontier("ws1", "c1"); !maps.Equal(f, map[string]uint64{"na": 1, "nb": 1}) {
			t.Fatalf("%s: frontier %v", name, f)
		}
	}
	if evs, _, _ := b.Events("ws1", "c1", 0, 10); len(evs) != 1 {
		t.Fatalf("b logged the losing copy: %+v", evs)
	}
	da, _, _ := a.StateDigest("ws1", "c1")
	db, _, _ := b.StateDigest("ws1", "c1")
	if da != db {
		t.Fatal("digests differ")
	}
}
