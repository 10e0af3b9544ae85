package redact

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Config configures a Handler. The zero value is ready to use.
type Config struct {
	// SensitiveKeys are attribute keys whose values are always replaced by
	// Replacement, whatever their kind and wherever they are (top level,
	// inside a group, or added with WithAttrs). Keys match
	// case-insensitively and exactly: "Email" matches "email", "user_email"
	// does not. A group whose key or WithGroup name is sensitive is
	// replaced as a whole.
	//
	// Names are caught only this way: there is no reliable way to spot a
	// person's name in free text, so values under keys like "name" are
	// redacted wholesale, and free-text values only lose the e-mail
	// addresses and phone numbers that String finds.
	//
	// If empty, DefaultSensitiveKeys() is used:
	//
	//	names:       name, visitor_name, owner_name, display_name,
	//	             first_name, last_name, full_name, username
	//	contact:     email, email_address, phone, phone_number, mobile
	//	chat text:   body, text, message, content
	//	identities:  user_id, visitor_id, participant, author, owner,
	//	             user_hash, identity_token, visitor_sig, identity_secret,
	//	             secret (a webhook's signing secret)
	//	network:     ip, ip_address, client_ip, remote_ip, remote_addr,
	//	             x_forwarded_for, user_agent
	//
	// To add keys, extend the default set:
	// append(redact.DefaultSensitiveKeys(), "nickname").
	SensitiveKeys []string

	// Replacement is the value put in place of a redacted value. If empty,
	// "[redacted]" is used.
	Replacement string
}

// DefaultReplacement is the value used when Config.Replacement is empty.
const DefaultReplacement = "[redacted]"

// DefaultSensitiveKeys returns (a fresh copy of) the keys a Handler redacts
// when Config.SensitiveKeys is empty. See Config.SensitiveKeys.
func DefaultSensitiveKeys() []string {
	return []string{
		// Names (see Config.SensitiveKeys for why only by key).
		"name", "visitor_name", "owner_name", "display_name",
		"first_name", "last_name", "full_name", "username",
		// Contact details.
		"email", "email_address", "phone", "phone_number", "mobile",
		// What visitors write: a Message, its body, any text.
		"body", "text", "message", "content",
		// Identifiers of a person, and the credentials that prove one
		// (participant, author and owner are "v:<visitor_id>",
		// "u:<user_id>" or "a:<agent_id>" in the protocol).
		"user_id", "visitor_id", "participant", "author", "owner",
		"user_hash", "identity_token", "visitor_sig", "identity_secret",
		"secret",
		// Network identifiers of a visitor's device.
		"ip", "ip_address", "client_ip", "remote_ip", "remote_addr",
		"x_forwarded_for", "user_agent",
		// A visitor's context (docs/protocol.md): the page, where the
		// visitor came from, what the site said of them.
		"context", "page_url", "referrer", "attrs",
	}
}

// Handler is a slog.Handler that redacts personal data from records and
// passes them on to another Handler. Use NewHandler to make one.
//
// For every record it redacts:
//
//   - the message, and every string value, with String (e-mail addresses
//     and phone numbers);
//   - values of kind Any that hold a string, an error or a fmt.Stringer: they
//     become the redacted string of the value, its Error() or its String();
//   - the whole value of every attribute with a sensitive key, whatever its
//     kind (see Config.SensitiveKeys);
//
// at any depth of groups, in the record's attributes and in those added with
// WithAttrs. LogValuers are resolved first. Other values of kind Any (structs,
// maps, slices, []byte) are passed on unchanged, so do not log values that
// hold personal data except under a sensitive key; give such types a
// LogValue method instead. Attribute keys and group names are not redacted.
//
// A Handler is safe for concurrent use if the Handler it wraps is.
type Handler struct {
	next slog.Handler
	keys map[string]struct{} // lower-case; shared, never modified
	repl slog.Value
	// all is set when a WithGroup name was a sensitive key: every value
	// under it is redacted.
	all bool
}

// NewHandler returns a Handler that redacts records and passes them to next.
// It panics if next is nil.
func NewHandler(next slog.Handler, cfg Config) *Handler {
	if next == nil {
		panic("redact: NewHandler: nil next handler")
	}
	keys := cfg.SensitiveKeys
	if len(keys) == 0 {
		keys = DefaultSensitiveKeys()
	}
	set := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		set[strings.ToLower(k)] = struct{}{}
	}
	repl := cfg.Replacement
	if repl == "" {
		repl = DefaultReplacement
	}
	return &Handler{next: next, keys: set, repl: slog.StringValue(repl)}
}

// Enabled reports whether the wrapped Handler handles records at level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle redacts a copy of r and passes it to the wrapped Handler. r itself
// is not modified.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a, h.all))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs returns a Handler whose wrapped Handler has the redacted attrs.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.attr(a, h.all)
	}
	h2 := *h
	h2.next = h.next.WithAttrs(red)
	return &h2
}

// WithGroup returns a Handler whose wrapped Handler opens group name. If name
// is a sensitive key, every value logged inside the group is redacted.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.next = h.next.WithGroup(name)
	h2.all = h.all || h.sensitive(name)
	return &h2
}

func (h *Handler) sensitive(key string) bool {
	_, ok := h.keys[strings.ToLower(key)]
	return ok
}

// attr returns a redacted a. If all is set, every value is replaced.
func (h *Handler) attr(a slog.Attr, all bool) slog.Attr {
	if a.Key == "" && a.Value.Equal(slog.Value{}) {
		return a // ignored by handlers; keep it that way
	}
	if a.Key != "" && (all || h.sensitive(a.Key)) {
		return slog.Attr{Key: a.Key, Value: h.repl}
	}
	v := a.Value.Resolve()
	if a.Key == "" && v.Kind() != slog.KindGroup && all {
		return slog.Attr{Key: a.Key, Value: h.repl}
	}
	// An inline group (empty key) is kept: its members are judged by their
	// own keys.
	switch v.Kind() {
	case slog.KindString:
		v = slog.StringValue(String(v.String()))
	case slog.KindGroup:
		v = h.group(v, all)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case string:
			v = slog.StringValue(String(x))
		case error, fmt.Stringer:
			// fmt calls Error or String, and copes with nil receivers
			// and panics in them.
			v = slog.StringValue(String(fmt.Sprint(x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// group returns the (resolved) group value v with its members redacted.
func (h *Handler) group(v slog.Value, all bool) slog.Value {
	as := v.Group()
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = h.attr(a, all)
	}
	return slog.GroupValue(red...)
}
