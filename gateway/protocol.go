package gateway

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
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
	reMsgID     = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)
	reHex64     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	reVisitorID = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

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
	if err := json.Unmarshal(data, &f); err != nil {
		return inFrame{}, errf(wire.CodeBadFrame, "invalid JSON: %v", err)
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
		return nil
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
	if !reMsgID.MatchString(id) {
		return errf(wire.CodeBadRequest, "id: must match [A-Za-z0-9_-]{8,64}")
	}
	return nil
}

// Outgoing frames: the structs of parley/gateway/wire.

// WireMessage is a message's state as the wire shows it (docs/protocol.md,
// Message).
func WireMessage(m crdt.Message) wire.Message { return toWire(m) }

func toWire(m crdt.Message) wire.Message {
	w := wire.Message{ID: m.ID, Author: m.Author, Role: m.Role, Name: m.Name, Body: m.Body, TS: m.Created, Deleted: m.IsDeleted()}
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
