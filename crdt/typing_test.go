package crdt_test

import (
	"cmp"
	"slices"
	"testing"

	"parley/crdt"

	"pgregory.net/rapid"
)

func typing(p string, on bool, stamp crdt.Timestamp, exp int64) crdt.TypingState {
	return crdt.TypingState{Participant: p, Typing: on, TS: stamp, Expires: exp}
}

func TestTypingExpiry(t *testing.T) {
	t.Parallel()
	ty := crdt.NewTyping()
	ty.Apply(typing("v:a", true, ts(1000, 0, "n"), 6000))
	ty.Apply(typing("a:s", true, ts(1000, 0, "n"), 3000))
	ty.Apply(typing("a:t", false, ts(1000, 0, "n"), 9000))
	tests := []struct {
		now  int64
		want []string
	}{
		{1000, []string{"a:s", "v:a"}},
		{2999, []string{"a:s", "v:a"}},
		{3000, []string{"v:a"}},
		{5999, []string{"v:a"}},
		{6000, nil},
	}
	for _, tt := range tests {
		if got := ty.Active(tt.now); !slices.Equal(got, tt.want) {
			t.Errorf("Active(%d) = %v, want %v", tt.now, got, tt.want)
		}
	}
}

func TestTypingApplyLWW(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		first  crdt.TypingState
		second crdt.TypingState
		active bool // at now = 1500
	}{
		{"stop after start", typing("p", true, ts(1000, 0, "n"), 5000), typing("p", false, ts(1001, 0, "n"), 0), false},
		{"stale start after stop", typing("p", false, ts(1001, 0, "n"), 0), typing("p", true, ts(1000, 0, "n"), 5000), false},
		{"renewal extends", typing("p", true, ts(1000, 0, "n"), 1200), typing("p", true, ts(1100, 0, "n"), 5000), true},
		{"stale renewal ignored", typing("p", true, ts(1100, 0, "n"), 1200), typing("p", true, ts(1000, 0, "n"), 5000), false},
		{"tie: stop wins", typing("p", true, ts(1000, 0, "n"), 5000), typing("p", false, ts(1000, 0, "n"), 5000), false},
		{"tie: stop wins reversed", typing("p", false, ts(1000, 0, "n"), 5000), typing("p", true, ts(1000, 0, "n"), 5000), false},
		{"tie: later expiry wins", typing("p", true, ts(1000, 0, "n"), 1200), typing("p", true, ts(1000, 0, "n"), 5000), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ty := crdt.NewTyping()
			if !ty.Apply(tt.first) {
				t.Fatal("first Apply reported no change")
			}
			ty.Apply(tt.second)
			if got := slices.Contains(ty.Active(1500), "p"); got != tt.active {
				t.Errorf("active = %v, want %v", got, tt.active)
			}
			if ty.Apply(tt.first) || ty.Apply(tt.second) {
				t.Error("re-applying a seen state reported a change")
			}
		})
	}
}

func TestTypingEqual(t *testing.T) {
	t.Parallel()
	a, b := crdt.NewTyping(), crdt.NewTyping()
	a.Apply(typing("p", true, ts(1, 0, "n"), 5))
	if a.Equal(b) || b.Equal(a) {
		t.Error("empty equals non-empty")
	}
	b.Apply(typing("p", true, ts(1, 0, "n"), 6))
	if a.Equal(b) {
		t.Error("different expiry compared equal")
	}
	if !crdt.NewTyping().Equal(nil) || !a.Equal(a.Clone()) {
		t.Error("Equal wrong for nil or clone")
	}
}

func TestTypingCloneIndependent(t *testing.T) {
	t.Parallel()
	ty := crdt.NewTyping()
	ty.Apply(typing("a", true, ts(1, 0, "n"), 5))
	c := ty.Clone()
	c.Apply(typing("a", false, ts(2, 0, "n"), 0))
	c.Apply(typing("b", true, ts(2, 0, "n"), 5))
	if got := ty.Active(0); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("clone shares state: original Active = %v", got)
	}
}

func genTyping() *rapid.Generator[crdt.TypingState] {
	return rapid.Custom(func(t *rapid.T) crdt.TypingState {
		return typing(
			rapid.SampledFrom([]string{"v:a", "a:s", "a:t"}).Draw(t, "p"),
			rapid.Bool().Draw(t, "on"),
			genTS().Draw(t, "ts"),
			rapid.Int64Range(0, 6).Draw(t, "exp"),
		)
	})
}

func typingOf(states []crdt.TypingState) *crdt.Typing {
	ty := crdt.NewTyping()
	for _, s := range states {
		ty.Apply(s)
	}
	return ty
}

// modelTyping picks each participant's winner from the whole set at once:
// latest TS, and among equal TS, stopped over typing, then later expiry.
func modelTyping(states []crdt.TypingState) map[string]crdt.TypingState {
	byP := map[string][]crdt.TypingState{}
	for _, s := range states {
		byP[s.Participant] = append(byP[s.Participant], s)
	}
	out := map[string]crdt.TypingState{}
	for p, ss := range byP {
		out[p] = slices.MaxFunc(ss, func(a, b crdt.TypingState) int {
			stopped := func(s crdt.TypingState) int {
				if s.Typing {
					return 0
				}
				return 1
			}
			return cmp.Or(a.TS.Compare(b.TS), cmp.Compare(stopped(a), stopped(b)), cmp.Compare(a.Expires, b.Expires))
		})
	}
	return out
}

func TestTypingMergeProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		g := rapid.Map(rapid.SliceOfN(genTyping(), 0, 8), typingOf)
		checkJoinLaws(t, g.Draw(t, "a"), g.Draw(t, "b"), g.Draw(t, "c"))
	})
}

func TestTypingDeltasConverge(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		states := rapid.SliceOfN(genTyping(), 1, 20).Draw(t, "states")
		a := typingOf(deliver(t, "to_a", states))
		b := typingOf(deliver(t, "to_b", states))
		c := crdt.NewTyping()
		for _, part := range split(t, states, 3) {
			c.Merge(typingOf(deliver(t, "part", part)))
		}
		want := modelTyping(states)
		now := rapid.Int64Range(0, 7).Draw(t, "now")
		var wantActive []string
		for p, s := range want {
			if s.Typing && now < s.Expires {
				wantActive = append(wantActive, p)
			}
		}
		slices.Sort(wantActive)
		for name, r := range map[string]*crdt.Typing{"a": a, "b": b, "c": c} {
			if !r.Equal(a) {
				t.Fatalf("replica %s diverged", name)
			}
			for p, w := range want {
				if got, ok := r.Get(p); !ok || got != w {
					t.Fatalf("replica %s: %s = %+v, spec says %+v", name, p, got, w)
				}
			}
			if got := r.Active(now); !slices.Equal(got, wantActive) {
				t.Fatalf("replica %s: Active(%d) = %v, want %v", name, now, got, wantActive)
			}
		}
	})
}
