package crdt

import (
	"testing"

	"pgregory.net/rapid"
)

func genVector(t *rapid.T, label string) Vector {
	return rapid.MapOf(rapid.StringMatching(`n[1-5]`), rapid.Uint64Range(0, 50)).Draw(t, label)
}

func TestVectorLaws(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genVector(t, "a"), genVector(t, "b"), genVector(t, "c")
		merge := func(x, y Vector) Vector { z := x.Clone(); z.Merge(y); return z }
		if !merge(a, b).Equal(merge(b, a)) {
			t.Fatal("merge not commutative")
		}
		if !merge(merge(a, b), c).Equal(merge(a, merge(b, c))) {
			t.Fatal("merge not associative")
		}
		if !merge(a, a).Equal(a) {
			t.Fatal("merge not idempotent")
		}
		// Behind names exactly what a lacks of b, and nothing once merged.
		for o, first := range a.Behind(b) {
			if first != a[o]+1 || b[o] < first {
				t.Fatalf("behind %s: %d with a=%v b=%v", o, first, a, b)
			}
		}
		if len(merge(a, b).Behind(b)) != 0 {
			t.Fatal("a merged vector is behind what it merged")
		}
		// The string form round-trips, canonically.
		back, err := ParseVector(a.String())
		if err != nil || !back.Equal(a) || back.String() != a.String() {
			t.Fatalf("%v -> %q -> %v, %v", a, a.String(), back, err)
		}
	})
}

func TestParseVectorRefuses(t *testing.T) {
	t.Parallel()
	for _, s := range []string{",", "n1", "n1.", "n1.0", "n1.01", "N1.3", "n1.3,n1.4", "n1.-3", "n1.3;n2.4", "n1.18446744073709551616", ".3"} {
		if _, err := ParseVector(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

func FuzzParseVector(f *testing.F) {
	for _, s := range []string{"", "n1.17,n2.5", "a.1", "n1.3,n1.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVector(s)
		if err != nil {
			return
		}
		again, err := ParseVector(v.String())
		if err != nil || !again.Equal(v) {
			t.Fatalf("%q: re-encoded %q does not parse back: %v", s, v.String(), err)
		}
	})
}
