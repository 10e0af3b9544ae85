package ident

import (
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestPrintable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, s   string
		multiline bool
		want      bool
	}{
		{"plain", "Hello, Ada", false, true},
		{"right-to-left text with marks", "שלום\u200f Ada", false, true},
		{"emoji sequence with ZWJ", "family 👨\u200d👩\u200d👧", false, true},
		{"persian with ZWNJ", "می\u200cخواهم", false, true},
		{"newline in a body", "line 1\nline 2\ttab", true, true},
		{"newline in a name", "Ada\nLovelace", false, false},
		{"NUL", "a\x00b", true, false},
		{"escape", "a\x1b[31mb", true, false},
		{"right-to-left override", "invoice_\u202efdp.exe", true, false},
		{"left-to-right embedding", "a\u202ab", true, false},
		{"pop directional formatting", "a\u202cb", true, false},
		{"isolates", "a\u2066b\u2069", true, false},
		{"zero-width space in a name", "Ad\u200bmin", false, false},
		{"zero-width space in a body", "Ad\u200bmin", true, true},
		{"word joiner in a name", "Ad\u2060min", false, false},
		{"invalid UTF-8", "a\xffb", true, false},
	} {
		got := PrintableName(c.s)
		if c.multiline {
			got = PrintableBody(c.s)
		}
		if got != c.want {
			t.Errorf("%s: %q (multi-line %v): printable %v, want %v", c.name, c.s, c.multiline, got, c.want)
		}
	}
}

// FuzzPrintableASCII: the byte-at-a-time reading of ASCII says what a
// rune-at-a-time reading says, for bodies and names.
func FuzzPrintableASCII(f *testing.F) {
	for _, s := range []string{"hello", "a\nb\tc", "a\x00b", "a\x7fb", "é\x01", "ok é", "\u202e", "x\u200by"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, multiline := range []bool{true, false} {
			want := true
			for _, r := range s {
				if multiline && (r == '\n' || r == '\t') {
					continue
				}
				if unicode.IsControl(r) || r == utf8.RuneError || BidiControl(r) ||
					!multiline && unicode.Is(unicode.Cf, r) && !directionMark(r) && r != '\u200c' && r != '\u200d' {
					want = false
					break
				}
			}
			if got := printable(s, multiline); got != want {
				t.Fatalf("%q (multiline %v): %v, rune by rune %v", s, multiline, got, want)
			}
		}
	})
}
