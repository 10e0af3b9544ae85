// Package redact keeps visitors' personal data out of Parley's logs. Chat logs
// are kept, shipped and read far more widely than the conversations
// themselves, so they must never hold a visitor's name, e-mail address, phone
// number, card number, IBAN or message text; Handler wraps a log/slog.Handler and scrubs every
// record before it is written.
package redact

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Markers that String puts in place of what it removes.
const (
	emailMarker = "[email]"
	phoneMarker = "[phone]"
)

// emailRE matches an e-mail address: local@domain.tld, where the top-level
// domain is at least two letters. It is deliberately loose about the local
// part (any of A-Z a-z 0-9 . _ % + -) so that it errs towards redacting.
// Non-ASCII (internationalised) addresses are not recognised.
var emailRE = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}`)

// phoneCandidateRE matches a run of ASCII digit groups joined by at most one
// space, dot or dash, optionally with parentheses and a leading "+". Every
// match is only a candidate: phoneSpans decides which parts of it are phone
// numbers.
var phoneCandidateRE = regexp.MustCompile(`(?:\+|\(\+?)?[0-9]+(?:\)?[ .\-]?\(?[0-9]+)*`)

// Limits on the number of digits in a phone number. E.164 allows at most 15.
const (
	minPhoneDigits = 7
	maxPhoneDigits = 15
	// Without a leading "+", the first group of a phone number (area code,
	// trunk or international prefix) has at most this many digits.
	maxFirstGroup = 5
)

// String returns s with every e-mail address replaced by "[email]", every
// card number by "[card]", every IBAN by "[iban]" (each checked: Luhn for
// cards, mod 97 for IBANs; see redactPayments) and every phone number by
// "[phone]":
//
//	String("mail ada@example.com or +44 20 7946 0958") == "mail [email] or [phone]"
//
// E-mail addresses are local@domain.tld (ASCII). Phone numbers are found with a
// heuristic that prefers a few false positives to leaking a number. A span of
// text is a phone number when all of these hold:
//
//   - it is digit groups joined by single spaces, dots or dashes, with
//     optional parentheses, e.g. "+44 20 7946 0958", "(555) 123-4567",
//     "555-123-4567", "555.123.4567", "0049 30 1234567", "+15551234567";
//   - it has 7 to 15 digits;
//   - it starts with "+", or it has at least two digit groups of which the
//     first has at most 5 digits (a bare "1048576" is a count, not a phone);
//   - if only dots separate the groups there are at least three of them
//     (so "1732424795.123456" and "+0.000123456" are numbers);
//   - it does not start with a date (2026-11-24, 24.11.2026) and does not
//     contain a dotted IPv4 address (10.0.0.1);
//   - it is not glued to a larger token: the character before it is not a
//     letter, digit or "_", nor (unless the number starts with "+") one of
//     "- . / )" or a ":" that follows a digit; and the character after it is
//     not a letter, digit or "_", nor one of ". - : /" followed by a letter
//     or digit.
//
// So timestamps ("2026-11-24T05:06:35Z", "2026-11-24 05:06:35"), durations
// ("1m2.5s"), versions ("1.25.0"), host:port pairs ("127.0.0.1:8080"), plain
// counts ("1048576") and hex identifiers ("c_9f3a2b41…") are left alone.
// Known false positives: several numbers that are separated only by single
// spaces and total 7 or more digits ("ids 1234 5678"), and numbers written
// with thousands separators ("1 048 576", "1.048.576").
//
// String is idempotent: String(String(s)) == String(s), and its result holds
// no e-mail address.
func String(s string) string {
	// Redact until nothing changes. Every change removes an "@" (an e-mail
	// match holds exactly one, the marker none) or at least 7 digits, so
	// this ends; usually after one pass plus one pass that finds nothing.
	// Iterating makes String idempotent even where a marker changes the
	// context of its neighbours (e.g. "a@b.co555-123-4567": the phone
	// number is glued to a letter until the address before it is replaced).
	for {
		r := redactOnce(s)
		if r == s {
			return s
		}
		s = r
	}
}

// redactOnce replaces the e-mail addresses, then the phone numbers, found in
// one scan of s.
func redactOnce(s string) string {
	hasAt, digits := false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '@':
			hasAt = true
		case '0' <= c && c <= '9':
			digits++
		}
	}
	if hasAt {
		s = emailRE.ReplaceAllLiteralString(s, emailMarker)
	}
	s = redactPayments(s, digits)
	if digits < minPhoneDigits {
		return s
	}
	var b strings.Builder
	last := 0
	for _, c := range phoneCandidateRE.FindAllStringIndex(s, -1) {
		for _, sp := range phoneSpans(s, c[0], c[1]) {
			if b.Len() == 0 {
				b.Grow(len(s))
			}
			b.WriteString(s[last:sp[0]])
			b.WriteString(phoneMarker)
			last = sp[1]
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// phoneSpans returns the [start, end) spans of s[cs:ce], a phoneCandidateRE
// match, that are phone numbers, in order and not overlapping. From each
// digit group in turn it takes the longest valid span starting there.
func phoneSpans(s string, cs, ce int) [][2]int {
	// The maximal digit runs of the candidate.
	var runs [][2]int
	for i := cs; i < ce; {
		if !isDigit(s[i]) {
			i++
			continue
		}
		j := i
		for j < ce && isDigit(s[j]) {
			j++
		}
		runs = append(runs, [2]int{i, j})
		i = j
	}
	var spans [][2]int
	for i := 0; i < len(runs); {
		best, bestStart := -1, 0
		digits := 0
		for j := i; j < len(runs); j++ {
			digits += runs[j][1] - runs[j][0]
			if digits > maxPhoneDigits {
				break
			}
			if start, ok := phoneSpan(s, cs, runs, i, j, digits); ok {
				best, bestStart = j, start
			}
		}
		if best < 0 {
			i++
			continue
		}
		spans = append(spans, [2]int{bestStart, runs[best][1]})
		i = best + 1
	}
	return spans
}

// phoneSpan reports whether digit runs i..j (holding digits digits) of a
// candidate starting at cs form a phone number, and where its text starts.
func phoneSpan(s string, cs int, runs [][2]int, i, j, digits int) (start int, ok bool) {
	if digits < minPhoneDigits {
		return 0, false
	}
	end := runs[j][1]
	// The prefix: the candidate's leading "+", "(" or "(+" for the first
	// run, a "(" just before the run otherwise.
	start = runs[i][0]
	if i == 0 {
		start = cs
	} else if s[start-1] == '(' {
		start--
	}
	plus := s[start] == '+' || strings.HasPrefix(s[start:], "(+")
	if s[start] == '(' && !strings.Contains(s[start:end], ")") {
		// An unclosed "(" is not part of the number: "(5551234567".
		start++
		if s[start] == '+' {
			plus = true
		}
	}
	groups := j - i + 1
	if !plus && (groups < 2 || runs[i][1]-runs[i][0] > maxFirstGroup) {
		return 0, false
	}
	if groups > 1 {
		dotsOnly := true
		for k := i; k < j; k++ {
			if s[runs[k][1]:runs[k+1][0]] != "." {
				dotsOnly = false
				break
			}
		}
		if dotsOnly && groups < 3 {
			return 0, false // a decimal number
		}
		if !plus && startsWithDate(s, runs[i:j+1]) {
			return 0, false
		}
		if hasIPv4(s, runs[i:j+1]) {
			return 0, false
		}
	}
	if !freeBefore(s, start, s[start] == '+') || !freeAfter(s, end) {
		return 0, false
	}
	return start, true
}

// startsWithDate reports whether the first three runs are a date:
// yyyy-mm-dd, dd-mm-yyyy or mm-dd-yyyy, with "-" or "." between them.
func startsWithDate(s string, runs [][2]int) bool {
	if len(runs) < 3 {
		return false
	}
	sep := s[runs[0][1]:runs[1][0]]
	if (sep != "-" && sep != ".") || s[runs[1][1]:runs[2][0]] != sep {
		return false
	}
	a, b, c := s[runs[0][0]:runs[0][1]], s[runs[1][0]:runs[1][1]], s[runs[2][0]:runs[2][1]]
	year := func(x string) bool { return len(x) == 4 && (x[:2] == "19" || x[:2] == "20") }
	small := func(x string, max int) bool {
		if len(x) > 2 {
			return false
		}
		n := 0
		for i := 0; i < len(x); i++ {
			n = n*10 + int(x[i]-'0')
		}
		return 1 <= n && n <= max
	}
	return year(a) && small(b, 12) && small(c, 31) ||
		year(c) && small(a, 31) && small(b, 31)
}

// hasIPv4 reports whether the runs contain four consecutive groups of 1 to 3
// digits joined by single dots, like 192.168.0.1.
func hasIPv4(s string, runs [][2]int) bool {
	n := 0
	for k, r := range runs {
		switch {
		case r[1]-r[0] > 3:
			n = 0
		case k > 0 && n > 0 && s[runs[k-1][1]:r[0]] == ".":
			n++
		default:
			n = 1
		}
		if n == 4 {
			return true
		}
	}
	return false
}

// freeBefore reports whether a phone number may start at s[i]: it must not
// continue a word, a number or a dotted, dashed or slashed token. A number
// that starts with "+" only has to be clear of words and numbers.
func freeBefore(s string, i int, plus bool) bool {
	if i == 0 {
		return true
	}
	r, n := utf8.DecodeLastRuneInString(s[:i])
	if plus {
		return !isWordRune(r)
	}
	switch r {
	case '-', '.', '/', ')':
		return false
	case ':': // 05:06:35, host:8080
		r2, _ := utf8.DecodeLastRuneInString(s[:i-n])
		return !unicode.IsDigit(r2)
	}
	return !isWordRune(r)
}

// freeAfter reports whether a phone number may end just before s[i].
func freeAfter(s string, i int) bool {
	if i == len(s) {
		return true
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	switch r {
	case '.', '-', ':', '/':
		if i+n == len(s) {
			return true
		}
		r2, _ := utf8.DecodeRuneInString(s[i+n:])
		return !unicode.IsLetter(r2) && !unicode.IsDigit(r2)
	}
	return !isWordRune(r)
}

func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
