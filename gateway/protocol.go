package gateway

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"parley/crdt"
	"parley/gateway/wire"
	"parley/ident"
	"parley/store"
)

// Limits on fields, as documented in docs/protocol.md.
const (
	maxBody = 4000
	maxName = 80
	maxRef  = 64
	// maxSince bounds a resume's vector: a few origins per conversation.
	maxSince = 2048
	maxToken = 256
	maxUser  = 128
)

var (
	reHex64     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	reVisitorID = regexp.MustCompile(`^[0-9a-f]{32}$`)
	reTag       = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	reLanguage  = regexp.MustCompile(`^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}$`)
	reAttrKey   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,40}$`)
)

// Limits of a visitor's context (a context frame), as documented in
// docs/protocol.md.
const (
	MaxContextURL   = 2048 // bytes, of the page's URL and of the referrer
	MaxContextAttrs = 20   // custom attributes
	MaxAttrValue    = 256  // characters of an attribute's value
)

// checkContext validates a visitor's context: URLs of http or https with
// a host and no credentials, a language tag, at most MaxContextAttrs
// attributes with keys of [A-Za-z0-9_.-]{1,40} and printable values of at
// most MaxAttrValue characters. Nothing of a refused context is stored.
func checkContext(x crdt.VisitorContext) *wireError {
	for _, u := range []struct{ name, v string }{{"url", x.URL}, {"referrer", x.Referrer}} {
		if u.v == "" {
			continue
		}
		if len(u.v) > MaxContextURL {
			return errf(wire.CodeBadRequest, "context.%s: at most %d bytes", u.name, MaxContextURL)
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil || !ident.PrintableName(u.v) {
			return errf(wire.CodeBadRequest, "context.%s: an http or https URL with a host and no user or password", u.name)
		}
	}
	if x.Language != "" && !reLanguage.MatchString(x.Language) {
		return errf(wire.CodeBadRequest, "context.language: a language tag such as en or pt-BR")
	}
	if len(x.Attrs) > MaxContextAttrs {
		return errf(wire.CodeBadRequest, "context.attrs: at most %d attributes, got %d", MaxContextAttrs, len(x.Attrs))
	}
	for k, v := range x.Attrs {
		if !reAttrKey.MatchString(k) {
			return errf(wire.CodeBadRequest, "context.attrs: keys must match [A-Za-z0-9_.-]{1,40}")
		}
		if utf8.RuneCountInString(v) > MaxAttrValue || !ident.PrintableName(v) {
			return errf(wire.CodeBadRequest, "context.attrs: values of at most %d printable characters", MaxAttrValue)
		}
	}
	return nil
}

// ValidTag says whether tag is a tag's name: [a-z0-9][a-z0-9_-]{0,31}.
func ValidTag(tag string) bool { return reTag.MatchString(tag) }

// validateInbox checks an inbox frame: one status (with until, for
// snoozed, only then) or one tag.
func (f *inFrame) validateInbox() *wireError {
	if err := checkConv(f.Conversation); err != nil {
		return err
	}
	if err := checkMsgID(f.ID); err != nil {
		return err
	}
	switch {
	case (f.Status == "") == (f.Tag == ""):
		return errf(wire.CodeBadRequest, "inbox: give status or tag, one of them")
	case f.Tag != "":
		if !reTag.MatchString(f.Tag) {
			return errf(wire.CodeBadRequest, "tag: must match [a-z0-9][a-z0-9_-]{0,31}")
		}
		if f.Until != 0 {
			return errf(wire.CodeBadRequest, "until: with status snoozed only")
		}
	case !crdt.Status(f.Status).Valid():
		return errf(wire.CodeBadRequest, "status: open, pending, snoozed or resolved")
	case (crdt.Status(f.Status) == crdt.StatusSnoozed) != (f.Until > 0):
		return errf(wire.CodeBadRequest, "until: required with status snoozed (unix ms), and only then")
	}
	return nil
}

// validateListFilter checks a list's filters.
func (f *inFrame) validateListFilter() *wireError {
	if f.Status != "" && !crdt.Status(f.Status).Valid() {
		return errf(wire.CodeBadRequest, "status: open, pending, snoozed or resolved")
	}
	if f.Tag != "" && !reTag.MatchString(f.Tag) {
		return errf(wire.CodeBadRequest, "tag: must match [a-z0-9][a-z0-9_-]{0,31}")
	}
	if a := f.Assignee; a != "" && a != "me" && a != "-" && !ident.ValidID(a) {
		return errf(wire.CodeBadRequest, "assignee: me, - (unassigned) or an operator's ID")
	}
	return nil
}

// inFrame is any frame a client sends, with the gateway's validation.
type inFrame wire.In

// decodeFrame parses and validates one client frame. The error, if any, is
// what goes back to the client; the frame then changes nothing.
func decodeFrame(data []byte) (inFrame, *wireError) {
	var f inFrame
	if len(data) > wire.MaxFrameBytes {
		return f, fatalf(wire.CodeTooLarge, wire.CloseTooLarge, "frame of %d bytes exceeds %d", len(data), wire.MaxFrameBytes)
	}
	if !utf8.Valid(data) {
		return f, errf(wire.CodeBadFrame, "frame is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return f, errf(wire.CodeBadFrame, "frame is not a JSON object")
	}
	if !decodeFlat(data, &f) {
		// Its own variable: handed to encoding/json, it goes to the heap,
		// which f (the fast path's) need not.
		g := new(inFrame)
		if err := json.Unmarshal(data, g); err != nil {
			return inFrame{}, errf(wire.CodeBadFrame, "invalid JSON: %v", err)
		}
		f = *g
	}
	if len(f.Ref) > maxRef {
		ref := f.Ref
		f.Ref = ""
		return f, errf(wire.CodeBadRequest, "ref: at most %d characters, got %d", maxRef, len(ref))
	}
	return f, f.validate()
}

func (f *inFrame) validate() *wireError {
	switch f.Type {
	case wire.TypeHello:
		return f.validateHello()
	case wire.TypeStart, wire.TypePing, wire.TypeForget:
		return nil
	case wire.TypeList:
		if _, err := store.ParseCursor(f.Cursor); err != nil {
			return errf(wire.CodeBadRequest, "cursor: give back the next of a conversations frame")
		}
		return f.validateListFilter()
	case wire.TypeInbox:
		return f.validateInbox()
	case wire.TypeContext:
		if err := checkConv(f.Conversation); err != nil {
			return err
		}
		if err := checkMsgID(f.ID); err != nil {
			return err
		}
		if f.Context == nil {
			return errf(wire.CodeBadRequest, "context: required")
		}
		return checkContext(*f.Context)
	case wire.TypeResume:
		if err := checkConv(f.Conversation); err != nil {
			return err
		}
		if f.Since != "" {
			if f.After != 0 {
				return errf(wire.CodeBadRequest, "since: give after or since, not both")
			}
			if len(f.Since) > maxSince {
				return errf(wire.CodeBadRequest, "since: at most %d characters", maxSince)
			}
			if _, err := crdt.ParseVector(f.Since); err != nil {
				return errf(wire.CodeBadRequest, "since: %v", err)
			}
		}
		return nil
	case wire.TypeSend, wire.TypeEdit:
		if err := checkConv(f.Conversation); err != nil {
			return err
		}
		if err := checkMsgID(f.ID); err != nil {
			return err
		}
		if f.Body == nil {
			return errf(wire.CodeBadRequest, "body: required")
		}
		if n := utf8.RuneCountInString(*f.Body); n < 1 || n > maxBody {
			return errf(wire.CodeBadRequest, "body: must be 1..%d characters, got %d", maxBody, n)
		}
		if !ident.PrintableBody(*f.Body) {
			return errf(wire.CodeBadRequest, "body: control and bidirectional override characters are not allowed")
		}
		if strings.HasPrefix(f.ID, ident.EmailMessagePrefix) && !ident.EmailAddress(*f.Body) {
			return errf(wire.CodeBadEmail, "body: an email- message's body is one e-mail address, such as name@example.com")
		}
		return nil
	case wire.TypeDelete:
		if err := checkConv(f.Conversation); err != nil {
			return err
		}
		return checkMsgID(f.ID)
	case wire.TypeTyping:
		return checkConv(f.Conversation)
	case wire.TypeView:
		return f.validateView()
	case wire.TypeStatus:
		if f.Away == nil {
			return errf(wire.CodeBadRequest, "away: required, true or false")
		}
		return nil
	case wire.TypeRead:
		if err := checkConv(f.Conversation); err != nil {
			return err
		}
		if f.Seq == 0 {
			return errf(wire.CodeBadRequest, "seq: must be at least 1")
		}
		return nil
	case "":
		return errf(wire.CodeUnknownType, "type: missing")
	default:
		t := f.Type
		if len(t) > 32 {
			t = t[:32]
		}
		return errf(wire.CodeUnknownType, "type %q is not part of protocol version %d", t, wire.ProtocolVersion)
	}
}

func (f *inFrame) validateHello() *wireError {
	if f.V != wire.ProtocolVersion {
		return fatalf(wire.CodeVersionUnsupported, wire.CloseBadVersion, "v: this node speaks version %d, got %d", wire.ProtocolVersion, f.V)
	}
	if !ident.ValidID(f.Workspace) {
		return errf(wire.CodeBadRequest, "workspace: must match [a-z0-9_-]{1,64}")
	}
	if utf8.RuneCountInString(f.Name) > maxName || !ident.PrintableName(f.Name) {
		return errf(wire.CodeBadRequest, "name: at most %d printable characters, no invisible format characters", maxName)
	}
	switch f.Role {
	case ident.Agent:
		if f.Token == "" || len(f.Token) > maxToken {
			return errf(wire.CodeBadRequest, "token: required, at most %d characters", maxToken)
		}
	case ident.Visitor:
		if f.Away != nil {
			return errf(wire.CodeBadRequest, "away: agents only")
		}
		if (f.VisitorID == "") != (f.VisitorSig == "") {
			return errf(wire.CodeBadRequest, "visitor_id and visitor_sig go together")
		}
		if f.VisitorID != "" && (!reVisitorID.MatchString(f.VisitorID) || !reHex64.MatchString(f.VisitorSig)) {
			return errf(wire.CodeBadRequest, "visitor_id: 32 hex digits; visitor_sig: 64 hex digits")
		}
		if (f.UserID == "") != (f.UserHash == "") {
			return errf(wire.CodeBadRequest, "user_id and user_hash go together")
		}
		if f.IdentityToken != "" && (f.UserID != "" || len(f.IdentityToken) > MaxIdentityToken) {
			return errf(wire.CodeBadRequest, "identity_token: at most %d characters, without user_id and user_hash", MaxIdentityToken)
		}
		if f.UserID != "" && (len(f.UserID) > maxUser || !ident.PrintableName(f.UserID) || !reHex64.MatchString(f.UserHash)) {
			return errf(wire.CodeBadRequest, "user_id: 1..%d printable characters; user_hash: 64 hex digits", maxUser)
		}
	default:
		return errf(wire.CodeBadRequest, "role: must be visitor or agent")
	}
	return nil
}

func checkConv(id string) *wireError {
	if !ident.ValidConversation(id) {
		return errf(wire.CodeBadRequest, "conversation: must be c_ and 24 hex digits")
	}
	return nil
}

func checkMsgID(id string) *wireError {
	// [A-Za-z0-9_-]{8,64}: a conversation reference's bytes, 8 or more.
	if len(id) < 8 || !ident.ValidConversationRef(id) {
		return errf(wire.CodeBadRequest, "id: must match [A-Za-z0-9_-]{8,64}")
	}
	return nil
}

// Outgoing frames: the structs of parley/gateway/wire.

// WireMessage is a message's state as the wire shows it (docs/protocol.md,
// Message).
func WireMessage(m crdt.Message) wire.Message { return toWire(m) }

func toWire(m crdt.Message) wire.Message {
	w := wire.Message{ID: m.ID, Author: m.Author, Role: m.Role, Name: m.Name, Body: m.Body, TS: m.Created, Deleted: m.IsDeleted(),
		Internal: m.Internal, Kind: m.Kind}
	if m.Edited() && !w.Deleted {
		ts := m.BodyTS
		w.Edited = &ts
	}
	return w
}

// stampString is a stamp as clients see it, "origin.oseq"; a client keeps
// the highest oseq of each origin as its vector for resume's since.
func stampString(st store.Stamp) string {
	if st.Origin == "" {
		return ""
	}
	return st.Origin + "." + strconv.FormatUint(st.OSeq, 10)
}

func toWireConversation(c store.Conversation, reads map[string]uint64, unread int) wire.Conversation {
	w := wire.Conversation{ID: c.ID, Owner: c.Owner, OwnerName: c.OwnerName, Created: c.Created, Updated: c.Updated, Head: c.Head, Reads: reads, Unread: unread}
	if c.Last != nil {
		m := toWire(*c.Last)
		w.Last = &m
	}
	return w
}

// withInbox adds a conversation's inbox state at nowMS to its list item,
// for agents.
func withInbox(w *wire.Conversation, c store.Conversation, assignee string, nowMS int64) {
	x := c.InboxState()
	w.Status, w.Until, w.Tags, w.Assignee = x.Status(nowMS), x.Until(nowMS), x.Tags(), assignee
	if ctx := x.Context(); ctx.URL != "" || ctx.Referrer != "" || ctx.Language != "" || len(ctx.Attrs) > 0 {
		w.Context = &ctx
	}
}

func roleOf(participant string) ident.Role {
	if len(participant) > 1 && participant[0] == 'a' {
		return ident.Agent
	}
	if len(participant) > 1 && participant[0] == 'b' {
		return ident.Bot
	}
	return ident.Visitor
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Every frame type above marshals; a failure is a programming error.
		panic("gateway: encode frame: " + err.Error())
	}
	return b
}
