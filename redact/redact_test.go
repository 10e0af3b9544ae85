package redact

import (
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		// From the documentation.
		{"doc example", "mail ada@example.com or +44 20 7946 0958", "mail [email] or [phone]"},

		// E-mail addresses.
		{"email alone", "ada@example.com", "[email]"},
		{"email plus tag", "write to ada.lovelace+chat@mail.example.co.uk.", "write to [email]."},
		{"email upper case", "ADA_L@EXAMPLE.ORG", "[email]"},
		{"email in angle brackets", "Ada <ada@example.com>", "Ada <[email]>"},
		{"email key=value", "from=ada@example.com to=bob@example.net", "from=[email] to=[email]"},
		{"email with digits", "u123@x9.io", "[email]"},
		{"email glued to digits", "ada@example.com123", "[email]123"},
		{"email then phone", "ada@example.com555-123-4567", "[email][phone]"},
		{"two @", "x@ada@example.com", "x@[email]"},
		{"no tld", "root@localhost", "root@localhost"},
		{"at sign alone", "@ada said hi", "@ada said hi"},
		{"one-letter tld", "a@b.c", "a@b.c"},

		// Card numbers (Luhn) and IBANs (mod 97).
		{"card spaced", "my card is 4111 1111 1111 1111 thanks", "my card is [card] thanks"},
		{"card dashed", "4111-1111-1111-1111", "[card]"},
		{"card plain", "pay with 5555555555554444.", "pay with [card]."},
		{"card amex 15", "3782 822463 10005", "[card]"},
		{"card failing luhn is left to the phone rules", "order 4111 1111 1111 1112", "order [phone] 1112"},
		{"card glued to a word", "id4111111111111111", "id4111111111111111"},
		{"iban spaced", "IBAN: DE89 3704 0044 0532 0130 00 ok", "IBAN: [iban] ok"},
		{"iban plain", "GB82WEST12345698765432", "[iban]"},
		{"iban bad check is left to the phone rules", "DE00 3704 0044 0532 0130 00", "DE00 [phone] 0130 00"},
		{"card and email", "4111 1111 1111 1111 ada@example.com", "[card] [email]"},

		// Phone numbers.
		{"uk international", "+44 20 7946 0958", "[phone]"},
		{"uk with (0)", "+44 (0)20 7946 0958", "[phone]"},
		{"us parentheses", "call (555) 123-4567 now", "call [phone] now"},
		{"us dashes", "555-123-4567", "[phone]"},
		{"us dots", "555.123.4567", "[phone]"},
		{"us 1-800", "1-800-555-0199", "[phone]"},
		{"us local", "dial 555-1234", "dial [phone]"},
		{"german 00", "0049 30 1234567", "[phone]"},
		{"uk national", "020 7946 0958", "[phone]"},
		{"french pairs", "06 12 34 56 78", "[phone]"},
		{"e164 no separators", "+15551234567", "[phone]"},
		{"in key=value", "phone=555-123-4567,", "phone=[phone],"},
		{"after tel:", "tel:+44-20-7946-0958", "tel:[phone]"},
		{"after tel.", "Tél.+33 1 23 45 67 89", "Tél.[phone]"},
		{"after Tél: ", "Tél: 01 23 45 67 89", "Tél: [phone]"},
		{"struct %v", "{Ada ada@example.com +44 20 7946 0958}", "{Ada [email] [phone]}"},
		{"json", `{"phone":"555-123-4567"}`, `{"phone":"[phone]"}`},
		{"end of sentence", "Call me at 555-123-4567.", "Call me at [phone]."},
		{"in parentheses", "(555-123-4567)", "([phone])"},
		{"unclosed paren", "(+15551234567 x", "([phone] x"},
		{"unclosed paren no plus", "(555-123-4567 x", "([phone] x"},
		{"two phones", "555-123-4567 or +1 555 765 4321", "[phone] or [phone]"},
		{"after date", "2026-11-24 555-123-4567", "2026-11-24 [phone]"},
		{"quoted", `"+44 20 7946 0958"`, `"[phone]"`},
		{"both", "ada@example.com, +44 20 7946 0958", "[email], [phone]"},

		// Known, documented false positives.
		{"false positive: spaced numbers", "ids 1234 5678", "ids [phone]"},
		{"false positive: thousands", "1 048 576 or 1.048.576", "[phone] or [phone]"},

		// Not phone numbers.
		{"rfc3339", "2026-11-24T05:06:35Z", "2026-11-24T05:06:35Z"},
		{"rfc3339 nano", "at 2026-11-24T05:06:35.123456789+01:00", "at 2026-11-24T05:06:35.123456789+01:00"},
		{"date time", "2026-11-24 05:06:35", "2026-11-24 05:06:35"},
		{"time.Time.String", "2026-11-24 05:06:35.123456789 +0000 UTC m=+0.000123456", "2026-11-24 05:06:35.123456789 +0000 UTC m=+0.000123456"},
		{"date then count", "2026-11-24 12 conversations", "2026-11-24 12 conversations"},
		{"european date", "24.11.2026", "24.11.2026"},
		{"us date", "11-24-2026", "11-24-2026"},
		{"duration", "took 1m2.345678901s", "took 1m2.345678901s"},
		{"duration ms", "took 1234.567891ms", "took 1234.567891ms"},
		{"version", "go1.25.0 v1.25.0 1.25.0", "go1.25.0 v1.25.0 1.25.0"},
		{"host port", "listening on 127.0.0.1:8080", "listening on 127.0.0.1:8080"},
		{"ipv4 pair", "10.0.0.1 192.168.100.200", "10.0.0.1 192.168.100.200"},
		{"ipv4 port", "192.168.100.200:8080", "192.168.100.200:8080"},
		{"ipv6", "[2001:db8::1234:5678]:443", "[2001:db8::1234:5678]:443"},
		{"byte count", "wrote 1048576 bytes", "wrote 1048576 bytes"},
		{"unix ms", "ts=1732424795123", "ts=1732424795123"},
		{"unix float", "ts=1732424795.123456", "ts=1732424795.123456"},
		{"negative", "delta=-1234567", "delta=-1234567"},
		{"range of big numbers", "1000000-2000000", "1000000-2000000"},
		{"conversation id", "c_9f3a2b41c07e5d1234567890", "c_9f3a2b41c07e5d1234567890"},
		{"conversation id with digits", "c_123456789012345678901234", "c_123456789012345678901234"},
		{"uuid", "550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000"},
		{"uuid digits", "12345678-1234-1234-1234-123456789012", "12345678-1234-1234-1234-123456789012"},
		{"uuid hex groups", "abcdefab-3456-7890-abcd-ef0123456789", "abcdefab-3456-7890-abcd-ef0123456789"},
		{"message id", "m_01HZY3K4-5678-901", "m_01HZY3K4-5678-901"},
		{"glued to a word", "é555-123-4567 x555-123-4567 555-123-4567x", "é555-123-4567 x555-123-4567 555-123-4567x"},
		{"path", "/v1/conversations/555-123-4567x", "/v1/conversations/555-123-4567x"},
		{"file line", "main.go:1234567", "main.go:1234567"},
		{"float exponent", "1.2345678e+06", "1.2345678e+06"},
		{"short numbers", "seq 23 head 24 unread 3", "seq 23 head 24 unread 3"},
		{"empty", "", ""},
		{"plain", "conversation closed by agent", "conversation closed by agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := String(tt.in); got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got := String(tt.want); got != tt.want {
				t.Errorf("String(%q) = %q, not idempotent", tt.want, got)
			}
		})
	}
}

func FuzzString(f *testing.F) {
	for _, s := range []string{
		"mail ada@example.com or +44 20 7946 0958",
		"(555) 123-4567", "555-123-4567", "0049 30 1234567", "+44 (0)20 7946 0958",
		"2026-11-24T05:06:35Z", "1.25.0", "127.0.0.1:8080", "1048576",
		"c_9f3a2b41c07e5d1234567890", "a@b.co555-123-4567", "x@a@b.co",
		"2026-11-24 05:06:35.123456789 +0000 UTC m=+0.000123456",
		"10.0.0.1 192.168.1.1", "(5551234567", "é555-123-4567",
		"4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := String(s)
		if again := String(got); again != got {
			t.Errorf("not idempotent: String(%q) = %q, String of that = %q", s, got, again)
		}
		if m := emailRE.FindString(got); m != "" {
			t.Errorf("String(%q) = %q still holds e-mail address %q", s, got, m)
		}
		for _, m := range cardCandidateRE.FindAllStringIndex(got, -1) {
			glued := (m[0] > 0 && isWordByte(got[m[0]-1])) || (m[1] < len(got) && isWordByte(got[m[1]]))
			if !glued && luhn(got[m[0]:m[1]]) {
				t.Errorf("String(%q) = %q still holds card number %q", s, got, got[m[0]:m[1]])
			}
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Errorf("String(%q) = %q is not valid UTF-8", s, got)
		}
	})
}
