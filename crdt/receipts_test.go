package crdt_test

import (
	"maps"
	"testing"

	"parley/crdt"

	"pgregory.net/rapid"
)

func TestReceiptsOnlyForward(t *testing.T) {
	t.Parallel()
	steps := []struct {
		p       string
		seq     uint64
		changed bool
		want    uint64
	}{
		{"v:a", 0, false, 0},
		{"v:a", 5, true, 5},
		{"v:a", 5, false, 5},
		{"v:a", 3, false, 5},
		{"a:s", 2, true, 2},
		{"v:a", 6, true, 6},
		{"v:a", 0, false, 6},
	}
	var r crdt.Receipts // the zero value is usable
	for i, s := range steps {
		if got := r.Set(s.p, s.seq); got != s.changed {
			t.Errorf("step %d: Set(%q, %d) = %v, want %v", i, s.p, s.seq, got, s.changed)
		}
		if got := r.Get(s.p); got != s.want {
			t.Errorf("step %d: Get(%q) = %d, want %d", i, s.p, got, s.want)
		}
	}
	if got, want := r.All(), map[string]uint64{"v:a": 6, "a:s": 2}; !maps.Equal(got, want) {
		t.Errorf("All = %v, want %v", got, want)
	}
}

func TestReceiptsMergeAndEqual(t *testing.T) {
	t.Parallel()
	of := func(kv map[string]uint64) *crdt.Receipts {
		r := crdt.NewReceipts()
		for p, s := range kv {
			r.Set(p, s)
		}
		return r
	}
	tests := []struct {
		name  string
		a, b  map[string]uint64
		want  map[string]uint64
		equal bool
	}{
		{"both empty", nil, nil, map[string]uint64{}, true},
		{"disjoint", map[string]uint64{"a": 1}, map[string]uint64{"b": 2}, map[string]uint64{"a": 1, "b": 2}, false},
		{"max wins", map[string]uint64{"a": 7, "b": 1}, map[string]uint64{"a": 3, "b": 4}, map[string]uint64{"a": 7, "b": 4}, false},
		{"same", map[string]uint64{"a": 7}, map[string]uint64{"a": 7}, map[string]uint64{"a": 7}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := of(tt.a), of(tt.b)
			if got := a.Equal(b); got != tt.equal {
				t.Errorf("Equal = %v, want %v", got, tt.equal)
			}
			a.Merge(b)
			if got := a.All(); !maps.Equal(got, tt.want) {
				t.Errorf("merged = %v, want %v", got, tt.want)
			}
			if !maps.Equal(b.All(), of(tt.b).All()) {
				t.Error("Merge modified its argument")
			}
		})
	}
	r := of(map[string]uint64{"a": 1})
	r.All()["a"] = 99
	if r.Get("a") != 1 {
		t.Error("All is not a copy")
	}
	if !crdt.NewReceipts().Equal(nil) || crdt.NewReceipts().Equal(r) {
		t.Error("Equal against empty/nil wrong")
	}
}

func TestReceiptsCloneIndependent(t *testing.T) {
	t.Parallel()
	r := crdt.NewReceipts()
	r.Set("a", 1)
	c := r.Clone()
	c.Set("a", 2)
	c.Set("b", 1)
	if r.Get("a") != 1 || r.Get("b") != 0 || c.Get("a") != 2 {
		t.Fatalf("clone shares state: %v, %v", r.All(), c.All())
	}
}

type receipt struct {
	p   string
	seq uint64
}

func genReceipt() *rapid.Generator[receipt] {
	return rapid.Custom(func(t *rapid.T) receipt {
		return receipt{rapid.SampledFrom([]string{"v:a", "a:s", "a:t"}).Draw(t, "p"), rapid.Uint64Range(0, 5).Draw(t, "seq")}
	})
}

func receiptsOf(ops []receipt) *crdt.Receipts {
	r := crdt.NewReceipts()
	for _, o := range ops {
		r.Set(o.p, o.seq)
	}
	return r
}

func TestReceiptsMergeProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		g := rapid.Map(rapid.SliceOfN(genReceipt(), 0, 8), receiptsOf)
		checkJoinLaws(t, g.Draw(t, "a"), g.Draw(t, "b"), g.Draw(t, "c"))
	})
}

func TestReceiptsDeltasConverge(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		ops := rapid.SliceOfN(genReceipt(), 1, 20).Draw(t, "ops")
		a, b := crdt.NewReceipts(), crdt.NewReceipts()
		for _, o := range deliver(t, "to_a", ops) {
			before := a.Get(o.p)
			if changed := a.Set(o.p, o.seq); changed != (o.seq > before) {
				t.Fatalf("Set(%q, %d) over %d reported %v", o.p, o.seq, before, changed)
			}
			if a.Get(o.p) < before {
				t.Fatalf("receipt of %q went back from %d", o.p, before)
			}
		}
		for _, o := range deliver(t, "to_b", ops) {
			b.Set(o.p, o.seq)
		}
		c := crdt.NewReceipts()
		for _, part := range split(t, ops, 3) {
			c.Merge(receiptsOf(deliver(t, "part", part)))
		}
		want := map[string]uint64{}
		for _, o := range ops {
			if o.seq > want[o.p] {
				want[o.p] = o.seq
			}
		}
		for name, r := range map[string]*crdt.Receipts{"a": a, "b": b, "c": c} {
			if !maps.Equal(r.All(), want) {
				t.Fatalf("replica %s = %v, want %v", name, r.All(), want)
			}
			if !r.Equal(a) {
				t.Fatalf("replica %s not Equal to a", name)
			}
		}
	})
}
