package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Webhooks: endpoints of a workspace that Parley POSTs signed events to
// (package webhook, docs/api.md). The control plane holds each endpoint,
// its signing secrets sealed under the master key (as the identity
// secret), and the events given up on (dead letters) until they are
// redelivered.

// Event types a webhook endpoint may ask for.
const (
	EventConversationCreated = "conversation.created"
	EventMessageCreated      = "message.created"
	EventMessageEdited       = "message.edited"
	EventMessageDeleted      = "message.deleted"
	EventVisitorIdentified   = "visitor.identified"
	// EventConversationStatusChanged: an agent set a conversation's
	// status (open, pending, snoozed, resolved); from its log, like the
	// message events.
	EventConversationStatusChanged = "conversation.status_changed"
	// Events of the control plane: kept in an endpoint's outbox in the
	// state (OutboxEntry) until delivered.
	EventConversationAssigned = "conversation.assigned"
	EventVisitorErased        = "visitor.erased"
)

// WebhookEventTypes are the event types Parley sends, in the order
// docs/api.md lists them.
var WebhookEventTypes = []string{EventConversationCreated, EventMessageCreated, EventMessageEdited, EventMessageDeleted,
	EventVisitorIdentified, EventConversationAssigned, EventVisitorErased, EventConversationStatusChanged}

// OutboxOrigin is the origin of a control-plane event in a dead letter
// (its OSeq is the log index of the change).
const OutboxOrigin = "control"

// OutboxEntry is an event of the control plane waiting in an endpoint's
// outbox: recorded by the state machine with the change that made it, in
// log order, and removed once a node delivered it (AckWebhookOutbox).
type OutboxEntry struct {
	// Index is the log index of the change: the event's identity.
	Index uint64 `json:"index"`
	Type  string `json:"type"`
	// At is when the leader appended the change to the log.
	At           time.Time `json:"at,omitzero"`
	Conversation string    `json:"conversation,omitempty"`
	// Operator and Version: an assignment's ("" unassigned).
	Operator string `json:"operator,omitempty"`
	Version  uint64 `json:"version,omitempty"`
	// Visitor: an erased visitor's participant.
	Visitor string `json:"visitor,omitempty"`
}

// Limits of webhooks.
const (
	MaxWebhooksPerWorkspace = 16
	MaxWebhookURL           = 2048
	// MaxDeadLetters bounds the dead letters an endpoint keeps; past it
	// the oldest are forgotten (and counted in DeadDropped).
	MaxDeadLetters = 1000
	// MaxDeadLetterBatch bounds the letters one command carries.
	MaxDeadLetterBatch = 100
	// MaxOutbox bounds an endpoint's control-plane events waiting to be
	// delivered; past it the oldest become dead letters.
	MaxOutbox     = 1000
	webhookPrefix = "wh_"
)

// Webhook is an endpoint as the API shows it: never its secret.
type Webhook struct {
	ID        string    `json:"id"`
	Workspace string    `json:"workspace"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Created   time.Time `json:"created"`
	// Rotated is when the secret was last rotated; zero: never.
	Rotated time.Time `json:"rotated,omitzero"`
	// PreviousUntil is when the secret the last rotation replaced stops
	// signing (its signature is sent beside the new one until then).
	PreviousUntil time.Time `json:"previous_valid_until,omitzero"`
	// Dead counts the endpoint's dead letters held; DeadDropped those
	// forgotten past MaxDeadLetters.
	Dead        int    `json:"dead"`
	DeadDropped uint64 `json:"dead_dropped,omitempty"`
	// Pending counts the control plane's events waiting in its outbox.
	Pending int `json:"pending,omitempty"`
}

// Wants says whether the endpoint asked for events of type t.
func (w Webhook) Wants(t string) bool { return slices.Contains(w.Events, t) }

// DeadLetter is an event a node gave up delivering to an endpoint after
// retrying it for the node's retry period. It holds the event's identity,
// never its content: a redelivery reads the event again from the
// conversation (so an erasure since leaves nothing to send).
type DeadLetter struct {
	EventID      string `json:"event_id"`
	Type         string `json:"type"`
	Conversation string `json:"conversation"`
	// Origin and OSeq name the conversation's event (its stamp); both
	// empty for conversation.created and visitor.identified; OutboxOrigin
	// and the log index for a control-plane event.
	Origin string `json:"origin,omitempty"`
	OSeq   uint64 `json:"oseq,omitempty"`
	// Visitor is visitor.erased's visitor (its Conversation is empty).
	Visitor   string    `json:"visitor,omitempty"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	Dead      time.Time `json:"dead"`
	// Redeliver: an operator asked for it to be sent again; the node
	// sending the conversation's events does so and resolves the letter.
	Redeliver bool `json:"redeliver,omitempty"`
}

func (d DeadLetter) validate() error {
	errs := []error{checkEventID(d.EventID), checkTime("dead", d.Dead)}
	if d.Type == EventVisitorErased {
		errs = append(errs, CheckVisitor(d.Visitor))
	} else {
		errs = append(errs, checkConversation(d.Conversation))
	}
	if !slices.Contains(WebhookEventTypes, d.Type) {
		errs = append(errs, invalidf("event type %q", d.Type))
	}
	if len(d.Origin) > 128 || len(d.LastError) > 512 || d.Attempts < 0 {
		errs = append(errs, invalidf("dead letter %s: origin, error or attempts out of range", d.EventID))
	}
	return firstErr(errs...)
}

// CheckWebhookID checks an endpoint ID: "wh_" and 1 to 61 of a-z 0-9 _ -.
func CheckWebhookID(id string) error {
	if !strings.HasPrefix(id, webhookPrefix) || CheckID("webhook id", id) != nil {
		return invalidf("webhook id %q: want wh_ and 1 to 61 of a-z 0-9 _ -", id)
	}
	return nil
}

// checkEventID checks a webhook event ID: "evt_" and 32 lowercase hex digits.
func checkEventID(id string) error {
	h, ok := strings.CutPrefix(id, "evt_")
	if !ok || len(h) != 32 || strings.Trim(h, "0123456789abcdef") != "" {
		return invalidf("event id %q: want evt_ and 32 lowercase hex digits", id)
	}
	return nil
}

// CheckWebhookURL checks an endpoint's URL: absolute http or https, a
// host, no user information or fragment. Whether its address may be
// reached is the sending node's decision, at each connection.
func CheckWebhookURL(s string) error {
	if s == "" || len(s) > MaxWebhookURL {
		return invalidf("webhook url of %d bytes: want 1 to %d", len(s), MaxWebhookURL)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return invalidf("webhook url %q: want http(s)://host[:port]/path, without user or fragment", s)
	}
	return nil
}

// CheckWebhookEvents checks an endpoint's event list: 1 or more known
// types, each once.
func CheckWebhookEvents(evs []string) error {
	if len(evs) == 0 {
		return invalidf("webhook events: want at least one of %s", strings.Join(WebhookEventTypes, ", "))
	}
	for i, e := range evs {
		if !slices.Contains(WebhookEventTypes, e) {
			return invalidf("webhook event %q: want one of %s", e, strings.Join(WebhookEventTypes, ", "))
		}
		if slices.Contains(evs[:i], e) {
			return invalidf("webhook event %q listed twice", e)
		}
	}
	return nil
}

// CreateWebhook adds an endpoint to a workspace with its signing secret,
// sealed by the proposer; ErrExists if the ID is taken, ErrOverLimit past
// MaxWebhooksPerWorkspace.
type CreateWebhook struct {
	Workspace string    `json:"workspace"`
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Sealed    Sealed    `json:"sealed"`
	Created   time.Time `json:"created"`
}

func (CreateWebhook) Type() CommandType { return TypeCreateWebhook }

func (c CreateWebhook) Validate() error {
	return firstErr(CheckID("workspace id", c.Workspace), CheckWebhookID(c.ID), CheckWebhookURL(c.URL),
		CheckWebhookEvents(c.Events), c.Sealed.validate(), checkTime("created", c.Created))
}

// RotateWebhookSecret replaces an endpoint's signing secret by Sealed and
// keeps signing with the one it replaces, beside it, until OverlapUntil
// (the proposer's clock, as RotateSecret); a secret kept from an earlier
// rotation is dropped.
type RotateWebhookSecret struct {
	Workspace    string    `json:"workspace"`
	ID           string    `json:"id"`
	Sealed       Sealed    `json:"sealed"`
	Rotated      time.Time `json:"rotated"`
	OverlapUntil time.Time `json:"overlap_until"`
}

func (RotateWebhookSecret) Type() CommandType { return TypeRotateWebhookSecret }

func (c RotateWebhookSecret) Validate() error {
	return firstErr(CheckID("workspace id", c.Workspace), CheckWebhookID(c.ID), c.Sealed.validate(), checkOverlap(c.Rotated, c.OverlapUntil))
}

// DeleteWebhook removes an endpoint with its secrets and dead letters.
type DeleteWebhook struct {
	Workspace string `json:"workspace"`
	ID        string `json:"id"`
}

func (DeleteWebhook) Type() CommandType { return TypeDeleteWebhook }

func (c DeleteWebhook) Validate() error {
	return firstErr(CheckID("workspace id", c.Workspace), CheckWebhookID(c.ID))
}

// AddDeadLetters records events a node gave up delivering to an endpoint.
// A letter of an event ID already held replaces it. Letters of an endpoint
// deleted meanwhile are dropped without error.
type AddDeadLetters struct {
	Workspace string       `json:"workspace"`
	Webhook   string       `json:"webhook"`
	Letters   []DeadLetter `json:"letters"`
}

func (AddDeadLetters) Type() CommandType { return TypeAddDeadLetters }

func (c AddDeadLetters) Validate() error {
	errs := []error{CheckID("workspace id", c.Workspace), CheckWebhookID(c.Webhook)}
	if len(c.Letters) == 0 || len(c.Letters) > MaxDeadLetterBatch {
		errs = append(errs, invalidf("%d dead letters: want 1 to %d", len(c.Letters), MaxDeadLetterBatch))
	}
	for _, l := range c.Letters {
		errs = append(errs, l.validate())
	}
	return firstErr(errs...)
}

// RedeliverWebhook marks an endpoint's dead letters for redelivery: those
// of EventIDs, or all when it is empty.
type RedeliverWebhook struct {
	Workspace string   `json:"workspace"`
	Webhook   string   `json:"webhook"`
	EventIDs  []string `json:"event_ids,omitempty"`
}

func (RedeliverWebhook) Type() CommandType { return TypeRedeliverWebhook }

func (c RedeliverWebhook) Validate() error {
	errs := []error{CheckID("workspace id", c.Workspace), CheckWebhookID(c.Webhook)}
	if len(c.EventIDs) > MaxDeadLetters {
		errs = append(errs, invalidf("%d event ids: want at most %d", len(c.EventIDs), MaxDeadLetters))
	}
	for _, id := range c.EventIDs {
		errs = append(errs, checkEventID(id))
	}
	return firstErr(errs...)
}

// ResolveDeadLetters ends a redelivery of an endpoint's dead letters:
// those delivered leave the list; those that failed again stay, unmarked,
// with Error.
type ResolveDeadLetters struct {
	Workspace string   `json:"workspace"`
	Webhook   string   `json:"webhook"`
	Delivered []string `json:"delivered,omitempty"`
	Failed    []string `json:"failed,omitempty"`
	Error     string   `json:"error,omitempty"`
}

func (ResolveDeadLetters) Type() CommandType { return TypeResolveDeadLetters }

func (c ResolveDeadLetters) Validate() error {
	errs := []error{CheckID("workspace id", c.Workspace), CheckWebhookID(c.Webhook)}
	if n := len(c.Delivered) + len(c.Failed); n == 0 || n > MaxDeadLetterBatch {
		errs = append(errs, invalidf("%d dead letters resolved: want 1 to %d", n, MaxDeadLetterBatch))
	}
	if len(c.Error) > 512 {
		errs = append(errs, invalidf("error of %d bytes: want at most 512", len(c.Error)))
	}
	for _, id := range slices.Concat(c.Delivered, c.Failed) {
		errs = append(errs, checkEventID(id))
	}
	return firstErr(errs...)
}

// AckWebhookOutbox removes an endpoint's outbox entries up to the log
// index Through: a node delivered them (or recorded them as dead letters).
type AckWebhookOutbox struct {
	Workspace string `json:"workspace"`
	Webhook   string `json:"webhook"`
	Through   uint64 `json:"through"`
}

func (AckWebhookOutbox) Type() CommandType { return TypeAckWebhookOutbox }

func (c AckWebhookOutbox) Validate() error {
	errs := []error{CheckID("workspace id", c.Workspace), CheckWebhookID(c.Webhook)}
	if c.Through == 0 {
		errs = append(errs, invalidf("outbox acknowledged through index 0"))
	}
	return firstErr(errs...)
}

// EventID is a webhook event's ID: the same on every node and every retry,
// so a receiver drops a second copy by it. A conversation's message events
// are named by their stamp (origin and oseq, the same on every replica),
// conversation.created by the conversation, a control-plane event by its
// log index (OutboxOrigin).
func EventID(workspace, subject, origin string, oseq uint64) string {
	h := sha256.New()
	for _, s := range []string{"parley webhook event/v1", workspace, subject, origin, strconv.FormatUint(oseq, 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "evt_" + hex.EncodeToString(h.Sum(nil)[:16])
}
