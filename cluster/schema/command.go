package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// CommandType is the first byte of every log entry package cluster writes; the
// JSON payload after it is decoded by the type. As in Consul, the numbers are
// a wire format shared by nodes of different versions and by every log and
// snapshot on disk: a type is only ever appended, never renumbered, reused or
// removed. A change to a command's meaning gets a new type; its old number
// keeps its old meaning forever.
//
// The high bit of the byte (SkippableFlag) says whether a node that does
// not know the type may skip the entry: set for commands whose effect no
// other state depends on, so that a node of an older version applying the
// log stays right without it. An unknown type without the flag stops the
// node's state machine (fsm.Apply panics, and the node stops at that entry
// every time it replays it) until the node is upgraded: applying the rest
// of the log without it would make this node's state diverge quietly.
type CommandType uint8

// SkippableFlag marks, in an entry's type byte, a command an older node may
// skip (see CommandType). The table says which types carry it.
const SkippableFlag CommandType = 0x80

// Command types. 0 is never valid, so a zeroed entry cannot pass for a command.
const (
	TypeCreateWorkspace    CommandType = 1
	TypeUpdateWorkspace    CommandType = 2
	TypeDeleteWorkspace    CommandType = 3
	TypeCreateOperator     CommandType = 4
	TypeUpdateOperator     CommandType = 5
	TypeDeleteOperator     CommandType = 6
	TypeCreateSession      CommandType = 7
	TypeRevokeSession      CommandType = 8
	TypeCreateKey          CommandType = 9
	TypeRevokeKey          CommandType = 10
	TypeSetSecret          CommandType = 11
	TypeSetPlan            CommandType = 12
	TypeReportUsage        CommandType = 13
	TypeRecordBillingEvent CommandType = 14
	TypePrune              CommandType = 15
	TypeAssign             CommandType = 16
	TypeRegisterNode       CommandType = 17
	TypeEraseConversation  CommandType = 18
	// TypeRequest is the envelope of a command with its request ID
	// (Request); Apply writes every command in one.
	TypeRequest CommandType = 19
	// TypeRehashPassword replaces an operator's password hash by the same
	// password at another cost (made when the operator signed in), only
	// if the hash is still the one it was made from.
	TypeRehashPassword CommandType = 20
	// TypeRotateSecret replaces a workspace's identity secret by a new one
	// and keeps the one it replaces valid until a time the proposer set.
	TypeRotateSecret CommandType = 21
	// TypeAudited is a command made on behalf of an actor (Audited): the
	// state machine applies it and records an audit entry of it.
	TypeAudited CommandType = 22
	// TypeRecordAudit records audit entries of actions that applied no
	// command; TypePruneAudit forgets those older than the retention.
	TypeRecordAudit CommandType = 23
	TypePruneAudit  CommandType = 24
	// TypeEraseVisitor erases every conversation of one visitor.
	TypeEraseVisitor CommandType = 25
	// TypeSetRetention sets how long a workspace keeps a conversation
	// after its last message.
	TypeSetRetention CommandType = 26
	// TypeSetVisitorDeletion sets what a visitor's request to be
	// forgotten does in a workspace.
	TypeSetVisitorDeletion CommandType = 27
	// TypeRequestDeletion records a visitor's request to be forgotten, for
	// an agent to confirm.
	TypeRequestDeletion CommandType = 28
	// Webhook endpoints (webhook.go): created with a sealed signing
	// secret, rotated with an overlap, deleted; the events a node gave
	// up delivering (dead letters), marked for redelivery and resolved.
	TypeCreateWebhook       CommandType = 29
	TypeRotateWebhookSecret CommandType = 30
	TypeDeleteWebhook       CommandType = 31
	TypeAddDeadLetters      CommandType = 32
	TypeRedeliverWebhook    CommandType = 33
	TypeResolveDeadLetters  CommandType = 34
	// TypeAckWebhookOutbox removes the control-plane events a node
	// delivered from an endpoint's outbox.
	TypeAckWebhookOutbox CommandType = 35
	// E-mail (email.go): a workspace's SMTP settings, their removal, and
	// a conversation's mail outcome and cursor.
	TypeSetEmailSettings    CommandType = 36
	TypeDeleteEmailSettings CommandType = 37
	TypeRecordMail          CommandType = 38
	// Append new types here, with the next number, and a row in commands
	// naming the protocol version that introduces it (ProtocolVersion,
	// raised by one in the release that first adds a command).
)

// commandInfo is a row of the command table.
type commandInfo struct {
	name string
	new  func() Command
	// skippable: an older node may skip the entry (SkippableFlag). None of
	// today's commands may be skipped: each changes state others read.
	skippable bool
	// since is the protocol version (version.go) that introduced the
	// command: 1 for those of the first release, 1 to 35. A command newer
	// than the lowest version among the members of a cluster is refused
	// before it enters the log (package cluster, ErrClusterUpgrading), so
	// that no node of an older version meets it and stops.
	since int
}

// commands is the table of every command type this binary knows: its name
// (for logs), its decoder, whether an older node may skip it and the
// protocol version that introduced it.
var commands = map[CommandType]commandInfo{
	TypeCreateWorkspace:     {"create_workspace", func() Command { return &CreateWorkspace{} }, false, 1},
	TypeUpdateWorkspace:     {"update_workspace", func() Command { return &UpdateWorkspace{} }, false, 1},
	TypeDeleteWorkspace:     {"delete_workspace", func() Command { return &DeleteWorkspace{} }, false, 1},
	TypeCreateOperator:      {"create_operator", func() Command { return &CreateOperator{} }, false, 1},
	TypeUpdateOperator:      {"update_operator", func() Command { return &UpdateOperator{} }, false, 1},
	TypeDeleteOperator:      {"delete_operator", func() Command { return &DeleteOperator{} }, false, 1},
	TypeCreateSession:       {"create_session", func() Command { return &CreateSession{} }, false, 1},
	TypeRevokeSession:       {"revoke_session", func() Command { return &RevokeSession{} }, false, 1},
	TypeCreateKey:           {"create_key", func() Command { return &CreateKey{} }, false, 1},
	TypeRevokeKey:           {"revoke_key", func() Command { return &RevokeKey{} }, false, 1},
	TypeSetSecret:           {"set_secret", func() Command { return &SetSecret{} }, false, 1},
	TypeSetPlan:             {"set_plan", func() Command { return &SetPlan{} }, false, 1},
	TypeReportUsage:         {"report_usage", func() Command { return &ReportUsage{} }, false, 1},
	TypeRecordBillingEvent:  {"record_billing_event", func() Command { return &RecordBillingEvent{} }, false, 1},
	TypePrune:               {"prune", func() Command { return &Prune{} }, false, 1},
	TypeAssign:              {"assign", func() Command { return &Assign{} }, false, 1},
	TypeRegisterNode:        {"register_node", func() Command { return &RegisterNode{} }, false, 1},
	TypeEraseConversation:   {"erase_conversation", func() Command { return &EraseConversation{} }, false, 1},
	TypeRequest:             {"request", func() Command { return &Request{} }, false, 1},
	TypeRehashPassword:      {"rehash_password", func() Command { return &RehashPassword{} }, false, 1},
	TypeRotateSecret:        {"rotate_secret", func() Command { return &RotateSecret{} }, false, 1},
	TypeAudited:             {"audited", func() Command { return &Audited{} }, false, 1},
	TypeRecordAudit:         {"record_audit", func() Command { return &RecordAudit{} }, false, 1},
	TypePruneAudit:          {"prune_audit", func() Command { return &PruneAudit{} }, false, 1},
	TypeEraseVisitor:        {"erase_visitor", func() Command { return &EraseVisitor{} }, false, 1},
	TypeSetRetention:        {"set_retention", func() Command { return &SetRetention{} }, false, 1},
	TypeSetVisitorDeletion:  {"set_visitor_deletion", func() Command { return &SetVisitorDeletion{} }, false, 1},
	TypeRequestDeletion:     {"request_deletion", func() Command { return &RequestDeletion{} }, false, 1},
	TypeCreateWebhook:       {"create_webhook", func() Command { return &CreateWebhook{} }, false, 1},
	TypeRotateWebhookSecret: {"rotate_webhook_secret", func() Command { return &RotateWebhookSecret{} }, false, 1},
	TypeDeleteWebhook:       {"delete_webhook", func() Command { return &DeleteWebhook{} }, false, 1},
	TypeAddDeadLetters:      {"add_dead_letters", func() Command { return &AddDeadLetters{} }, false, 1},
	TypeRedeliverWebhook:    {"redeliver_webhook", func() Command { return &RedeliverWebhook{} }, false, 1},
	TypeResolveDeadLetters:  {"resolve_dead_letters", func() Command { return &ResolveDeadLetters{} }, false, 1},
	TypeAckWebhookOutbox:    {"ack_webhook_outbox", func() Command { return &AckWebhookOutbox{} }, false, 1},
	TypeSetEmailSettings:    {"set_email_settings", func() Command { return &SetEmailSettings{} }, false, 2},
	TypeDeleteEmailSettings: {"delete_email_settings", func() Command { return &DeleteEmailSettings{} }, false, 2},
	TypeRecordMail:          {"record_mail", func() Command { return &RecordMail{} }, false, 2},
}

// known says whether this binary knows type t.
func known(t CommandType) bool {
	_, ok := commands[t]
	return ok
}

// NewCommand returns an empty command of type t to decode into, or nil when
// this binary does not know t.
func NewCommand(t CommandType) Command {
	if c, ok := commands[t]; ok {
		return c.new()
	}
	return nil
}

// String is the command's name, or "unknown(n)".
func (t CommandType) String() string {
	if c, ok := commands[t]; ok {
		return c.name
	}
	return fmt.Sprintf("unknown(%d)", uint8(t))
}

// UnknownCommandError is DecodeCommand's error for a type this binary does
// not know (an entry written by a newer version). It is ErrInvalid.
type UnknownCommandError struct {
	Type CommandType // without SkippableFlag
	// Skippable: the writer marked the entry as one an older node may skip.
	Skippable bool
}

func (e *UnknownCommandError) Error() string {
	if e.Skippable {
		return fmt.Sprintf("unknown command type %d, marked skippable (written by a newer version)", uint8(e.Type))
	}
	return fmt.Sprintf("unknown command type %d (written by a newer version?): upgrade this node", uint8(e.Type))
}

func (e *UnknownCommandError) Is(target error) bool { return target == ErrInvalid }

// Command is a change to the replicated state. Validate is called before a
// command is proposed, so nothing invalid enters the log, and again by the
// FSM when it applies the entry.
type Command interface {
	Type() CommandType
	Validate() error
}

// MaxCommandSize bounds an encoded command: the control plane's commands are
// small, and a huge entry would stall replication for everyone.
const MaxCommandSize = 64 << 10

// maxEntrySize bounds an encoded entry of type t: a Request, and an
// Audited inside it, may be a little larger than the command they carry.
func maxEntrySize(t CommandType) int {
	switch t {
	case TypeRequest:
		return MaxCommandSize + 2048
	case TypeAudited:
		return MaxCommandSize + 1536
	}
	return MaxCommandSize
}

// EncodeCommand validates cmd and encodes it as a log entry: its type byte,
// then its JSON.
func EncodeCommand(cmd Command) ([]byte, error) {
	if cmd == nil {
		return nil, invalidf("nil command")
	}
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	if !known(cmd.Type()) {
		return nil, invalidf("unknown command type %d", cmd.Type())
	}
	var buf bytes.Buffer
	tb := cmd.Type()
	if commands[tb].skippable {
		tb |= SkippableFlag
	}
	buf.WriteByte(byte(tb))
	if err := encodeJSON(&buf, cmd); err != nil {
		return nil, fmt.Errorf("encode command %d: %w", cmd.Type(), err)
	}
	if buf.Len() > maxEntrySize(cmd.Type()) {
		return nil, invalidf("command %d is %d bytes, more than %d", cmd.Type(), buf.Len(), maxEntrySize(cmd.Type()))
	}
	return buf.Bytes(), nil
}

// encodeJSON writes cmd's JSON and a newline to buf, as a json.Encoder
// does. A Request's own MarshalJSON writes compact JSON, which the Encoder
// would only read through once more.
func encodeJSON(buf *bytes.Buffer, cmd Command) error {
	var r *Request
	switch c := cmd.(type) {
	case Request:
		r = &c
	case *Request:
		r = c
	default:
		return json.NewEncoder(buf).Encode(cmd)
	}
	b, err := r.MarshalJSON()
	if err != nil {
		return err
	}
	buf.Write(b)
	return buf.WriteByte('\n')
}

// DecodeCommand decodes and validates a log entry written by EncodeCommand.
// Unknown types (*UnknownCommandError) and unknown fields are refused:
// applying a command only partly understood would let nodes of different
// versions diverge quietly.
func DecodeCommand(data []byte) (Command, error) {
	if len(data) == 0 {
		return nil, invalidf("empty command")
	}
	t := CommandType(data[0]) &^ SkippableFlag
	skippable := CommandType(data[0])&SkippableFlag != 0
	if len(data) > maxEntrySize(t) {
		return nil, invalidf("command of %d bytes, more than %d", len(data), maxEntrySize(t))
	}
	if t == 0 {
		return nil, invalidf("command type 0: a zeroed entry")
	}
	cmd := NewCommand(t)
	if cmd == nil {
		return nil, &UnknownCommandError{Type: t, Skippable: skippable}
	}
	if skippable != commands[t].skippable {
		return nil, invalidf("command type %d: skippable flag %v, the table says %v", t, skippable, commands[t].skippable)
	}
	var err error
	if r, ok := cmd.(*Request); ok {
		err = r.decode(data[1:])
	} else {
		err = decodeStrict(data[1:], cmd)
	}
	if err != nil {
		var unknown *UnknownCommandError
		if errors.As(err, &unknown) { // inside a Request
			return nil, unknown
		}
		return nil, invalidf("command type %d: %v", t, err)
	}
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// decodeWrapped decodes the command an envelope (Request, Audited) carries:
// typ and its JSON raw. A type of the table's nested kinds is refused, an
// unknown one (here or in an envelope inside) is an UnknownCommandError, so
// that it stops the state machine as at the top; what names the envelope
// in errors.
func decodeWrapped(what string, typ CommandType, raw []byte, nested ...CommandType) (Command, error) {
	t := typ &^ SkippableFlag
	if slices.Contains(nested, t) {
		return nil, invalidf("%s: command type %d", what, typ)
	}
	cmd := NewCommand(t)
	if cmd == nil {
		return nil, &UnknownCommandError{Type: t, Skippable: typ&SkippableFlag != 0}
	}
	if (typ&SkippableFlag != 0) != commands[t].skippable {
		return nil, invalidf("%s: command type %d: skippable flag does not match the table", what, t)
	}
	if err := decodeStrict(raw, cmd); err != nil {
		if unknown := (*UnknownCommandError)(nil); errors.As(err, &unknown) {
			return nil, unknown
		}
		return nil, invalidf("%s: command type %d: %v", what, typ, err)
	}
	return cmd, nil
}

// decodeStrict decodes the one JSON value b holds into v, refusing unknown
// fields and anything after the value.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// Result is what applying a command produced.
type Result struct {
	// Index is the log index at which the command was applied; for a
	// duplicate (of an idempotency key, or a second copy of a Request), the
	// index at which the original was. Wait for it with WaitApplied before
	// reading the change on another node.
	Index uint64 `json:"index"`
	// Version is an assignment's version: after a successful Assign the new
	// one, after a conflict the current one.
	Version uint64 `json:"version,omitempty"`
	// Duplicate says the idempotency key had been applied already; the state
	// was not changed and Index is the original's.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Workspace commands.

// CreateWorkspace creates a workspace; ErrExists if the ID is taken.
type CreateWorkspace struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Region  string    `json:"region,omitempty"` // "" = unpinned
	Plan    string    `json:"plan"`
	Brands  []Brand   `json:"brands,omitempty"`
	Created time.Time `json:"created"`
}

func (CreateWorkspace) Type() CommandType { return TypeCreateWorkspace }

func (c CreateWorkspace) Validate() error {
	return firstErr(
		CheckID("workspace id", c.ID),
		checkName("workspace name", c.Name),
		CheckRegion(c.Region),
		checkPlanName(c.Plan),
		checkBrands(c.Brands),
		checkTime("created", c.Created),
	)
}

// UpdateWorkspace changes the fields that are set; nil leaves a field alone.
// Brands, when set, replaces the list; keys scoped to a brand that is no
// longer listed are revoked.
type UpdateWorkspace struct {
	ID     string   `json:"id"`
	Name   *string  `json:"name,omitempty"`
	Region *string  `json:"region,omitempty"`
	Plan   *string  `json:"plan,omitempty"`
	Brands *[]Brand `json:"brands,omitempty"`
}

func (UpdateWorkspace) Type() CommandType { return TypeUpdateWorkspace }

func (c UpdateWorkspace) Validate() error {
	errs := []error{CheckID("workspace id", c.ID)}
	if c.Name == nil && c.Region == nil && c.Plan == nil && c.Brands == nil {
		errs = append(errs, invalidf("update of workspace %q changes nothing", c.ID))
	}
	if c.Name != nil {
		errs = append(errs, checkName("workspace name", *c.Name))
	}
	if c.Region != nil {
		errs = append(errs, CheckRegion(*c.Region))
	}
	if c.Plan != nil {
		errs = append(errs, checkPlanName(*c.Plan))
	}
	if c.Brands != nil {
		errs = append(errs, checkBrands(*c.Brands))
	}
	return firstErr(errs...)
}

// DeleteWorkspace deletes a workspace with its operators, sessions, keys,
// secrets, usage, billing events and assignments. Idempotency records stay,
// so a late retry of a usage report is still answered as a duplicate. The
// ID stays recorded as deleted: CreateWorkspace refuses it forever, and
// every node purges the workspace's data and refuses it from peers.
type DeleteWorkspace struct {
	ID string `json:"id"`
}

func (DeleteWorkspace) Type() CommandType { return TypeDeleteWorkspace }
func (c DeleteWorkspace) Validate() error { return CheckID("workspace id", c.ID) }

// Operator commands. Passwords never enter the log: PasswordHash must be a
// hash made by HashPassword, which Validate checks by its format.

// CreateOperator adds an operator; ErrExists if the ID or the email is taken
// in the workspace, ErrOverLimit if the plan's seats are all used.
type CreateOperator struct {
	Workspace    string    `json:"workspace"`
	ID           string    `json:"id"`
	Email        string    `json:"email"`
	Name         string    `json:"name"`
	Role         Role      `json:"role"`
	PasswordHash string    `json:"password_hash"`
	Created      time.Time `json:"created"`
}

func (CreateOperator) Type() CommandType { return TypeCreateOperator }

func (c CreateOperator) Validate() error {
	return firstErr(
		CheckID("workspace id", c.Workspace),
		CheckID("operator id", c.ID),
		checkEmail(c.Email),
		checkName("operator name", c.Name),
		c.Role.validate(),
		checkPasswordHash(c.PasswordHash),
		checkTime("created", c.Created),
	)
}

// UpdateOperator changes the fields that are set. A new password hash
// revokes the operator's sessions.
type UpdateOperator struct {
	Workspace    string  `json:"workspace"`
	ID           string  `json:"id"`
	Name         *string `json:"name,omitempty"`
	Role         *Role   `json:"role,omitempty"`
	PasswordHash *string `json:"password_hash,omitempty"`
}

func (UpdateOperator) Type() CommandType { return TypeUpdateOperator }

// RehashPassword replaces an operator's password hash Old by New, the same
// password hashed at the node's current cost; made on a successful sign-in
// with a hash of another cost. Unlike a new password (UpdateOperator), it
// keeps the operator's sessions. If the hash is no longer Old (the password
// was changed meanwhile) it is refused with ErrConflict and changes nothing.
type RehashPassword struct {
	Workspace string `json:"workspace"`
	ID        string `json:"id"`
	Old       string `json:"old"`
	New       string `json:"new"`
}

func (RehashPassword) Type() CommandType { return TypeRehashPassword }

func (c RehashPassword) Validate() error {
	return firstErr(CheckID("workspace id", c.Workspace), CheckID("operator id", c.ID),
		checkPasswordHash(c.Old), checkPasswordHash(c.New))
}

func (c UpdateOperator) Validate() error {
	errs := []error{CheckID("workspace id", c.Workspace), CheckID("operator id", c.ID)}
	if c.Name == nil && c.Role == nil && c.PasswordHash == nil {
		errs = append(errs, invalidf("update of operator %q changes nothing", c.ID))
	}
	if c.Name != nil {
		errs = append(errs, checkName("operator name", *c.Name))
	}
	if c.Role != nil {
		errs = append(errs, c.Role.validate())
	}
	if c.PasswordHash != nil {
		errs = append(errs, checkPasswordHash(*c.PasswordHash))
	}
	return firstErr(errs...)
}

// DeleteOperator removes an operator, deletes its sessions and unassigns its
// conversations (bumping their versions).
type DeleteOperator struct {
	Workspace string `json:"workspace"`
	ID        string `json:"id"`
}

func (DeleteOperator) Type() CommandType { return TypeDeleteOperator }

func (c DeleteOperator) Validate() error {
	return firstErr(CheckID("workspace id", c.Workspace), CheckID("operator id", c.ID))
}

// Session commands. Only the SHA-256 of the session token is in the log; the
// ID is derived from it (SessionID) so it can be shown and revoked without
// revealing anything that authenticates.

// CreateSession records a session of an operator.
type CreateSession struct {
	Hash      Hash      `json:"hash"`
	Workspace string    `json:"workspace"`
	Operator  string    `json:"operator"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
}

func (CreateSession) Type() CommandType { return TypeCreateSession }

func (c CreateSession) Validate() error {
	errs := []error{
		checkHash("session hash", c.Hash),
		CheckID("workspace id", c.Workspace),
		CheckID("operator id", c.Operator),
		checkTime("created", c.Created),
		checkTime("expires", c.Expires),
	}
	if !c.Expires.After(c.Created) {
		errs = append(errs, invalidf("session expires before it is created"))
	}
	return firstErr(errs...)
}

// RevokeSession revokes a session by its ID. Revoked sessions are kept (so
// AuthenticateSession answers ErrRevoked) until Prune removes them after
// they expire.
type RevokeSession struct {
	ID string `json:"id"`
}

func (RevokeSession) Type() CommandType { return TypeRevokeSession }
func (c RevokeSession) Validate() error { return checkDerivedID("session id", sessionPrefix, c.ID) }

// Key commands. As with sessions, only the SHA-256 of the raw key is logged.

// CreateKey records an API key scoped to a workspace, or to one of its
// brands when Brand is set.
type CreateKey struct {
	Hash      Hash      `json:"hash"`
	Workspace string    `json:"workspace"`
	Brand     string    `json:"brand,omitempty"`
	Name      string    `json:"name"`
	Created   time.Time `json:"created"`
}

func (CreateKey) Type() CommandType { return TypeCreateKey }

func (c CreateKey) Validate() error {
	errs := []error{
		checkHash("key hash", c.Hash),
		CheckID("workspace id", c.Workspace),
		checkName("key name", c.Name),
		checkTime("created", c.Created),
	}
	if c.Brand != "" {
		errs = append(errs, CheckID("brand id", c.Brand))
	}
	return firstErr(errs...)
}

// RevokeKey revokes an API key by its ID. The key stays listed, revoked.
type RevokeKey struct {
	ID string `json:"id"`
}

func (RevokeKey) Type() CommandType { return TypeRevokeKey }
func (c RevokeKey) Validate() error { return checkDerivedID("key id", keyPrefix, c.ID) }

// SetSecret stores a workspace secret sealed under the cluster master key:
// the log and the snapshots carry only ciphertext.
type SetSecret struct {
	Workspace string     `json:"workspace"`
	Kind      SecretKind `json:"kind"`
	Sealed    Sealed     `json:"sealed"`
}

func (SetSecret) Type() CommandType { return TypeSetSecret }

func (c SetSecret) Validate() error {
	return firstErr(CheckID("workspace id", c.Workspace), c.Kind.validate(), c.Sealed.validate())
}

// MaxSecretOverlap bounds how long a rotated identity secret stays valid
// beside its successor.
const MaxSecretOverlap = 30 * 24 * time.Hour

// RotateSecret replaces a workspace's identity secret by Sealed (a new one
// sealed by the proposer) and keeps the secret it replaces valid until
// OverlapUntil; a secret kept from an earlier rotation is dropped. Both
// times are the proposer's clock: the state machine never reads one, and
// each verifier compares OverlapUntil with its own. A workspace without an
// identity secret just gets Sealed.
type RotateSecret struct {
	Workspace    string     `json:"workspace"`
	Kind         SecretKind `json:"kind"`
	Sealed       Sealed     `json:"sealed"`
	Rotated      time.Time  `json:"rotated"`
	OverlapUntil time.Time  `json:"overlap_until"`
}

func (RotateSecret) Type() CommandType { return TypeRotateSecret }

func (c RotateSecret) Validate() error {
	errs := []error{CheckID("workspace id", c.Workspace), c.Sealed.validate(), checkOverlap(c.Rotated, c.OverlapUntil)}
	if c.Kind != SecretIdentity {
		errs = append(errs, invalidf("secret kind %q: only the identity secret rotates", c.Kind))
	}
	return firstErr(errs...)
}

// checkOverlap checks a rotation's times: both set, the overlap from 0 to
// MaxSecretOverlap.
func checkOverlap(rotated, until time.Time) error {
	if d := until.Sub(rotated); d < 0 || d > MaxSecretOverlap {
		return invalidf("overlap of %v: want 0 to %v", d, MaxSecretOverlap)
	}
	return firstErr(checkTime("rotated", rotated), checkTime("overlap end", until))
}

// Billing commands.

// SetPlan creates or replaces a plan.
type SetPlan struct {
	Plan Plan `json:"plan"`
}

func (SetPlan) Type() CommandType { return TypeSetPlan }
func (c SetPlan) Validate() error { return c.Plan.validate() }

// ReportUsage adds a node's usage increments to a workspace's period. It is
// applied exactly once per IdempotencyKey: a node retrying the same report,
// on any node and across leader changes, gets the original Result back with
// Duplicate set. The same key with different counts is ErrConflict.
type ReportUsage struct {
	NodeID        string `json:"node"`
	Workspace     string `json:"workspace"`
	Period        string `json:"period"` // "2026-11"
	Conversations int64  `json:"conversations"`
	// Messages may be negative: a node takes back messages it counted
	// that the cluster holds as another node's (two nodes accepted one
	// message id; the earlier copy won). The period's total never goes
	// below zero.
	Messages       int64  `json:"messages"`
	IdempotencyKey string `json:"idempotency_key"`
}

func (ReportUsage) Type() CommandType { return TypeReportUsage }

func (c ReportUsage) Validate() error {
	return firstErr(
		CheckID("node id", c.NodeID),
		CheckID("workspace id", c.Workspace),
		checkPeriod(c.Period),
		checkCount("conversations", c.Conversations),
		checkCount("messages", max(c.Messages, -c.Messages)),
		checkIdempotencyKey(c.IdempotencyKey),
	)
}

// Fingerprint identifies the report's effect, without the reporting node:
// a retry through another node is the same report.
func (c ReportUsage) Fingerprint() string {
	return fingerprint("usage", c.Workspace, c.Period, c.Conversations, c.Messages)
}

// RecordBillingEvent appends a billing event, exactly once per idempotency
// key, like ReportUsage.
type RecordBillingEvent struct {
	Event BillingEvent `json:"event"`
}

func (RecordBillingEvent) Type() CommandType { return TypeRecordBillingEvent }
func (c RecordBillingEvent) Validate() error { return c.Event.validate() }

// Prune forgets what is no longer needed: idempotency records of periods
// before Before (so a retry older than that would apply twice: prune only
// periods no node reports any more), and sessions that expired before Now.
// Either may be left zero.
type Prune struct {
	Before string    `json:"before,omitempty"`
	Now    time.Time `json:"now,omitzero"`
}

func (Prune) Type() CommandType { return TypePrune }

func (c Prune) Validate() error {
	if c.Before == "" && c.Now.IsZero() {
		return invalidf("prune of nothing")
	}
	if c.Before != "" {
		return checkPeriod(c.Before)
	}
	return nil
}

// Assign gives a conversation to an operator ("" unassigns) if its current
// version is ExpectVersion (0: never assigned), and bumps the version. Of two
// assignments made with the same expected version exactly one succeeds; the
// other gets ErrConflict and the current version in Result.Version.
type Assign struct {
	Workspace     string `json:"workspace"`
	Conversation  string `json:"conversation"`
	Operator      string `json:"operator,omitempty"`
	ExpectVersion uint64 `json:"expect_version"`
}

func (Assign) Type() CommandType { return TypeAssign }

func (c Assign) Validate() error {
	errs := []error{CheckID("workspace id", c.Workspace), checkConversation(c.Conversation)}
	if c.Operator != "" {
		errs = append(errs, CheckID("operator id", c.Operator))
	}
	return firstErr(errs...)
}

// RegisterNode records a node's region and addresses, so any node can find
// another's API address (to forward to the leader) and place voters across
// regions.
type RegisterNode struct {
	Node NodeInfo `json:"node"`
}

func (RegisterNode) Type() CommandType { return TypeRegisterNode }
func (c RegisterNode) Validate() error { return c.Node.validate() }
