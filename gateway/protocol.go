package gateway

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"unicode"
	"unicode/utf8"

	"parley/crdt"
	"parley/ident"
	"parley/store"
)

// ProtocolVersion is the wire protocol version this package speaks.
const ProtocolVersion = 1

// MaxFrameBytes is the largest frame a client may send.
const MaxFrameBytes = 16 << 10

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
	reMsgID     = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)
	reHex64     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	reVisitorID = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// inFrame is any frame a client sends; which fields count depends on Type.
type inFrame struct {
	Type         string     `json:"type"`
	Ref          string     `json:"ref"`
	V            int        `json:"v"`
	Workspace    string     `json:"workspace"`
	Role         ident.Role `json:"role"`
	VisitorID    string     `json:"visitor_id"`
	VisitorSig   string     `json:"visitor_sig"`
	UserID       string     `json:"user_id"`
	UserHash     string     `json:"user_hash"`
	Name         string     `json:"name"`
	Token        string     `json:"token"`
	Conversation string     `json:"conversation"`
	ID           string     `json:"id"`
	Body         *string    `json:"body"`
	After        uint64     `json:"after"`
	Since        string     `json:"since"`
	Seq          uint64     `json:"seq"`
	Typing       bool       `json:"typing"`
	Viewing      *bool      `json:"viewing"`
}

// decodeFrame parses and validates one client frame. The error, if any, is
// what goes back to the client; the frame then changes nothing.
func decodeFrame(data []byte) (inFrame, *wireError) {
	var f inFrame
	if len(data) > MaxFrameBytes {
		return f, fatalf(CodeTooLarge, closeTooLarge, "frame of %d bytes exceeds %d", len(data), MaxFrameBytes)
	}
	if !utf8.Valid(data) {
		return f, errf(CodeBadFrame, "frame is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return f, errf(CodeBadFrame, "frame is not a JSON object")
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return inFrame{}, errf(CodeBadFrame, "invalid JSON: %v", err)
	}
	if len(f.Ref) > maxRef {
		ref := f.Ref
		f.Ref = ""
		return f, errf(CodeBadRequest, "ref: at most %d characters, got %d", maxRef, len(ref))
	}
	return f, f.validate()
}

func (f *inFrame) validate() *wireError {
	switch f.Type {
	case "hello":
		return f.validateHello()
	case "start", "list", "ping":
		return nil
	case "resume":
		if err := checkConv(f.Conversation); err != nil {
			return err
		}
		if f.Since != "" {
			if f.After != 0 {
				return errf(CodeBadRequest, "since: give after or since, not both")
			}
			if len(f.Since) > maxSince {
				return errf(CodeBadRequest, "since: at most %d characters", maxSince)
			}
			if _, err := crdt.ParseVector(f.Since); err != nil {
				return errf(CodeBadRequest, "since: %v", err)
			}
		}
		return nil
	case "send", "edit":
		if err := checkConv(f.Conversation); err != nil {
			return err
		}
		if err := checkMsgID(f.ID); err != nil {
			return err
		}
		if f.Body == nil {
			return errf(CodeBadRequest, "body: required")
		}
		if n := utf8.RuneCountInString(*f.Body); n < 1 || n > maxBody {
			return errf(CodeBadRequest, "body: must be 1..%d characters, got %d", maxBody, n)
		}
		if !printable(*f.Body, true) {
			return errf(CodeBadRequest, "body: control and bidirectional override characters are not allowed")
		}
		return nil
	case "delete":
		if err := checkConv(f.Conversation); err != nil {
			return err
		}
		return checkMsgID(f.ID)
	case "typing":
		return checkConv(f.Conversation)
	case "view":
		return f.validateView()
	case "read":
		if err := checkConv(f.Conversation); err != nil {
			return err
		}
		if f.Seq == 0 {
			return errf(CodeBadRequest, "seq: must be at least 1")
		}
		return nil
	case "":
		return errf(CodeUnknownType, "type: missing")
	default:
		t := f.Type
		if len(t) > 32 {
			t = t[:32]
		}
		return errf(CodeUnknownType, "type %q is not part of protocol version %d", t, ProtocolVersion)
	}
}

func (f *inFrame) validateHello() *wireError {
	if f.V != ProtocolVersion {
		return fatalf(CodeVersionUnsupported, closeBadVersion, "v: this node speaks version %d, got %d", ProtocolVersion, f.V)
	}
	if !ident.ValidID(f.Workspace) {
		return errf(CodeBadRequest, "workspace: must match [a-z0-9_-]{1,64}")
	}
	if utf8.RuneCountInString(f.Name) > maxName || !printable(f.Name, false) {
		return errf(CodeBadRequest, "name: at most %d printable characters, no invisible format characters", maxName)
	}
	switch f.Role {
	case ident.Agent:
		if f.Token == "" || len(f.Token) > maxToken {
			return errf(CodeBadRequest, "token: required, at most %d characters", maxToken)
		}
	case ident.Visitor:
		if (f.VisitorID == "") != (f.VisitorSig == "") {
			return errf(CodeBadRequest, "visitor_id and visitor_sig go together")
		}
		if f.VisitorID != "" && (!reVisitorID.MatchString(f.VisitorID) || !reHex64.MatchString(f.VisitorSig)) {
			return errf(CodeBadRequest, "visitor_id: 32 hex digits; visitor_sig: 64 hex digits")
		}
		if (f.UserID == "") != (f.UserHash == "") {
			return errf(CodeBadRequest, "user_id and user_hash go together")
		}
		if f.UserID != "" && (len(f.UserID) > maxUser || !printable(f.UserID, false) || !reHex64.MatchString(f.UserHash)) {
			return errf(CodeBadRequest, "user_id: 1..%d printable characters; user_hash: 64 hex digits", maxUser)
		}
	default:
		return errf(CodeBadRequest, "role: must be visitor or agent")
	}
	return nil
}

func checkConv(id string) *wireError {
	if !ident.ValidConversation(id) {
		return errf(CodeBadRequest, "conversation: must be c_ and 24 hex digits")
	}
	return nil
}

func checkMsgID(id string) *wireError {
	if !reMsgID.MatchString(id) {
		return errf(CodeBadRequest, "id: must match [A-Za-z0-9_-]{8,64}")
	}
	return nil
}

// printable rejects control characters, which have no place in chat text
// and can forge log lines (newlines and tabs are allowed in bodies), and
// the bidirectional embeddings, overrides and isolates (U+202A..U+202E,
// U+2066..U+2069), which reorder the text around them as it is shown: a
// U+202E makes "exe.txt" read "txt.exe". Names, which identify a person to
// an agent, also refuse every other invisible format character (zero-width
// spaces, word joiners) but the zero-width joiner and non-joiner that
// emoji sequences and some scripts need. Marks that only hint a direction
// (U+200E, U+200F, U+061C) stay: right-to-left writers use them.
func printable(s string, multiline bool) bool {
	for _, r := range s {
		if multiline && (r == '\n' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || r == utf8.RuneError || bidiControl(r) {
			return false
		}
		if !multiline && unicode.Is(unicode.Cf, r) && !directionMark(r) && r != '\u200c' && r != '\u200d' {
			return false
		}
	}
	return true
}

func bidiControl(r rune) bool {
	return (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

func directionMark(r rune) bool { return r == '\u200e' || r == '\u200f' || r == '\u061c' }

// Outgoing frames.

type errorFrame struct {
	Type    string `json:"type"`
	Ref     string `json:"ref,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

type welcomeFrame struct {
	Type        string     `json:"type"`
	V           int        `json:"v"`
	Workspace   string     `json:"workspace"`
	Role        ident.Role `json:"role"`
	Participant string     `json:"participant"`
	VisitorID   string     `json:"visitor_id,omitempty"`
	VisitorSig  string     `json:"visitor_sig,omitempty"`
	Node        string     `json:"node"`
	HeartbeatMS int64      `json:"heartbeat_ms"`
}

type refFrame struct {
	Type         string `json:"type"`
	Ref          string `json:"ref,omitempty"`
	Conversation string `json:"conversation,omitempty"`
}

type resumedFrame struct {
	Type         string `json:"type"`
	Ref          string `json:"ref,omitempty"`
	Conversation string `json:"conversation"`
	Head         uint64 `json:"head"`
	More         bool   `json:"more,omitempty"`
}

type ackFrame struct {
	Type         string          `json:"type"`
	Ref          string          `json:"ref,omitempty"`
	Conversation string          `json:"conversation"`
	ID           string          `json:"id,omitempty"`
	Seq          uint64          `json:"seq"`
	TS           *crdt.Timestamp `json:"ts,omitempty"`
	Dup          bool            `json:"dup"`
}

// wireMessage is a message as clients see it.
type wireMessage struct {
	ID      string          `json:"id"`
	Author  string          `json:"author"`
	Role    ident.Role      `json:"role"`
	Name    string          `json:"name,omitempty"`
	Body    string          `json:"body"`
	TS      crdt.Timestamp  `json:"ts"`
	Edited  *crdt.Timestamp `json:"edited"`
	Deleted bool            `json:"deleted"`
}

func toWire(m crdt.Message) wireMessage {
	w := wireMessage{ID: m.ID, Author: m.Author, Role: m.Role, Name: m.Name, Body: m.Body, TS: m.Created, Deleted: m.IsDeleted()}
	if m.Edited() && !w.Deleted {
		ts := m.BodyTS
		w.Edited = &ts
	}
	return w
}

type deliverFrame struct {
	Type         string `json:"type"`
	Conversation string `json:"conversation"`
	Seq          uint64 `json:"seq"`
	At           string `json:"at,omitempty"`
	// Also, in a replay only: the stamps of the message's earlier events
	// in the same replay, which this frame covers (see appendReplay).
	Also    []string    `json:"also,omitempty"`
	Message wireMessage `json:"message"`
}

// stampString is a stamp as clients see it, "origin.oseq"; a client keeps
// the highest oseq of each origin as its vector for resume's since.
func stampString(st store.Stamp) string {
	if st.Origin == "" {
		return ""
	}
	return st.Origin + "." + strconv.FormatUint(st.OSeq, 10)
}

type readFrame struct {
	Type         string     `json:"type"`
	Conversation string     `json:"conversation"`
	Participant  string     `json:"participant"`
	Role         ident.Role `json:"role"`
	Seq          uint64     `json:"seq"`
}

type typingFrame struct {
	Type         string     `json:"type"`
	Conversation string     `json:"conversation"`
	Participant  string     `json:"participant"`
	Role         ident.Role `json:"role"`
	Name         string     `json:"name,omitempty"`
	Typing       bool       `json:"typing"`
	ExpiresMS    int64      `json:"expires_ms"`
}

type presenceFrame struct {
	Type          string     `json:"type"`
	Participant   string     `json:"participant"`
	Role          ident.Role `json:"role"`
	Name          string     `json:"name,omitempty"`
	Online        bool       `json:"online"`
	Conversations []string   `json:"conversations,omitempty"`
}

type wireConversation struct {
	ID        string            `json:"id"`
	Owner     string            `json:"owner"`
	OwnerName string            `json:"owner_name,omitempty"`
	Created   int64             `json:"created"`
	Updated   int64             `json:"updated"`
	Head      uint64            `json:"head"`
	Last      *wireMessage      `json:"last"`
	Reads     map[string]uint64 `json:"reads"`
	Unread    int               `json:"unread"`
}

type conversationsFrame struct {
	Type  string             `json:"type"`
	Ref   string             `json:"ref,omitempty"`
	Items []wireConversation `json:"items"`
}

func toWireConversation(c store.Conversation, reads map[string]uint64, unread int) wireConversation {
	w := wireConversation{ID: c.ID, Owner: c.Owner, OwnerName: c.OwnerName, Created: c.Created, Updated: c.Updated, Head: c.Head, Reads: reads, Unread: unread}
	if c.Last != nil {
		m := toWire(*c.Last)
		w.Last = &m
	}
	return w
}

func roleOf(participant string) ident.Role {
	if len(participant) > 1 && participant[0] == 'a' {
		return ident.Agent
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
