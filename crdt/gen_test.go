package crdt_test

import (
	"cmp"
	"slices"

	"parley/crdt"
	"parley/ident"

	"pgregory.net/rapid"
)

// The generators draw from tiny alphabets on purpose: convergence bugs hide in
// collisions (shared IDs, equal timestamps, equal bodies), which large
// alphabets almost never produce.

func genTS() *rapid.Generator[crdt.Timestamp] {
	return rapid.Custom(func(t *rapid.T) crdt.Timestamp {
		return crdt.Timestamp{
			Wall:    rapid.Int64Range(1, 4).Draw(t, "wall"),
			Logical: rapid.Uint32Range(0, 1).Draw(t, "logical"),
			Node:    rapid.SampledFrom([]string{"n1", "n2"}).Draw(t, "node"),
		}
	})
}

// genMessage draws a valid message state: a creation, maybe an edit stamped
// no earlier than the creation, maybe a tombstone no earlier than it either. Identity fields are drawn
// per state, so two states of one ID may disagree as if forged.
func genMessage(ids ...string) *rapid.Generator[crdt.Message] {
	return rapid.Custom(func(t *rapid.T) crdt.Message {
		created := genTS().Draw(t, "created")
		m := crdt.NewMessage(
			rapid.SampledFrom(ids).Draw(t, "id"),
			rapid.SampledFrom([]string{"v:a", "a:s"}).Draw(t, "author"),
			rapid.SampledFrom([]ident.Role{ident.Visitor, ident.Agent}).Draw(t, "role"),
			rapid.SampledFrom([]string{"", "Ada"}).Draw(t, "name"),
			rapid.SampledFrom([]string{"hi", "yo", ""}).Draw(t, "body"),
			created,
		)
		m.Internal = rapid.Bool().Draw(t, "internal")
		m.Kind = rapid.SampledFrom([]string{"", "", crdt.KindStatus}).Draw(t, "kind")
		if rapid.Bool().Draw(t, "edit") {
			ts := genTS().Draw(t, "edit_ts")
			if ts.Compare(created) < 0 {
				ts = created
			}
			m = m.Edit(rapid.SampledFrom([]string{"hi", "yo", "ed"}).Draw(t, "edit_body"), ts)
		}
		if rapid.IntRange(0, 3).Draw(t, "delete") == 0 {
			// A node deletes a message it holds: never before its creation.
			ts := genTS().Draw(t, "delete_ts")
			if ts.Compare(created) < 0 {
				ts = created
			}
			m = m.Delete(ts)
		}
		return m
	})
}

// deliver returns deltas in a random order with random extra copies mixed in,
// as an unreliable network would: reordered, duplicated and late.
func deliver[E any](t *rapid.T, label string, deltas []E) []E {
	seq := slices.Clone(deltas)
	if len(deltas) > 0 {
		seq = append(seq, rapid.SliceOfN(rapid.SampledFrom(deltas), 0, len(deltas)).Draw(t, label+"_dups")...)
	}
	return rapid.Permutation(seq).Draw(t, label)
}

// split partitions deltas into up to n random groups, each delivered to its
// own replica, for tests that join whole states rather than deltas.
func split[E any](t *rapid.T, deltas []E, n int) [][]E {
	groups := make([][]E, n)
	for _, d := range deltas {
		g := rapid.IntRange(0, n-1).Draw(t, "group")
		groups[g] = append(groups[g], d)
	}
	return groups
}

// modelMessage is the join of a set of states of one ID written as a
// whole-set reduction straight from the specification, independently of
// MergeMessage's pairwise code.
// modelMessage is the specification of MergeMessage: everything said of an
// ID, joined at once. The identity and, while nothing was edited, the text
// are the earliest creation's (smallest identity, then largest text); an
// edit (BodyTS after the state's own Created) beats every creation and the
// latest edit wins; the tombstone is the latest.
func modelMessage(states []crdt.Message) crdt.Message {
	creation := slices.MinFunc(states, func(a, b crdt.Message) int {
		// Of a forged pair, the internal one wins (the safe side).
		external := func(m crdt.Message) int {
			if m.Internal {
				return 0
			}
			return 1
		}
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Author, b.Author),
			cmp.Compare(a.Role, b.Role), cmp.Compare(a.Name, b.Name),
			cmp.Compare(external(a), external(b)), cmp.Compare(a.Kind, b.Kind), cmp.Compare(b.Body, a.Body))
	})
	out := creation
	out.BodyTS = creation.Created
	for _, s := range states {
		if !s.BodyTS.After(s.Created) {
			continue
		}
		if c := s.BodyTS.Compare(out.BodyTS); !out.BodyTS.After(out.Created) || c > 0 || (c == 0 && s.Body > out.Body) {
			out.Body, out.BodyTS = s.Body, s.BodyTS
		}
	}
	del := slices.MaxFunc(states, func(a, b crdt.Message) int { return a.Deleted.Compare(b.Deleted) })
	out.Deleted = del.Deleted
	if !out.Deleted.IsZero() {
		out.Body = ""
	}
	return out
}

func modelLog(deltas []crdt.Message) map[string]crdt.Message {
	byID := map[string][]crdt.Message{}
	for _, d := range deltas {
		byID[d.ID] = append(byID[d.ID], d)
	}
	out := map[string]crdt.Message{}
	for id, ms := range byID {
		out[id] = modelMessage(ms)
	}
	return out
}

func logOf(deltas []crdt.Message) *crdt.Log {
	l := crdt.NewLog()
	for _, d := range deltas {
		l.Apply(d)
	}
	return l
}

// lattice is the shape shared by the replicated containers.
type lattice[S any] interface {
	Merge(S)
	Equal(S) bool
	Clone() S
}

func join[S lattice[S]](a, b S) S {
	c := a.Clone()
	c.Merge(b)
	return c
}

// checkJoinLaws asserts that Merge is a join: commutative, associative,
// idempotent, an upper bound of its inputs, and free of side effects on its
// argument.
func checkJoinLaws[S lattice[S]](t *rapid.T, a, b, c S) {
	t.Helper()
	bBefore := b.Clone()
	ab := join(a, b)
	if !b.Equal(bBefore) {
		t.Fatal("Merge modified its argument")
	}
	if !ab.Equal(join(b, a)) {
		t.Fatal("merge not commutative")
	}
	if !join(ab, c).Equal(join(a, join(b, c))) {
		t.Fatal("merge not associative")
	}
	if !join(a, a).Equal(a) {
		t.Fatal("merge not idempotent")
	}
	self := a.Clone()
	self.Merge(self)
	if !self.Equal(a) {
		t.Fatal("merging a state into itself changed it")
	}
	if !join(ab, a).Equal(ab) || !join(ab, b).Equal(ab) {
		t.Fatal("merge is not an upper bound of its inputs")
	}
}
