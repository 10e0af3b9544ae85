package ident

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// The regular expressions each validator replaced, where they were written
// out (the gateway, the node's API, the control plane, parleyctl, the
// bench): the validators must say exactly what they said.
var grammars = []struct {
	name  string
	valid func(string) bool
	re    *regexp.Regexp
}{
	{"ValidID", ValidID, regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)},
	{"ValidOrigin", ValidOrigin, regexp.MustCompile(`^[a-z0-9_~-]{1,64}$`)},
	{"ValidRegion", ValidRegion, regexp.MustCompile(`^[a-z0-9-]{1,32}$`)},
	{"ValidConversation", ValidConversation, regexp.MustCompile(`^c_[0-9a-f]{24}$`)},
	{"ValidConversationRef", ValidConversationRef, regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)},
}

// alphabet holds every class the grammars tell apart, and the bytes at
// their edges.
const alphabet = "azAZ09fg_-~c./:`{@[\n\x00\xff é"

func TestGrammarsAsTheirExpressions(t *testing.T) {
	t.Parallel()
	for _, g := range grammars {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			rapid.Check(t, func(t *rapid.T) {
				var s string
				if rapid.Bool().Draw(t, "minted") {
					// Near a gateway's conversation ID, where a random string
					// seldom lands.
					s = "c_" + rapid.StringMatching(`[0-9a-g]{22,26}`).Draw(t, "hex")
				} else {
					s = rapid.StringOfN(rapid.SampledFrom([]rune(alphabet)), 0, 70, -1).Draw(t, "s")
				}
				if got, want := g.valid(s), g.re.MatchString(s); got != want {
					t.Fatalf("%s(%q) = %v, the expression says %v", g.name, s, got, want)
				}
			})
		})
	}
}

func TestGrammarEdges(t *testing.T) {
	t.Parallel()
	for _, g := range grammars {
		for _, s := range []string{"", "a", strings.Repeat("a", 32), strings.Repeat("a", 33), strings.Repeat("a", 64), strings.Repeat("a", 65),
			"n1~2", "Demo", "c_0123456789abcdef01234567", "c_0123456789abcdef0123456", "c_0123456789ABCDEF01234567", "a\n", "ws-1_x"} {
			if got, want := g.valid(s), g.re.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v, the expression says %v", g.name, s, got, want)
			}
		}
	}
}

func FuzzGrammars(f *testing.F) {
	for _, s := range []string{"", "acme", "n1~3", "c_0123456789abcdef01234567", "eu-west", "A_b-9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, g := range grammars {
			if got, want := g.valid(s), g.re.MatchString(s); got != want {
				t.Fatalf("%s(%q) = %v, the expression says %v", g.name, s, got, want)
			}
		}
	})
}

// TestImportsNothingOfParley keeps ident at the bottom: every layer may
// import it.
func TestImportsNothingOfParley(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "parley/") && p != "parley/ident" {
			t.Errorf("ident depends on %s", p)
		}
	}
}
