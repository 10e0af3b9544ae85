package redact

import (
	"regexp"
	"strings"
)

// Markers for payment data.
const (
	cardMarker = "[card]"
	ibanMarker = "[iban]"
)

// cardCandidateRE matches 13 to 19 ASCII digits, each pair joined by at
// most one space or dash: how card numbers are written ("4111 1111 1111
// 1111", "4111-1111-1111-1111", "4111111111111111").
var cardCandidateRE = regexp.MustCompile(`[0-9](?:[ \-]?[0-9]){12,18}`)

// ibanCandidateRE matches a country code, two check digits and 11 to 30
// letters or digits, in groups of any size joined by single spaces ("DE89
// 3704 0044 0532 0130 00", "GB82WEST12345698765432").
var ibanCandidateRE = regexp.MustCompile(`[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}`)

// redactPayments replaces card numbers (13 to 19 digits that pass the Luhn
// check) and IBANs (that pass their ISO 7064 mod-97 check) with markers,
// unless glued to a larger token (a letter, digit or "_" just before or
// after). A number that fails its check is left to the phone rules.
func redactPayments(s string, digits int) string {
	if digits >= 13 {
		s = replaceChecked(s, cardCandidateRE, cardMarker, luhn)
	}
	if digits >= 2 && hasUpperPair(s) {
		s = replaceChecked(s, ibanCandidateRE, ibanMarker, ibanValid)
	}
	return s
}

func replaceChecked(s string, re *regexp.Regexp, marker string, valid func(string) bool) string {
	var b strings.Builder
	last := 0
	for _, m := range re.FindAllStringIndex(s, -1) {
		i, j := m[0], m[1]
		if (i > 0 && isWordByte(s[i-1])) || (j < len(s) && isWordByte(s[j])) {
			continue
		}
		if !valid(s[i:j]) {
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(marker)
		last = j
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func isWordByte(c byte) bool {
	return c == '_' || isDigit(c) || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func hasUpperPair(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' && 'A' <= s[i+1] && s[i+1] <= 'Z' {
			return true
		}
	}
	return false
}

// luhn checks a card number's digits (separators ignored).
func luhn(s string) bool {
	sum, n, double := 0, 0, false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if !isDigit(c) {
			continue
		}
		d := int(c - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
		n++
	}
	return n >= 13 && n <= 19 && sum%10 == 0
}

// ibanValid checks an IBAN (spaces ignored): 15 to 34 characters, the
// first four moved to the end, letters as 10..35, the number mod 97 is 1.
func ibanValid(s string) bool {
	t := strings.ReplaceAll(s, " ", "")
	if len(t) < 15 || len(t) > 34 {
		return false
	}
	rem := 0
	for _, c := range t[4:] + t[:4] {
		switch {
		case '0' <= c && c <= '9':
			rem = (rem*10 + int(c-'0')) % 97
		case 'A' <= c && c <= 'Z':
			rem = (rem*100 + int(c-'A') + 10) % 97
		default:
			return false
		}
	}
	return rem == 1
}
