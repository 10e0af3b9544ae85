package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"parley/ident"
)

// Formats of identifiers of the control plane's own; those shared with the
// other layers are package ident's. Compiled once; they are never mutated.
var (
	rePlan        = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)
	rePeriod      = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)
	reIdempotency = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,128}$`)
	reEventKind   = regexp.MustCompile(`^[a-z_]{1,32}$`)
	reCurrency    = regexp.MustCompile(`^[A-Z]{3}$`)
)

// maxCount bounds one usage increment, so that no sequence of valid reports
// overflows an int64 total in any realistic lifetime.
const maxCount = 1 << 40

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// CheckID checks an identifier (of a workspace, operator, node...): 1 to 64
// of a-z 0-9 _ -.
func CheckID(what, id string) error {
	if !ident.ValidID(id) {
		return invalidf("%s %q: want 1 to 64 of a-z 0-9 _ -", what, id)
	}
	return nil
}

// CheckRegion checks a region name; "" (unpinned) passes.
func CheckRegion(r string) error {
	if r != "" && !ident.ValidRegion(r) {
		return invalidf("region %q: want 1 to 32 of a-z 0-9 -, or empty for unpinned", r)
	}
	return nil
}

func checkPlanName(p string) error {
	if !rePlan.MatchString(p) {
		return invalidf("plan %q: want 1 to 32 of a-z 0-9 _ -", p)
	}
	return nil
}

func checkPeriod(p string) error {
	if !rePeriod.MatchString(p) {
		return invalidf("period %q: want YYYY-MM", p)
	}
	return nil
}

// MaxUserID is the longest verified visitor's user ID, in bytes (the
// gateway's limit on a hello's user_id).
const MaxUserID = 128

// CheckVisitor checks a visitor participant: "v:" and 32 lowercase hex
// digits (an anonymous visitor), or "u:" and a user ID of 1..MaxUserID
// bytes of UTF-8 without control characters (a verified one).
func CheckVisitor(p string) error {
	if id, ok := strings.CutPrefix(p, "v:"); ok {
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			return invalidf("visitor %q: v: and 32 lowercase hex digits", p)
		}
		return nil
	}
	if id, ok := strings.CutPrefix(p, "u:"); ok {
		if id == "" || len(id) > MaxUserID || !utf8.ValidString(id) || !ident.PrintableName(id) {
			return invalidf("visitor %q: u: and a user ID of 1..%d printable characters", p, MaxUserID)
		}
		return nil
	}
	return invalidf("visitor %q: v:<visitor_id> or u:<user_id>", p)
}

func checkConversation(c string) error {
	if !ident.ValidConversationRef(c) {
		return invalidf("conversation %q: want 1 to 64 of A-Z a-z 0-9 _ -", c)
	}
	return nil
}

func checkIdempotencyKey(k string) error {
	if !reIdempotency.MatchString(k) {
		return invalidf("idempotency key %q: want 1 to 128 of A-Z a-z 0-9 . _ : / -", k)
	}
	return nil
}

func checkCount(what string, n int64) error {
	if n < 0 || n > maxCount {
		return invalidf("%s %d: want 0 to %d", what, n, int64(maxCount))
	}
	return nil
}

// checkName accepts human-readable names: 1 to 128 characters of valid
// UTF-8, no control characters, no surrounding space.
func checkName(what, s string) error {
	if s == "" || utf8.RuneCountInString(s) > 128 || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return invalidf("%s %q: want 1 to 128 characters without surrounding space", what, s)
	}
	if !ident.PrintableName(s) {
		return invalidf("%s %q: control, bidirectional override or invisible format character", what, s)
	}
	return nil
}

func checkEmail(e string) error {
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" || len(e) > 254 {
		return invalidf("email %q: want a bare address", e)
	}
	return nil
}

func checkTime(what string, t time.Time) error {
	if t.IsZero() {
		return invalidf("%s time is zero", what)
	}
	if y := t.Year(); y < 2000 || y > 9999 {
		return invalidf("%s time %v out of range", what, t)
	}
	return nil
}

func checkHash(what string, h Hash) error {
	if h == (Hash{}) {
		return invalidf("%s is zero", what)
	}
	return nil
}

func checkBrands(bs []Brand) error {
	if len(bs) > 256 {
		return invalidf("%d brands, more than 256", len(bs))
	}
	seen := make(map[string]bool, len(bs))
	for _, b := range bs {
		if err := firstErr(CheckID("brand id", b.ID), checkName("brand name", b.Name)); err != nil {
			return err
		}
		if seen[b.ID] {
			return invalidf("brand %q listed twice", b.ID)
		}
		seen[b.ID] = true
	}
	return nil
}

// CheckAddr checks a host:port address; "" passes.
func CheckAddr(what, a string) error {
	if a == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || port == "" || len(a) > 255 {
		return invalidf("%s %q: want host:port", what, a)
	}
	return nil
}

// fingerprint identifies the effect of an idempotent command, so that a key
// reused for a different payload is caught instead of silently answered with
// another command's result. The parts are encoded as one JSON array, which
// no two different payloads share.
func fingerprint(parts ...any) string {
	b, err := json.Marshal(parts)
	if err != nil {
		// Only strings and integers are passed; kept loud all the same.
		b = fmt.Appendf(nil, "unencodable %v", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}
