package schema

import (
	"encoding/json"
	"net/netip"
	"time"
	"unicode"
	"unicode/utf8"
)

// The audit log (docs/api.md, "Audit log"): who did what to the control
// plane, when, from which address, and how it ended. Its entries are part
// of the replicated state: an admin action that is a command is proposed
// inside an Audited envelope and the state machine records its entry when
// it applies it, with the apply's outcome, identically on every node;
// actions that never reach the log as a command (a refusal at the API, a
// failed sign-in, a read of a secret) are recorded in batches by
// RecordAudit. No entry ever carries a command's payload: only the
// command's name, the IDs it targets and the names of the fields it sets.

// Actor kinds.
const (
	// ActorRoot is the cluster administrator (the token derived from the
	// cluster key).
	ActorRoot = "root"
	// ActorOperator is an operator: a session, or a sign-in with the
	// operator's password.
	ActorOperator = "operator"
	// ActorKey is an API key of a workspace.
	ActorKey = "key"
	// ActorAnonymous is a request whose credential was refused or absent,
	// or a sign-in that failed: Email is the address it gave, when it is a
	// well-formed one.
	ActorAnonymous = "anonymous"
)

// Actor is who made an audited action.
type Actor struct {
	Kind string `json:"kind"`
	// Workspace is the operator's or key's workspace, or the one a sign-in
	// named.
	Workspace string `json:"workspace,omitempty"`
	// ID is the operator's or the key's ID.
	ID string `json:"id,omitempty"`
	// Email is the email a sign-in gave (anonymous actors only).
	Email string `json:"email,omitempty"`
}

func (a Actor) validate() error {
	errs := []error{}
	switch a.Kind {
	case ActorRoot, ActorOperator, ActorKey, ActorAnonymous:
	default:
		errs = append(errs, invalidf("audit actor kind %q", a.Kind))
	}
	if a.Workspace != "" {
		errs = append(errs, CheckID("audit actor workspace", a.Workspace))
	}
	if a.ID != "" {
		errs = append(errs, checkAuditWord("audit actor id", a.ID, 80))
	}
	if a.Email != "" {
		errs = append(errs, checkEmail(a.Email))
	}
	return firstErr(errs...)
}

// Audit is what the proposing node knows of an action: who, from which
// client address, through which API route, and when (its clock).
type Audit struct {
	Actor Actor `json:"actor"`
	// Address is the client's IP address as the node saw it (after the
	// PROXY protocol of a trusted proxy). Empty: not from a client.
	Address string `json:"address,omitempty"`
	// Route is the API route the action came through, such as
	// "POST /v1/admin/workspaces/{ws}/keys".
	Route string    `json:"route,omitempty"`
	At    time.Time `json:"at"`
}

func (a Audit) validate() error {
	errs := []error{a.Actor.validate(), checkTime("audit", a.At)}
	if a.Address != "" {
		if _, err := netip.ParseAddr(a.Address); err != nil {
			errs = append(errs, invalidf("audit address %q: want an IP address", a.Address))
		}
	}
	if a.Route != "" {
		errs = append(errs, checkAuditWord("audit route", a.Route, 200))
	}
	return firstErr(errs...)
}

// AuditEntry is one record of the audit log.
type AuditEntry struct {
	// Seq orders the log: set by the state machine, from 1, one more for
	// each entry recorded. It is the paging cursor.
	Seq uint64 `json:"seq"`
	// Index is the log index of the command that recorded it.
	Index uint64 `json:"index"`
	Audit
	// Action is the command's name (create_key, delete_workspace, ...), or
	// "request" for an API request that applied no command (a refusal, a
	// read of a secret, a membership change).
	Action string `json:"action"`
	// Workspace the action was on; empty for the cluster's own (plans,
	// membership) and for what named no known workspace.
	Workspace string `json:"workspace,omitempty"`
	// Target names the object acted on within it: an operator, key or
	// session ID, a plan, a conversation, a secret's kind.
	Target string `json:"target,omitempty"`
	// Fields are the names of the fields the action set (an update's), never
	// their values.
	Fields []string `json:"fields,omitempty"`
	// Outcome is "ok" or the error code (docs/api.md) the action ended with.
	Outcome string `json:"outcome"`
	// Count is how many identical attempts this entry stands for when
	// more than one (refusals repeated within one batch).
	Count int `json:"count,omitempty"`
}

// OutcomeOK is an entry's outcome when the action succeeded.
const OutcomeOK = "ok"

// ActionRequest is the action of an API request that applied no command.
const ActionRequest = "request"

func (e AuditEntry) validate() error {
	errs := []error{
		e.Audit.validate(),
		checkAuditWord("audit action", e.Action, 64),
		checkAuditWord("audit outcome", e.Outcome, 64),
	}
	if e.Workspace != "" {
		errs = append(errs, CheckID("audit workspace", e.Workspace))
	}
	if e.Target != "" {
		errs = append(errs, checkAuditWord("audit target", e.Target, 128))
	}
	if len(e.Fields) > 16 {
		errs = append(errs, invalidf("audit entry with %d fields", len(e.Fields)))
	}
	for _, f := range e.Fields {
		errs = append(errs, checkAuditWord("audit field", f, 64))
	}
	if e.Count < 0 {
		errs = append(errs, invalidf("audit count %d", e.Count))
	}
	return firstErr(errs...)
}

// checkAuditWord checks a short printable string of at most n bytes.
func checkAuditWord(what, s string, n int) error {
	if s == "" || len(s) > n || !utf8.ValidString(s) {
		return invalidf("%s %q: want 1 to %d bytes of UTF-8", what, s, n)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return invalidf("%s %q: unprintable character", what, s)
		}
	}
	return nil
}

// Audited is a command proposed on behalf of an actor: the state machine
// applies Cmd as if alone, then records an AuditEntry of it with its
// outcome. Cmd is any type but a Request or another Audited; an Audited
// travels inside a Request like any command.
type Audited struct {
	Audit
	Cmd Command
}

func (Audited) Type() CommandType { return TypeAudited }

func (a Audited) Validate() error {
	if a.Cmd == nil {
		return invalidf("audited command of nothing")
	}
	if t := a.Cmd.Type(); t == TypeRequest || t == TypeAudited || NewCommand(t) == nil {
		return invalidf("audited command of type %d", t)
	}
	return firstErr(a.Audit.validate(), a.Cmd.Validate())
}

// auditedJSON is Audited on the wire: the audit's fields beside the inner
// command's type and JSON, as a Request carries its command.
type auditedJSON struct {
	Audit
	Type    CommandType     `json:"type"`
	Command json.RawMessage `json:"command"`
}

func (a Audited) MarshalJSON() ([]byte, error) {
	if a.Cmd == nil {
		return nil, invalidf("audited command of nothing")
	}
	cmd, err := json.Marshal(a.Cmd)
	if err != nil {
		return nil, err
	}
	t := a.Cmd.Type()
	if commands[t].skippable {
		t |= SkippableFlag
	}
	return json.Marshal(auditedJSON{Audit: a.Audit, Type: t, Command: cmd})
}

// UnmarshalJSON decodes as strictly as DecodeCommand.
func (a *Audited) UnmarshalJSON(b []byte) error {
	var j auditedJSON
	if err := decodeStrict(b, &j); err != nil {
		return invalidf("audited: %v", err)
	}
	cmd, err := decodeWrapped("audited", j.Type, j.Command, TypeRequest, TypeAudited)
	if err != nil {
		return err
	}
	a.Audit, a.Cmd = j.Audit, cmd
	return nil
}

// MaxAuditBatch bounds the entries of one RecordAudit.
const MaxAuditBatch = 100

// RecordAudit records entries of actions that applied no command (their
// Seq and Index are set by the state machine).
type RecordAudit struct {
	Entries []AuditEntry `json:"entries"`
}

func (RecordAudit) Type() CommandType { return TypeRecordAudit }

func (c RecordAudit) Validate() error {
	if len(c.Entries) == 0 || len(c.Entries) > MaxAuditBatch {
		return invalidf("audit batch of %d entries: want 1 to %d", len(c.Entries), MaxAuditBatch)
	}
	for _, e := range c.Entries {
		if err := e.validate(); err != nil {
			return err
		}
	}
	return nil
}

// PruneAudit forgets the audit entries made before Before (by their At):
// the retention, applied by the leader's pruner (every node drops the same
// entries, since Before is in the command).
type PruneAudit struct {
	Before time.Time `json:"before"`
}

func (PruneAudit) Type() CommandType { return TypePruneAudit }
func (c PruneAudit) Validate() error { return checkTime("prune audit before", c.Before) }

// CheckEmail checks an email address as an operator's (a bare address):
// what an audit entry's actor may carry.
func CheckEmail(e string) error { return checkEmail(e) }
