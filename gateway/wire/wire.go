// Package wire is Parley's client wire protocol (docs/protocol.md) as Go
// values: the frame type names, the frames as structs, the error codes and
// the close codes. It is the one place they are defined: the gateway
// encodes and decodes with it, and the Go client (parley/gateway/client)
// and the bench speak it. It imports only the shared words below it
// (ident, crdt), never a server package.
package wire

import (
	"parley/crdt"
	"parley/ident"
)

// ProtocolVersion is the wire protocol version, the v of hello and welcome.
const ProtocolVersion = 1

// MaxFrameBytes is the largest frame a client may send.
const MaxFrameBytes = 16 << 10

// Frame types a client sends.
const (
	TypeHello  = "hello"
	TypePing   = "ping"
	TypeStart  = "start"
	TypeList   = "list"
	TypeResume = "resume"
	TypeSend   = "send"
	TypeEdit   = "edit"
	TypeDelete = "delete"
	TypeTyping = "typing" // also sent by the node
	TypeView   = "view"
	TypeRead   = "read" // also sent by the node
	TypeForget = "forget"
	TypeStatus = "status" // an agent's away or back
	// TypeInbox sets a conversation's status or one of its tags (agents).
	TypeInbox = "inbox"
	// TypeContext tells the visitor's page context (visitors).
	TypeContext = "context"
)

// Frame types the node sends.
const (
	TypeWelcome       = "welcome"
	TypePong          = "pong"
	TypeStarted       = "started"
	TypeConversations = "conversations"
	TypeResumed       = "resumed"
	TypeAck           = "ack"
	TypeDeliver       = "deliver"
	TypePresence      = "presence"
	TypeViewing       = "viewing"
	TypeError         = "error"
	TypeForgotten     = "forgotten"
)

// Error codes of error frames. docs/protocol.md documents each; a test
// checks that the two agree.
const (
	CodeBadFrame           = "bad_frame"
	CodeTooLarge           = "too_large"
	CodeUnknownType        = "unknown_type"
	CodeVersionUnsupported = "version_unsupported"
	CodeBadRequest         = "bad_request"
	CodeUnauthenticated    = "unauthenticated"
	CodeAuthFailed         = "auth_failed"
	CodeForbidden          = "forbidden"
	CodeNotFound           = "not_found"
	CodeRateLimited        = "rate_limited"
	CodeOverLimit          = "over_limit"
	CodeSlowConsumer       = "slow_consumer"
	CodeOverloaded         = "overloaded" // a change refused at the edge; carries retry_ms
	CodeUnavailable        = "unavailable"
	CodeInternal           = "internal"
	// CodeBadEmail: a send or edit of a message whose ID starts with
	// email- (ident.EmailMessagePrefix) whose body is not an e-mail
	// address.
	CodeBadEmail = "bad_email"
	// CodeClusterUpgrading: what the frame asks for needs every node of
	// the cluster at a newer protocol version than one of them runs (a
	// rolling upgrade is under way): an internal message. Retry once every
	// node is upgraded.
	CodeClusterUpgrading = "cluster_upgrading"
)

// Codes lists every error code.
var Codes = []string{
	CodeBadFrame, CodeTooLarge, CodeUnknownType, CodeVersionUnsupported,
	CodeBadRequest, CodeUnauthenticated, CodeAuthFailed, CodeForbidden,
	CodeNotFound, CodeRateLimited, CodeOverLimit, CodeSlowConsumer, CodeOverloaded, CodeUnavailable, CodeInternal, CodeBadEmail, CodeClusterUpgrading,
}

// Close codes: the WebSocket close status (or WebTransport session error
// code) a connection ends with.
const (
	CloseNormal       = 1000
	CloseTooLarge     = 1009
	CloseRestart      = 1012
	CloseBadVersion   = 4400
	CloseUnauthentic  = 4401
	CloseAuthFailed   = 4403
	CloseSlowConsumer = 4408
	CloseRateLimited  = 4429
)

// In is any frame a client sends; which fields count depends on Type.
type In struct {
	Type       string     `json:"type"`
	Ref        string     `json:"ref"`
	V          int        `json:"v"`
	Workspace  string     `json:"workspace"`
	Role       ident.Role `json:"role"`
	VisitorID  string     `json:"visitor_id"`
	VisitorSig string     `json:"visitor_sig"`
	UserID     string     `json:"user_id"`
	UserHash   string     `json:"user_hash"`
	// IdentityToken is a verified visitor's signed, expiring identity
	// (a JWT, HS256), instead of user_id and user_hash.
	IdentityToken string  `json:"identity_token"`
	Name          string  `json:"name"`
	Token         string  `json:"token"`
	Conversation  string  `json:"conversation"`
	ID            string  `json:"id"`
	Body          *string `json:"body"`
	After         uint64  `json:"after"`
	Since         string  `json:"since"`
	Seq           uint64  `json:"seq"`
	Typing        bool    `json:"typing"`
	Viewing       *bool   `json:"viewing"`
	// Away is a status frame's: the agent is away (true) or back (false);
	// in an agent's hello, away from the start.
	Away *bool `json:"away"`
	// Cursor pages a list (where the previous page's next left off).
	Cursor string `json:"cursor"`
	// Internal: a send that is an agents' note, never shown to the
	// visitor.
	Internal bool `json:"internal"`
	// Status: an inbox frame's new status; a list's filter (agents).
	Status string `json:"status"`
	// Until: an inbox frame's end of a snooze, unix ms.
	Until int64 `json:"until"`
	// Tag: an inbox frame's tag, set On or off; a list's filter.
	Tag string `json:"tag"`
	On  bool   `json:"on"`
	// Assignee: a list's filter (agents): "me", "-" for unassigned, or
	// an operator's ID.
	Assignee string `json:"assignee"`
	// Context: a context frame's.
	Context *crdt.VisitorContext `json:"context"`
}

// Hello is the first frame of a connection, as a client writes it.
type Hello struct {
	Type       string     `json:"type"`
	V          int        `json:"v"`
	Workspace  string     `json:"workspace"`
	Role       ident.Role `json:"role"`
	Name       string     `json:"name,omitempty"`
	Token      string     `json:"token,omitempty"`
	VisitorID  string     `json:"visitor_id,omitempty"`
	VisitorSig string     `json:"visitor_sig,omitempty"`
	UserID     string     `json:"user_id,omitempty"`
	UserHash   string     `json:"user_hash,omitempty"`
	// IdentityToken: see In.
	IdentityToken string `json:"identity_token,omitempty"`
	// Away: an agent away from the start (see In).
	Away bool `json:"away,omitempty"`
}

// Error is an error frame.
type Error struct {
	Type    string `json:"type"`
	Ref     string `json:"ref,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryMS, on overloaded and some rate_limited errors, is how many
	// milliseconds to wait before sending the same frame again; 0: not
	// said.
	RetryMS int64 `json:"retry_ms,omitempty"`
}

// Welcome answers hello.
type Welcome struct {
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

// Ref is a frame that answers a ref: pong, started, and the ack of a view.
type Ref struct {
	Type         string `json:"type"`
	Ref          string `json:"ref,omitempty"`
	Conversation string `json:"conversation,omitempty"`
}

// Resumed ends a resume's replay (or one page of it, when More).
type Resumed struct {
	Type         string `json:"type"`
	Ref          string `json:"ref,omitempty"`
	Conversation string `json:"conversation"`
	Head         uint64 `json:"head"`
	More         bool   `json:"more,omitempty"`
}

// Ack acknowledges a send, edit, delete or read.
type Ack struct {
	Type         string          `json:"type"`
	Ref          string          `json:"ref,omitempty"`
	Conversation string          `json:"conversation"`
	ID           string          `json:"id,omitempty"`
	Seq          uint64          `json:"seq"`
	TS           *crdt.Timestamp `json:"ts,omitempty"`
	Dup          bool            `json:"dup"`
}

// Message is a message as clients see it.
type Message struct {
	ID      string          `json:"id"`
	Author  string          `json:"author"`
	Role    ident.Role      `json:"role"`
	Name    string          `json:"name,omitempty"`
	Body    string          `json:"body"`
	TS      crdt.Timestamp  `json:"ts"`
	Edited  *crdt.Timestamp `json:"edited"`
	Deleted bool            `json:"deleted"`
	// Internal and Kind: only agents ever get internal messages (notes,
	// and inbox changes, whose Kind names them; crdt.Message).
	Internal bool   `json:"internal,omitempty"`
	Kind     string `json:"kind,omitempty"`
}

// Deliver carries a message's current state.
type Deliver struct {
	Type         string `json:"type"`
	Conversation string `json:"conversation"`
	Seq          uint64 `json:"seq"`
	// At is the event's stamp, "origin.oseq"; a client keeps the highest
	// oseq of each origin as its vector for resume's since.
	At string `json:"at,omitempty"`
	// Also, in a replay only: the stamps of the message's earlier events
	// in the same replay, which this frame covers.
	Also    []string `json:"also,omitempty"`
	Message Message  `json:"message"`
}

// Read is a read receipt.
type Read struct {
	Type         string     `json:"type"`
	Conversation string     `json:"conversation"`
	Participant  string     `json:"participant"`
	Role         ident.Role `json:"role"`
	Seq          uint64     `json:"seq"`
}

// Typing says a participant is typing, or stopped.
type Typing struct {
	Type         string     `json:"type"`
	Conversation string     `json:"conversation"`
	Participant  string     `json:"participant"`
	Role         ident.Role `json:"role"`
	Name         string     `json:"name,omitempty"`
	Typing       bool       `json:"typing"`
	ExpiresMS    int64      `json:"expires_ms"`
}

// Presence says a participant came online or left.
type Presence struct {
	Type        string     `json:"type"`
	Participant string     `json:"participant"`
	Role        ident.Role `json:"role"`
	Name        string     `json:"name,omitempty"`
	Online      bool       `json:"online"`
	// Away: online, but the agent said they are away (on every
	// connection): visitors should not expect a reply soon.
	Away          bool     `json:"away,omitempty"`
	Conversations []string `json:"conversations,omitempty"`
}

// Viewing tells agents that an agent started or stopped viewing a
// conversation.
type Viewing struct {
	Type         string     `json:"type"`
	Conversation string     `json:"conversation"`
	Participant  string     `json:"participant"`
	Role         ident.Role `json:"role"`
	Name         string     `json:"name,omitempty"`
	Viewing      bool       `json:"viewing"`
}

// Conversation is one item of a conversations frame.
type Conversation struct {
	ID        string            `json:"id"`
	Owner     string            `json:"owner"`
	OwnerName string            `json:"owner_name,omitempty"`
	Created   int64             `json:"created"`
	Updated   int64             `json:"updated"`
	Head      uint64            `json:"head"`
	Last      *Message          `json:"last"`
	Reads     map[string]uint64 `json:"reads"`
	Unread    int               `json:"unread"`
	// The inbox state, for agents only: the status now (open, pending,
	// snoozed, resolved), when a snooze ends, the tags that are on, the
	// assignee (an operator's ID, from the control plane) and the
	// visitor's context.
	Status   crdt.Status          `json:"status,omitempty"`
	Until    int64                `json:"until,omitempty"`
	Tags     []string             `json:"tags,omitempty"`
	Assignee string               `json:"assignee,omitempty"`
	Context  *crdt.VisitorContext `json:"context,omitempty"`
}

// Forgotten answers forget: Erased true when every conversation of the
// visitor was erased at once, false when the request awaits an agent's
// confirmation.
type Forgotten struct {
	Type   string `json:"type"`
	Ref    string `json:"ref,omitempty"`
	Erased bool   `json:"erased"`
}

// Conversations answers list.
type Conversations struct {
	Type  string         `json:"type"`
	Ref   string         `json:"ref,omitempty"`
	Items []Conversation `json:"items"`
	// Next is the cursor of the next page (list with "cursor"); left out
	// on the last page.
	Next string `json:"next,omitempty"`
}
