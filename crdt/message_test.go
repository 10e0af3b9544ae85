package crdt_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"parley/crdt"
	"parley/ident"

	"pgregory.net/rapid"
)

func msg(id string, created crdt.Timestamp, body string) crdt.Message {
	return crdt.NewMessage(id, "v:a", "visitor", "Ada", body, created)
}

func TestNewMessage(t *testing.T) {
	t.Parallel()
	m := crdt.NewMessage("m1", "a:sam", "agent", "Sam", "hello", ts(10, 0, "n"))
	want := crdt.Message{ID: "m1", Author: "a:sam", Role: "agent", Name: "Sam",
		Created: ts(10, 0, "n"), Body: "hello", BodyTS: ts(10, 0, "n")}
	if m != want {
		t.Fatalf("NewMessage = %+v, want %+v", m, want)
	}
	if m.Edited() || m.IsDeleted() {
		t.Fatalf("fresh message: Edited=%v IsDeleted=%v", m.Edited(), m.IsDeleted())
	}
}

func TestMessageJSONNames(t *testing.T) {
	t.Parallel()
	// Other packages put these states on the wire; the keys are protocol.
	b, err := json.Marshal(msg("m1", ts(1, 2, "n"), "hi").Delete(ts(3, 0, "n")))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"m1","author":"v:a","role":"visitor","name":"Ada","ts":{"w":1,"l":2,"n":"n"},` +
		`"body":"","body_ts":{"w":1,"l":2,"n":"n"},"del":{"w":3,"l":0,"n":"n"}}`
	if string(b) != want {
		t.Fatalf("json = %s\nwant   %s", b, want)
	}
}

func TestMergeMessageLWW(t *testing.T) {
	t.Parallel()
	base := msg("m1", ts(10, 0, "a"), "orig")
	tests := []struct {
		name       string
		a, b       crdt.Message
		wantBody   string
		wantBodyTS crdt.Timestamp
		wantDel    crdt.Timestamp
	}{
		{"later edit wins", base.Edit("one", ts(11, 0, "a")), base.Edit("two", ts(12, 0, "b")),
			"two", ts(12, 0, "b"), crdt.Timestamp{}},
		{"edit beats original", base, base.Edit("new", ts(11, 0, "a")),
			"new", ts(11, 0, "a"), crdt.Timestamp{}},
		{"logical breaks wall tie", base.Edit("x", ts(11, 1, "a")), base.Edit("y", ts(11, 0, "z")),
			"x", ts(11, 1, "a"), crdt.Timestamp{}},
		{"node breaks wall and logical tie", base.Edit("x", ts(11, 0, "b")), base.Edit("y", ts(11, 0, "a")),
			"x", ts(11, 0, "b"), crdt.Timestamp{}},
		{"identical stamps: greater body wins", base.Edit("apple", ts(11, 0, "a")), base.Edit("banana", ts(11, 0, "a")),
			"banana", ts(11, 0, "a"), crdt.Timestamp{}},
		{"edit at creation stamp ties with original", base, base.Edit("zzz", ts(10, 0, "a")),
			"zzz", ts(10, 0, "a"), crdt.Timestamp{}},
		{"delete beats earlier edit", base.Edit("e", ts(11, 0, "a")), base.Delete(ts(12, 0, "b")),
			"", ts(11, 0, "a"), ts(12, 0, "b")},
		{"delete beats later edit", base.Edit("e", ts(20, 0, "a")), base.Delete(ts(12, 0, "b")),
			"", ts(20, 0, "a"), ts(12, 0, "b")},
		{"delete with same stamp as edit", base.Edit("e", ts(11, 0, "a")), base.Delete(ts(11, 0, "a")),
			"", ts(11, 0, "a"), ts(11, 0, "a")},
		{"later tombstone kept", base.Delete(ts(12, 0, "a")), base.Delete(ts(13, 0, "a")),
			"", ts(10, 0, "a"), ts(13, 0, "a")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, got := range []crdt.Message{crdt.MergeMessage(tt.a, tt.b), crdt.MergeMessage(tt.b, tt.a)} {
				if got.Body != tt.wantBody || got.BodyTS != tt.wantBodyTS || got.Deleted != tt.wantDel {
					t.Errorf("got body %q@%v del %v, want %q@%v del %v",
						got.Body, got.BodyTS, got.Deleted, tt.wantBody, tt.wantBodyTS, tt.wantDel)
				}
				if got.ID != base.ID || got.Created != base.Created || got.Author != base.Author {
					t.Errorf("identity changed: %+v", got)
				}
			}
		})
	}
}

func TestMergeMessageForgedIdentity(t *testing.T) {
	t.Parallel()
	// Two writers reuse one ID; everyone must settle on the same author.
	a := crdt.NewMessage("m", "v:zed", "visitor", "Zed", "a", ts(5, 0, "n"))
	b := crdt.NewMessage("m", "a:amy", "agent", "Amy", "b", ts(5, 0, "n"))
	c := crdt.NewMessage("m", "v:zed", "visitor", "Zed", "c", ts(4, 0, "n"))
	tests := []struct {
		name       string
		x, y       crdt.Message
		wantAuthor string
		wantRole   ident.Role
		wantName   string
		wantTS     crdt.Timestamp
	}{
		{"same Created: smaller author", a, b, "a:amy", "agent", "Amy", ts(5, 0, "n")},
		{"earlier Created wins over author", b, c, "v:zed", "visitor", "Zed", ts(4, 0, "n")},
		{"name alone differs", a, crdt.NewMessage("m", "v:zed", "visitor", "Al", "x", ts(5, 0, "n")),
			"v:zed", "visitor", "Al", ts(5, 0, "n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, got := range []crdt.Message{crdt.MergeMessage(tt.x, tt.y), crdt.MergeMessage(tt.y, tt.x)} {
				if got.Author != tt.wantAuthor || got.Role != tt.wantRole || got.Name != tt.wantName || got.Created != tt.wantTS {
					t.Errorf("identity = %q %q %q %v", got.Author, got.Role, got.Name, got.Created)
				}
			}
		})
	}
}

func TestMergeMessageDifferentIDs(t *testing.T) {
	t.Parallel()
	a, b := msg("a", ts(9, 0, "n"), "x"), msg("b", ts(1, 0, "n"), "y")
	if got := crdt.MergeMessage(a, b); got != a {
		t.Errorf("MergeMessage(a, b) = %+v, want a", got)
	}
	if got := crdt.MergeMessage(b, a); got != a {
		t.Errorf("MergeMessage(b, a) = %+v, want a", got)
	}
}

func TestDeleteErasesText(t *testing.T) {
	t.Parallel()
	base := msg("m1", ts(10, 0, "a"), "secret")
	del := base.Delete(ts(11, 0, "a"))
	if del.Body != "" || !del.IsDeleted() {
		t.Fatalf("Delete delta = %+v: must carry no text", del)
	}
	if got := del.Delete(ts(10, 5, "a")); got != del {
		t.Errorf("an earlier Delete moved the tombstone back: %+v", got)
	}
	if got := del.Edit("back", ts(12, 0, "a")); got != del {
		t.Errorf("editing a tombstone = %+v, want it unchanged", got)
	}
	l := crdt.NewLog()
	l.Apply(base)
	l.Apply(del)
	// An edit raced with the delete and arrives later with a later stamp.
	if m, _ := l.Apply(base.Edit("secret v2", ts(13, 0, "b"))); m.Body != "" {
		t.Errorf("late edit revived text: %+v", m)
	}
	// A replica that saw only the edit, then the tombstone, erases it too.
	r := crdt.NewLog()
	r.Apply(base.Edit("secret v2", ts(13, 0, "b")))
	r.Apply(del)
	if m, _ := r.Get("m1"); m.Body != "" || !m.IsDeleted() {
		t.Errorf("replica kept text: %+v", m)
	}
	if !l.Equal(r) {
		t.Errorf("replicas differ:\n%+v\n%+v", l.Messages(), r.Messages())
	}
	// A non-normalised delta (tombstone with text) is erased on arrival.
	bad := base
	bad.Deleted = ts(11, 0, "x")
	if m, _ := crdt.NewLog().Apply(bad); m.Body != "" {
		t.Errorf("tombstone with text stored as %+v", m)
	}
}

func TestMessageEditedAndLess(t *testing.T) {
	t.Parallel()
	m := msg("b", ts(10, 0, "a"), "x")
	if !m.Edit("y", ts(11, 0, "a")).Edited() {
		t.Error("edit not reported as Edited")
	}
	tests := []struct {
		a, b crdt.Message
		want bool
	}{
		{msg("b", ts(10, 0, "a"), ""), msg("a", ts(11, 0, "a"), ""), true},
		{msg("b", ts(10, 0, "a"), ""), msg("a", ts(10, 0, "a"), ""), false},
		{msg("a", ts(10, 0, "a"), ""), msg("b", ts(10, 0, "a"), ""), true},
		{msg("a", ts(10, 0, "a"), ""), msg("a", ts(10, 0, "a"), ""), false},
	}
	for _, tt := range tests {
		if got := tt.a.Less(tt.b); got != tt.want {
			t.Errorf("%s@%v Less %s@%v = %v", tt.a.ID, tt.a.Created, tt.b.ID, tt.b.Created, got)
		}
	}
}

func TestLogApplyChanged(t *testing.T) {
	t.Parallel()
	base := msg("m1", ts(10, 0, "a"), "x")
	steps := []struct {
		d    crdt.Message
		want bool
	}{
		{base, true},
		{base, false},
		{base.Edit("y", ts(11, 0, "a")), true},
		{base.Edit("old", ts(10, 5, "a")), false},
		{base.Edit("y", ts(11, 0, "a")), false},
		{base.Delete(ts(12, 0, "a")), true},
		{base.Delete(ts(12, 0, "a")), false},
		{base.Delete(ts(11, 0, "a")), false},
		{base.Edit("z", ts(20, 0, "a")), true}, // invisible, but BodyTS moved
	}
	var l crdt.Log // the zero value is usable
	for i, s := range steps {
		before, _ := l.Get(s.d.ID)
		merged, changed := l.Apply(s.d)
		after, _ := l.Get(s.d.ID)
		if changed != s.want {
			t.Errorf("step %d: changed = %v, want %v", i, changed, s.want)
		}
		if merged != after || changed != (before != after) {
			t.Errorf("step %d: merged %+v, stored %+v, changed %v", i, merged, after, changed)
		}
	}
}

func TestLogMessagesOrder(t *testing.T) {
	t.Parallel()
	l := crdt.NewLog()
	for _, m := range []crdt.Message{
		msg("c", ts(20, 0, "a"), ""),
		msg("b", ts(10, 0, "b"), ""),
		msg("a", ts(10, 0, "b"), ""),
		msg("d", ts(10, 1, "a"), ""),
		msg("e", ts(10, 0, "a"), "").Delete(ts(30, 0, "a")),
		msg("f", ts(5, 0, "z"), "").Edit("later", ts(99, 0, "a")),
	} {
		l.Apply(m)
	}
	var got []string
	for _, m := range l.Messages() {
		got = append(got, m.ID)
	}
	if want := []string{"f", "e", "a", "b", "d", "c"}; !slices.Equal(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
	if !slices.IsSortedFunc(l.Messages(), func(a, b crdt.Message) int {
		if a.Less(b) {
			return -1
		}
		return 1
	}) {
		t.Fatal("Messages disagrees with Less")
	}
}

func TestLogDeltaSince(t *testing.T) {
	t.Parallel()
	l := crdt.NewLog()
	l.Apply(msg("old", ts(10, 0, "a"), "x"))
	l.Apply(msg("edited", ts(10, 0, "a"), "x").Edit("y", ts(30, 0, "a")))
	l.Apply(msg("deleted", ts(10, 0, "a"), "x").Delete(ts(40, 0, "a")))
	l.Apply(msg("new", ts(25, 0, "a"), "x"))
	l.Apply(msg("epoch", crdt.Timestamp{}, "x")) // never after anything
	tests := []struct {
		name  string
		since crdt.Timestamp
		want  []string
	}{
		{"zero is everything", crdt.Timestamp{}, []string{"epoch", "deleted", "edited", "old", "new"}},
		{"before all", ts(1, 0, ""), []string{"deleted", "edited", "old", "new"}},
		{"equal is not after", ts(10, 0, "a"), []string{"deleted", "edited", "new"}},
		{"edit and delete count", ts(26, 0, "a"), []string{"deleted", "edited"}},
		{"tombstone only", ts(30, 0, "a"), []string{"deleted"}},
		{"node tie-break", ts(40, 0, "0"), []string{"deleted"}},
		{"nothing newer", ts(40, 0, "a"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, m := range l.DeltaSince(tt.since) {
				got = append(got, m.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("DeltaSince(%v) = %v, want %v", tt.since, got, tt.want)
			}
		})
	}
}

func TestLogEqualAndDigest(t *testing.T) {
	t.Parallel()
	base := []crdt.Message{msg("a", ts(1, 0, "n"), "x"), msg("b", ts(2, 0, "n"), "y")}
	l := logOf(base)
	tests := []struct {
		name  string
		other *crdt.Log
		equal bool
	}{
		{"same, other order", logOf([]crdt.Message{base[1], base[0]}), true},
		{"clone", l.Clone(), true},
		{"missing element", logOf(base[:1]), false},
		{"extra element", logOf(append(slices.Clone(base), msg("c", ts(3, 0, "n"), ""))), false},
		{"edited body", logOf([]crdt.Message{base[0], base[1].Edit("z", ts(3, 0, "n"))}), false},
		{"same body, later stamp", logOf([]crdt.Message{base[0], base[1].Edit("y", ts(3, 0, "n"))}), false},
		{"deleted", logOf([]crdt.Message{base[0], base[1].Delete(ts(3, 0, "n"))}), false},
		{"name differs", logOf([]crdt.Message{base[0], crdt.NewMessage("b", "v:a", "visitor", "Al", "y", ts(2, 0, "n"))}), false},
		{"fields shifted between strings", logOf([]crdt.Message{base[0],
			crdt.NewMessage("b", "v:", "avisitor", "Ada", "y", ts(2, 0, "n"))}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := l.Equal(tt.other); got != tt.equal {
				t.Errorf("Equal = %v, want %v", got, tt.equal)
			}
			if got := tt.other.Equal(l); got != tt.equal {
				t.Errorf("reverse Equal = %v, want %v", got, tt.equal)
			}
			if got := l.Digest() == tt.other.Digest(); got != tt.equal {
				t.Errorf("digests equal = %v, want %v", got, tt.equal)
			}
		})
	}
	if !crdt.NewLog().Equal(nil) || crdt.NewLog().Digest() != new(crdt.Log).Digest() {
		t.Error("empty logs differ")
	}
}

func TestLogDigestCoversEveryField(t *testing.T) {
	t.Parallel()
	base := crdt.NewMessage("m", "v:a", "visitor", "Ada", "", ts(5, 1, "n"))
	digest := func(m crdt.Message) [32]byte { return logOf([]crdt.Message{m}).Digest() }
	tests := []struct {
		name   string
		mutate func(*crdt.Message)
	}{
		{"ID", func(m *crdt.Message) { m.ID = "m2" }},
		{"Author", func(m *crdt.Message) { m.Author = "v:b" }},
		{"Role", func(m *crdt.Message) { m.Role = "agent" }},
		{"Name", func(m *crdt.Message) { m.Name = "" }},
		{"Created.Wall", func(m *crdt.Message) { m.Created.Wall++ }},
		{"Created.Logical", func(m *crdt.Message) { m.Created.Logical++ }},
		{"Created.Node", func(m *crdt.Message) { m.Created.Node = "o" }},
		{"Body", func(m *crdt.Message) { m.Body = "x" }},
		{"BodyTS.Wall", func(m *crdt.Message) { m.BodyTS.Wall++ }},
		{"BodyTS.Logical", func(m *crdt.Message) { m.BodyTS.Logical++ }},
		{"BodyTS.Node", func(m *crdt.Message) { m.BodyTS.Node = "o" }},
		{"Deleted", func(m *crdt.Message) { m.Deleted = ts(6, 0, "n") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := base
			tt.mutate(&m)
			if digest(m) == digest(base) {
				t.Errorf("digest ignores %s", tt.name)
			}
		})
	}
}

func TestLogCloneIndependent(t *testing.T) {
	t.Parallel()
	l := logOf([]crdt.Message{msg("a", ts(1, 0, "n"), "x")})
	c := l.Clone()
	c.Apply(msg("b", ts(2, 0, "n"), "y"))
	if l.Len() != 1 || c.Len() != 2 {
		t.Fatalf("clone shares state: %d, %d", l.Len(), c.Len())
	}
}

func TestMergeMessageProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		g := genMessage("m")
		a, b, c := g.Draw(t, "a"), g.Draw(t, "b"), g.Draw(t, "c")
		ab := crdt.MergeMessage(a, b)
		if !ab.Equal(crdt.MergeMessage(b, a)) {
			t.Fatalf("not commutative: %+v vs %+v", ab, crdt.MergeMessage(b, a))
		}
		if !crdt.MergeMessage(ab, c).Equal(crdt.MergeMessage(a, crdt.MergeMessage(b, c))) {
			t.Fatal("not associative")
		}
		if !crdt.MergeMessage(a, a).Equal(a) {
			t.Fatalf("not idempotent: %+v -> %+v", a, crdt.MergeMessage(a, a))
		}
		if !crdt.MergeMessage(ab, a).Equal(ab) {
			t.Fatal("not an upper bound")
		}
		if want := modelMessage([]crdt.Message{a, b, c}); !crdt.MergeMessage(ab, c).Equal(want) {
			t.Fatalf("join = %+v, spec says %+v", crdt.MergeMessage(ab, c), want)
		}
		if ab.IsDeleted() && ab.Body != "" {
			t.Fatalf("tombstone kept text: %+v", ab)
		}
		if ab.BodyTS.Compare(ab.Created) < 0 {
			t.Fatalf("BodyTS before Created: %+v", ab)
		}
	})
}

func TestMergeMessageDifferentIDsProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		g := genMessage("m1", "m2", "m3")
		a, b, c := g.Draw(t, "a"), g.Draw(t, "b"), g.Draw(t, "c")
		if !crdt.MergeMessage(a, b).Equal(crdt.MergeMessage(b, a)) {
			t.Fatal("not commutative")
		}
		if !crdt.MergeMessage(crdt.MergeMessage(a, b), c).Equal(crdt.MergeMessage(a, crdt.MergeMessage(b, c))) {
			t.Fatal("not associative")
		}
	})
}

func TestLogMergeProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		g := rapid.Custom(func(t *rapid.T) *crdt.Log {
			return logOf(rapid.SliceOfN(genMessage("m1", "m2", "m3", "m4"), 0, 8).Draw(t, "deltas"))
		})
		a, b, c := g.Draw(t, "a"), g.Draw(t, "b"), g.Draw(t, "c")
		checkJoinLaws(t, a, b, c)
		// Random pairs often differ in a single field, so this catches a
		// digest that leaves a field out.
		if a.Equal(b) != (a.Digest() == b.Digest()) {
			t.Fatalf("Equal = %v but digests equal = %v:\n%+v\n%+v", a.Equal(b), !a.Equal(b), a.Messages(), b.Messages())
		}
		if join(a, b).Digest() != join(b, a).Digest() {
			t.Fatal("digest depends on merge order")
		}
	})
}

func TestLogDeltasConverge(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		deltas := rapid.SliceOfN(genMessage("m1", "m2", "m3"), 1, 24).Draw(t, "deltas")
		a, b := crdt.NewLog(), crdt.NewLog()
		for _, d := range deliver(t, "to_a", deltas) {
			before, _ := a.Get(d.ID)
			merged, changed := a.Apply(d)
			if changed != (merged != before) {
				t.Fatalf("Apply(%+v) changed=%v but %+v -> %+v", d, changed, before, merged)
			}
		}
		for _, d := range deliver(t, "to_b", deltas) {
			b.Apply(d)
		}
		// A third replica learns through state merges of partial replicas.
		c := crdt.NewLog()
		for _, part := range rapid.Permutation(split(t, deltas, 3)).Draw(t, "parts") {
			c.Merge(logOf(deliver(t, "part", part)))
		}
		for name, r := range map[string]*crdt.Log{"b": b, "c": c} {
			if !a.Equal(r) {
				t.Fatalf("replica %s diverged:\n%+v\n%+v", name, a.Messages(), r.Messages())
			}
			if a.Digest() != r.Digest() {
				t.Fatalf("replica %s: equal states, different digests", name)
			}
			if !slices.Equal(a.Messages(), r.Messages()) {
				t.Fatalf("replica %s: Messages differ", name)
			}
		}
		want := modelLog(deltas)
		if a.Len() != len(want) {
			t.Fatalf("Len = %d, want %d", a.Len(), len(want))
		}
		for id, w := range want {
			if got, ok := a.Get(id); !ok || got != w {
				t.Fatalf("element %s = %+v, spec says %+v", id, got, w)
			}
		}
		msgs := a.Messages()
		for i := 1; i < len(msgs); i++ {
			if !msgs[i-1].Less(msgs[i]) {
				t.Fatalf("Messages out of order at %d", i)
			}
		}
	})
}

func TestLogDeltaSinceCatchesUp(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		deltas := rapid.SliceOfN(genMessage("m1", "m2", "m3"), 1, 24).Draw(t, "deltas")
		since := genTS().Draw(t, "since")
		full := logOf(deliver(t, "full", deltas))
		// The lagging replica has every update stamped up to since, plus
		// an arbitrary sample of newer ones.
		var seen []crdt.Message
		for _, d := range deltas {
			if !latest(d).After(since) || rapid.Bool().Draw(t, "extra") {
				seen = append(seen, d)
			}
		}
		lag := logOf(deliver(t, "lag", seen))
		delta := full.DeltaSince(since)
		for _, d := range deliver(t, "delta", delta) {
			lag.Apply(d)
		}
		if !lag.Equal(full) || lag.Digest() != full.Digest() {
			t.Fatalf("DeltaSince(%v) = %+v left replica behind:\n%+v\n%+v", since, delta, lag.Messages(), full.Messages())
		}
		for _, d := range delta {
			if !latest(d).After(since) {
				t.Fatalf("DeltaSince(%v) sent %+v, nothing newer in it", since, d)
			}
		}
		if len(full.DeltaSince(crdt.Timestamp{})) != full.Len() {
			t.Fatal("DeltaSince(zero) is not everything")
		}
	})
}

func latest(m crdt.Message) crdt.Timestamp {
	return slices.MaxFunc([]crdt.Timestamp{m.Created, m.BodyTS, m.Deleted}, crdt.Timestamp.Compare)
}

// TestSameIDFromManyOrigins is a client resending one message through
// several nodes (the first stalls, the resend lands elsewhere, both accept
// it): each node creates the ID with its own clock. Every replica, whatever
// it receives in whatever order, duplicated or late, holds one message with
// the earliest creation's stamp and text, not shown as edited; an edit by
// the author, made on any node, still wins over every creation.
func TestSameIDFromManyOrigins(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		nodes := []string{"n1", "n2", "n3"}
		var creations []crdt.Message
		for i, n := range rapid.Permutation(nodes).Draw(t, "nodes")[:rapid.IntRange(2, 3).Draw(t, "origins")] {
			ts := crdt.Timestamp{Wall: rapid.Int64Range(1, 3).Draw(t, fmt.Sprintf("wall%d", i)), Node: n}
			creations = append(creations, crdt.NewMessage("m", "v:a", "visitor", "Ada", "hello", ts))
		}
		first := slices.MinFunc(creations, func(a, b crdt.Message) int { return a.Created.Compare(b.Created) })
		deltas := slices.Clone(creations)
		var edit *crdt.Message
		if rapid.Bool().Draw(t, "edited") {
			// The author edits the copy one node holds, after that copy.
			base := rapid.SampledFrom(creations).Draw(t, "edit_base")
			e := base.Edit("hello!", crdt.Timestamp{Wall: base.Created.Wall + rapid.Int64Range(0, 2).Draw(t, "edit_after"), Logical: 1, Node: base.Created.Node})
			edit = &e
			deltas = append(deltas, e)
		}
		var replicas []*crdt.Log
		for i := range 3 {
			replicas = append(replicas, logOf(deliver(t, fmt.Sprintf("to%d", i), deltas)))
		}
		for i, r := range replicas {
			if r.Len() != 1 {
				t.Fatalf("replica %d holds %d messages", i, r.Len())
			}
			got, _ := r.Get("m")
			if got.Created != first.Created || got.Author != "v:a" {
				t.Fatalf("replica %d: created %v, want the earliest %v", i, got.Created, first.Created)
			}
			switch {
			case edit == nil && (got.Edited() || got.Body != "hello" || got.BodyTS != first.Created):
				t.Fatalf("replica %d: a message accepted twice looks edited: %+v", i, got)
			case edit != nil && (!got.Edited() || got.Body != "hello!"):
				t.Fatalf("replica %d: the edit lost to a creation: %+v", i, got)
			}
			if !r.Equal(replicas[0]) {
				t.Fatalf("replicas 0 and %d differ", i)
			}
		}
	})
}
