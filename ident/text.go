package ident

import (
	"unicode"
	"unicode/utf8"
)

// Text a person reads (message bodies, names of visitors, operators,
// workspaces and brands, saved replies) is refused when it holds:
//   - control characters, which have no place in chat text and can forge
//     log lines (bodies may hold newlines and tabs);
//   - the bidirectional embeddings, overrides and isolates (U+202A..U+202E,
//     U+2066..U+2069), which reorder the text around them as it is shown:
//     a U+202E makes "exe.txt" read "txt.exe";
//   - in names, which identify a person to another, every other invisible
//     format character (zero-width spaces, word joiners, U+FEFF), but the
//     zero-width joiner and non-joiner that emoji sequences and some
//     scripts need.
//
// Marks that only hint a direction (U+200E, U+200F, U+061C) stay:
// right-to-left writers use them. The pages neutralise the same characters
// in text stored before this rule (web/static/client.js, plain).

// PrintableBody says whether s may be a message body or another multi-line
// text: no control character but newline and tab, no bidirectional
// control, valid UTF-8.
func PrintableBody(s string) bool { return printable(s, true) }

// PrintableName says whether s may be a name or another single-line text:
// no control character, no bidirectional control, no invisible format
// character but ZWJ, ZWNJ and the direction marks, valid UTF-8.
func PrintableName(s string) bool { return printable(s, false) }

func printable(s string, multiline bool) bool {
	// ASCII first, a byte at a time: its only characters refused are the
	// controls (U+0000..U+001F and U+007F).
	i := 0
	for ; i < len(s) && s[i] < utf8.RuneSelf; i++ {
		if c := s[i]; (c < 0x20 || c == 0x7f) && !(multiline && (c == '\n' || c == '\t')) {
			return false
		}
	}
	for _, r := range s[i:] {
		if multiline && (r == '\n' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || r == utf8.RuneError || BidiControl(r) {
			return false
		}
		if !multiline && unicode.Is(unicode.Cf, r) && !directionMark(r) && r != '\u200c' && r != '\u200d' {
			return false
		}
	}
	return true
}

// BidiControl says whether r is a bidirectional embedding, override or
// isolate (U+202A..U+202E, U+2066..U+2069).
func BidiControl(r rune) bool {
	return (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

func directionMark(r rune) bool { return r == '\u200e' || r == '\u200f' || r == '\u061c' }
