package crdt_test

import (
	"cmp"
	"slices"
	"testing"

	"parley/crdt"

	"pgregory.net/rapid"
)

func lease(id, p string, stamp crdt.Timestamp, exp int64) crdt.Lease {
	return crdt.Lease{ID: id, Participant: p, TS: stamp, Expires: exp}
}

func TestPresenceLeases(t *testing.T) {
	t.Parallel()
	// Each step applies a lease and then checks who is online at "at".
	steps := []struct {
		name    string
		l       crdt.Lease
		changed bool
		at      int64
		online  []string
	}{
		{"first lease", lease("c1", "v:a", ts(1000, 0, "n"), 4000), true, 1000, []string{"v:a"}},
		{"duplicate", lease("c1", "v:a", ts(1000, 0, "n"), 4000), false, 1000, []string{"v:a"}},
		{"second participant", lease("c2", "a:s", ts(1000, 0, "n"), 4000), true, 1000, []string{"a:s", "v:a"}},
		{"expiry", lease("c2", "a:s", ts(1000, 0, "n"), 4000), false, 4000, nil},
		{"renew after expiry revives", lease("c1", "v:a", ts(4500, 0, "n"), 8000), true, 4500, []string{"v:a"}},
		{"stale renewal ignored", lease("c1", "v:a", ts(2000, 0, "n"), 9999), false, 8000, nil},
		{"second tab", lease("c3", "v:a", ts(5000, 0, "n"), 9000), true, 5000, []string{"v:a"}},
		{"first tab ends, second keeps online", lease("c1", "v:a", ts(5100, 0, "n"), 0), true, 5100, []string{"v:a"}},
		{"stale renewal after end ignored", lease("c1", "v:a", ts(5050, 0, "n"), 9999), false, 5100, []string{"v:a"}},
		{"second tab ends", lease("c3", "v:a", ts(5200, 0, "n"), 0), true, 5200, nil},
		{"end tie beats renewal", lease("c3", "v:a", ts(5200, 0, "n"), 9999), false, 5200, nil},
	}
	p := crdt.NewPresence()
	for _, s := range steps {
		if got := p.Apply(s.l); got != s.changed {
			t.Errorf("%s: Apply changed = %v, want %v", s.name, got, s.changed)
		}
		if got := p.Online(s.at); !slices.Equal(got, s.online) {
			t.Errorf("%s: Online(%d) = %v, want %v", s.name, s.at, got, s.online)
		}
		for _, who := range []string{"v:a", "a:s"} {
			if got := p.IsOnline(who, s.at); got != slices.Contains(s.online, who) {
				t.Errorf("%s: IsOnline(%q) = %v", s.name, who, got)
			}
		}
	}
}

func TestPresenceOnlineDeduplicates(t *testing.T) {
	t.Parallel()
	var p crdt.Presence // the zero value is usable
	p.Apply(lease("c1", "v:a", ts(1, 0, "n"), 100))
	p.Apply(lease("c2", "v:a", ts(1, 0, "n"), 100))
	p.Apply(lease("c3", "a:s", ts(1, 0, "n"), 100))
	if got, want := p.Online(50), []string{"a:s", "v:a"}; !slices.Equal(got, want) {
		t.Fatalf("Online = %v, want %v", got, want)
	}
}

func TestPresencePrune(t *testing.T) {
	t.Parallel()
	build := func() *crdt.Presence {
		p := crdt.NewPresence()
		p.Apply(lease("expired-long-ago", "v:a", ts(100, 0, "n"), 1000))
		p.Apply(lease("expired-recently", "v:b", ts(100, 0, "n"), 4500))
		p.Apply(lease("live", "v:c", ts(100, 0, "n"), 9000))
		p.Apply(lease("ended-long-ago", "v:d", ts(1500, 0, "n"), 0))
		p.Apply(lease("ended-recently", "v:e", ts(4800, 0, "n"), 0))
		return p
	}
	tests := []struct {
		name   string
		now    int64
		grace  int64
		pruned int
		kept   []string
	}{
		{"grace keeps recent tombstones", 5000, 1000, 2, []string{"ended-recently", "expired-recently", "live"}},
		{"boundary is kept", 5000, 4000, 0, []string{"ended-long-ago", "ended-recently", "expired-long-ago", "expired-recently", "live"}},
		{"zero grace", 5000, 0, 4, []string{"live"}},
		{"everything expired", 20000, 1000, 5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := build()
			if got := p.Prune(tt.now, tt.grace); got != tt.pruned {
				t.Errorf("Prune = %d, want %d", got, tt.pruned)
			}
			var kept []string
			for _, id := range []string{"ended-long-ago", "ended-recently", "expired-long-ago", "expired-recently", "live"} {
				if _, ok := p.Get(id); ok {
					kept = append(kept, id)
				}
			}
			if !slices.Equal(kept, tt.kept) {
				t.Errorf("kept %v, want %v", kept, tt.kept)
			}
			if got, want := p.Online(tt.now), build().Online(tt.now); !slices.Equal(got, want) {
				t.Errorf("Prune changed Online: %v, want %v", got, want)
			}
		})
	}
}

func TestPresencePruneThenLateDelta(t *testing.T) {
	t.Parallel()
	// With grace at least the lease term, a renewal delivered after its
	// lease's tombstone was pruned cannot bring the participant back.
	const term, grace = 3000, 3000
	p := crdt.NewPresence()
	renewal := lease("c1", "v:a", ts(2000, 0, "n"), 2000+term)
	p.Apply(lease("c1", "v:a", ts(2100, 0, "n"), 0))
	now := int64(2100 + grace + 1)
	if p.Prune(now, grace) != 1 {
		t.Fatal("tombstone not pruned")
	}
	p.Apply(renewal)
	if p.IsOnline("v:a", now) {
		t.Fatal("late renewal resurrected a pruned lease")
	}
}

func TestPresenceEqual(t *testing.T) {
	t.Parallel()
	a, b := crdt.NewPresence(), crdt.NewPresence()
	a.Apply(lease("c1", "v:a", ts(1, 0, "n"), 5))
	if a.Equal(b) || b.Equal(a) {
		t.Error("empty equals non-empty")
	}
	b.Apply(lease("c1", "v:a", ts(1, 0, "n"), 6))
	if a.Equal(b) {
		t.Error("different expiry compared equal")
	}
	if !crdt.NewPresence().Equal(nil) || !a.Equal(a.Clone()) {
		t.Error("Equal wrong for nil or clone")
	}
}

func TestPresenceCloneIndependent(t *testing.T) {
	t.Parallel()
	p := crdt.NewPresence()
	p.Apply(lease("c1", "v:a", ts(1, 0, "n"), 5))
	c := p.Clone()
	c.Apply(lease("c1", "v:a", ts(2, 0, "n"), 0))
	c.Apply(lease("c2", "a:s", ts(2, 0, "n"), 5))
	if got := p.Online(0); !slices.Equal(got, []string{"v:a"}) {
		t.Fatalf("clone shares state: original Online = %v", got)
	}
}

func genLease() *rapid.Generator[crdt.Lease] {
	return rapid.Custom(func(t *rapid.T) crdt.Lease {
		l := lease(
			rapid.SampledFrom([]string{"c1", "c2", "c3"}).Draw(t, "id"),
			rapid.SampledFrom([]string{"v:a", "a:s"}).Draw(t, "p"),
			genTS().Draw(t, "ts"),
			rapid.Int64Range(0, 6).Draw(t, "exp"),
		)
		l.Away = rapid.Bool().Draw(t, "away")
		return l
	})
}

func presenceOf(ls []crdt.Lease) *crdt.Presence {
	p := crdt.NewPresence()
	for _, l := range ls {
		p.Apply(l)
	}
	return p
}

// modelPresence picks each lease's winner from the whole set at once: latest
// TS, and among equal TS an end, then the later expiry, then away, then
// participant.
func modelPresence(ls []crdt.Lease) map[string]crdt.Lease {
	byID := map[string][]crdt.Lease{}
	for _, l := range ls {
		byID[l.ID] = append(byID[l.ID], l)
	}
	out := map[string]crdt.Lease{}
	for id, ls := range byID {
		out[id] = slices.MaxFunc(ls, func(a, b crdt.Lease) int {
			ended := func(l crdt.Lease) bool { return l.Expires == 0 }
			endRank := func(l crdt.Lease) int {
				if ended(l) {
					return 1
				}
				return 0
			}
			awayRank := func(l crdt.Lease) int {
				if l.Away {
					return 1
				}
				return 0
			}
			return cmp.Or(a.TS.Compare(b.TS), cmp.Compare(endRank(a), endRank(b)),
				cmp.Compare(a.Expires, b.Expires), cmp.Compare(awayRank(a), awayRank(b)), cmp.Compare(a.Participant, b.Participant))
		})
	}
	return out
}

func TestPresenceMergeProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		g := rapid.Map(rapid.SliceOfN(genLease(), 0, 8), presenceOf)
		checkJoinLaws(t, g.Draw(t, "a"), g.Draw(t, "b"), g.Draw(t, "c"))
	})
}

func TestPresenceDeltasConverge(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		ls := rapid.SliceOfN(genLease(), 1, 20).Draw(t, "leases")
		a := presenceOf(deliver(t, "to_a", ls))
		b := presenceOf(deliver(t, "to_b", ls))
		c := crdt.NewPresence()
		for _, part := range split(t, ls, 3) {
			c.Merge(presenceOf(deliver(t, "part", part)))
		}
		want := modelPresence(ls)
		now := rapid.Int64Range(0, 7).Draw(t, "now")
		var wantOnline []string
		wantAvailable := map[string]bool{}
		for _, l := range want {
			if now < l.Expires && !slices.Contains(wantOnline, l.Participant) {
				wantOnline = append(wantOnline, l.Participant)
			}
			if now < l.Expires && !l.Away {
				wantAvailable[l.Participant] = true
			}
		}
		slices.Sort(wantOnline)
		for name, r := range map[string]*crdt.Presence{"a": a, "b": b, "c": c} {
			if !r.Equal(a) {
				t.Fatalf("replica %s diverged", name)
			}
			for id, w := range want {
				if got, ok := r.Get(id); !ok || got != w {
					t.Fatalf("replica %s: lease %s = %+v, spec says %+v", name, id, got, w)
				}
			}
			if got := r.Online(now); !slices.Equal(got, wantOnline) {
				t.Fatalf("replica %s: Online(%d) = %v, want %v", name, now, got, wantOnline)
			}
			for _, part := range []string{"v:a", "a:s"} {
				if got := r.IsAvailable(part, now); got != wantAvailable[part] {
					t.Fatalf("replica %s: IsAvailable(%s, %d) = %v, want %v", name, part, now, got, wantAvailable[part])
				}
			}
		}
	})
}
