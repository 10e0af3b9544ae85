package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// The records of the replicated state, as the admin API shows them.

// Hash is a SHA-256 digest: all the state keeps of a session token or an API
// key. It encodes as hex, so it can key a JSON object.
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 2*len(h) {
		return invalidf("hash of %d hex digits, want %d", len(b), 2*len(h))
	}
	_, err := hex.Decode(h[:], b)
	if err != nil {
		return invalidf("hash: %v", err)
	}
	return nil
}

// Brand is one of a workspace's brands; API keys can be scoped to it.
type Brand struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Workspace is a customer of Parley.
type Workspace struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Region pins where the workspace's data may live; "" is unpinned.
	Region  string    `json:"region,omitempty"`
	Plan    string    `json:"plan"`
	Brands  []Brand   `json:"brands,omitempty"`
	Created time.Time `json:"created"`
	// RetentionDays: each node erases a conversation of the workspace
	// this many days after its last message (SetRetention). Zero: kept
	// until erased.
	RetentionDays int `json:"retention_days,omitempty"`
	// VisitorDeletion is what a visitor's request to be forgotten (from
	// the widget) does: DeletionImmediate erases them at once,
	// DeletionConfirm (or "") waits for an agent's confirmation.
	VisitorDeletion string `json:"visitor_deletion,omitempty"`
}

// What a visitor's request to be forgotten does (Workspace.VisitorDeletion).
const (
	DeletionConfirm   = "confirm"
	DeletionImmediate = "immediate"
)

// Role is what an operator may do.
type Role string

const (
	RoleAgent Role = "agent"
	RoleAdmin Role = "admin"
)

func (r Role) validate() error {
	if r != RoleAgent && r != RoleAdmin {
		return invalidf("role %q: want agent or admin", r)
	}
	return nil
}

// Operator is an agent or admin of a workspace. Reads never return the
// password hash.
type Operator struct {
	ID        string    `json:"id"`
	Workspace string    `json:"workspace"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Created   time.Time `json:"created"`
}

// NodeInfo is what a node registered about itself with RegisterNode.
type NodeInfo struct {
	ID       string `json:"id"`
	Region   string `json:"region,omitempty"`
	RaftAddr string `json:"raft_addr,omitempty"`
	APIAddr  string `json:"api_addr,omitempty"`
	// GossipAddr is where the node gossips (package membership): a node
	// that restarts rejoins gossip through the addresses registered here.
	GossipAddr string `json:"gossip_addr,omitempty"`
	// NoVote: the node asked to stay a non-voter; the leader never promotes
	// it.
	NoVote bool `json:"no_vote,omitempty"`
}

func (n NodeInfo) validate() error {
	return firstErr(
		CheckID("node id", n.ID),
		CheckRegion(n.Region),
		CheckAddr("raft address", n.RaftAddr),
		CheckAddr("api address", n.APIAddr),
		CheckAddr("gossip address", n.GossipAddr),
	)
}

// Assignment is who handles a conversation. Version counts the changes; 0
// means never assigned.
type Assignment struct {
	Workspace    string `json:"workspace"`
	Conversation string `json:"conversation"`
	Operator     string `json:"operator,omitempty"`
	Version      uint64 `json:"version"`
}

// Plan is a billing plan's limits. A zero limit is unlimited.
type Plan struct {
	Name                  string `json:"name"`
	Seats                 int64  `json:"seats"`
	ConversationsPerMonth int64  `json:"conversations_per_month"`
	MessagesPerMonth      int64  `json:"messages_per_month"`
}

func (p Plan) validate() error {
	return firstErr(
		checkPlanName(p.Name),
		checkCount("seats", p.Seats),
		checkCount("conversations per month", p.ConversationsPerMonth),
		checkCount("messages per month", p.MessagesPerMonth),
	)
}

// Usage is a workspace's usage in one period, the sum of the nodes' reports.
type Usage struct {
	Workspace     string `json:"workspace"`
	Period        string `json:"period"`
	Conversations int64  `json:"conversations"`
	Messages      int64  `json:"messages"`
	// Reports counts the reports applied (duplicates excluded).
	Reports int64 `json:"reports"`
}

// BillingEvent is something a workspace is billed or credited for.
type BillingEvent struct {
	IdempotencyKey string `json:"idempotency_key"`
	Workspace      string `json:"workspace"`
	Period         string `json:"period"`
	// Kind is what happened: "charge", "credit", "plan_change", ...
	Kind string `json:"kind"`
	// Amount in the currency's minor unit (cents); negative for a credit.
	Amount   int64  `json:"amount"`
	Currency string `json:"currency,omitempty"`
	Note     string `json:"note,omitempty"`
	// At is when the proposer recorded it. It is not part of the event's
	// identity: a retry stamped later on another node is the same event.
	At time.Time `json:"at"`
	// Index is the log index at which the event was applied (set by the
	// FSM; ignored in a command).
	Index uint64 `json:"index,omitempty"`
}

const maxAmount = 1 << 50

func (e BillingEvent) validate() error {
	errs := []error{
		checkIdempotencyKey(e.IdempotencyKey),
		CheckID("workspace id", e.Workspace),
		checkPeriod(e.Period),
		checkTime("at", e.At),
	}
	if !reEventKind.MatchString(e.Kind) {
		errs = append(errs, invalidf("billing event kind %q: want 1 to 32 of a-z _", e.Kind))
	}
	if e.Amount < -maxAmount || e.Amount > maxAmount {
		errs = append(errs, invalidf("billing amount %d out of range", e.Amount))
	}
	if e.Currency != "" && !reCurrency.MatchString(e.Currency) {
		errs = append(errs, invalidf("currency %q: want ISO 4217, like EUR", e.Currency))
	}
	if e.Note != "" {
		errs = append(errs, checkName("billing note", e.Note))
	}
	return firstErr(errs...)
}

// Fingerprint identifies the event's effect, for its idempotency key.
func (e BillingEvent) Fingerprint() string {
	return fingerprint("billing", e.Workspace, e.Period, e.Kind, e.Amount, e.Currency, e.Note)
}

// Only the SHA-256 of a session token or an API key is kept, with an ID
// derived from that hash for listing and revoking.
const (
	sessionPrefix = "s_"
	keyPrefix     = "k_"
	derivedIDLen  = 12 // bytes of the hash in an ID
)

// Session is an operator's login.
type Session struct {
	ID        string    `json:"id"`
	Hash      Hash      `json:"hash"`
	Workspace string    `json:"workspace"`
	Operator  string    `json:"operator"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	Revoked   bool      `json:"revoked,omitempty"`
}

// Key is an API key, scoped to a workspace or, when Brand is set, to one of
// its brands.
type Key struct {
	ID        string    `json:"id"`
	Hash      Hash      `json:"hash"`
	Workspace string    `json:"workspace"`
	Brand     string    `json:"brand,omitempty"`
	Name      string    `json:"name"`
	Created   time.Time `json:"created"`
	Revoked   bool      `json:"revoked,omitempty"`
	// RevokedIndex is the log index of the revocation: a node has applied it
	// once its WaitApplied(RevokedIndex) returns.
	RevokedIndex uint64 `json:"revoked_index,omitempty"`
}

// HashToken is the SHA-256 of a raw session token or API key.
func HashToken(raw string) Hash { return sha256.Sum256([]byte(raw)) }

// SessionID is the ID of the session whose token hashes to h.
func SessionID(h Hash) string { return sessionPrefix + hex.EncodeToString(h[:derivedIDLen]) }

// KeyID is the ID of the API key that hashes to h.
func KeyID(h Hash) string { return keyPrefix + hex.EncodeToString(h[:derivedIDLen]) }

func checkDerivedID(what, prefix, id string) error {
	hexPart, ok := strings.CutPrefix(id, prefix)
	if !ok || len(hexPart) != 2*derivedIDLen || strings.ToLower(hexPart) != hexPart {
		return invalidf("%s %q: want %s and %d hex digits", what, id, prefix, 2*derivedIDLen)
	}
	if _, err := hex.DecodeString(hexPart); err != nil {
		return invalidf("%s %q: want %s and %d hex digits", what, id, prefix, 2*derivedIDLen)
	}
	return nil
}

// SecretKind names a workspace secret.
type SecretKind string

const (
	SecretIdentity SecretKind = "identity"
	SecretVisitor  SecretKind = "visitor"
)

func (k SecretKind) validate() error {
	if k != SecretIdentity && k != SecretVisitor {
		return invalidf("secret kind %q: want identity or visitor", k)
	}
	return nil
}

// Sizes in a Sealed: package cluster seals secrets with AES-256-GCM.
const (
	SealedKeyIDLen = 8 // bytes of the master key's fingerprint
	SealedNonceLen = 12
	SealedTagLen   = 16
	MaxSecretLen   = 1024 // bytes of plaintext
)

// Sealed is a secret encrypted under the master key.
type Sealed struct {
	// KeyID fingerprints the master key that sealed it, so a node with a
	// different key says so instead of failing with a bare "auth failed".
	KeyID string `json:"key_id"`
	Nonce []byte `json:"nonce"`
	Data  []byte `json:"data"` // ciphertext and GCM tag
}

func (s Sealed) validate() error {
	if len(s.KeyID) != 2*SealedKeyIDLen {
		return invalidf("sealed secret: key id %q", s.KeyID)
	}
	if len(s.Nonce) != SealedNonceLen {
		return invalidf("sealed secret: nonce of %d bytes", len(s.Nonce))
	}
	if len(s.Data) <= SealedTagLen || len(s.Data) > MaxSecretLen+SealedTagLen {
		return invalidf("sealed secret: %d bytes of ciphertext", len(s.Data))
	}
	return nil
}

// EraseConversation records that a conversation of a workspace is erased.
// The record is how every node learns of the erasure, whenever it applies
// the log: a node down at the time on catching up, a node that joins later
// from the snapshot; each erases its copy and refuses the conversation's
// events from then on (docs/replication.md). Applying it again changes
// nothing: the first erasure's index stays.
type EraseConversation struct {
	Workspace    string `json:"workspace"`
	Conversation string `json:"conversation"`
}

func (EraseConversation) Type() CommandType { return TypeEraseConversation }

func (c EraseConversation) Validate() error {
	return firstErr(CheckID("workspace id", c.Workspace), checkConversation(c.Conversation))
}

// EraseVisitor records that every conversation one visitor started in a
// workspace is erased: Visitor is the participant, "v:<visitor_id>" (an
// anonymous visitor) or "u:<user_id>" (a verified one). Each node erases
// the visitor's conversations it holds when it applies the record, as for
// EraseConversation, and records an EraseConversation of each, so that
// every node keeps their tombstones. Erasing the same visitor again is a
// new record with its own index: it erases what the visitor started since.
type EraseVisitor struct {
	Workspace string `json:"workspace"`
	Visitor   string `json:"visitor"`
}

func (EraseVisitor) Type() CommandType { return TypeEraseVisitor }

func (c EraseVisitor) Validate() error {
	return firstErr(CheckID("workspace id", c.Workspace), CheckVisitor(c.Visitor))
}

// MaxRetentionDays bounds a workspace's retention: 100 years.
const MaxRetentionDays = 36500

// SetRetention sets a workspace's retention: every node erases each
// conversation of the workspace Days days after its last message, through
// an EraseConversation record. Days 0 turns it off.
type SetRetention struct {
	Workspace string `json:"workspace"`
	Days      int    `json:"days"`
}

func (SetRetention) Type() CommandType { return TypeSetRetention }

func (c SetRetention) Validate() error {
	if c.Days < 0 || c.Days > MaxRetentionDays {
		return invalidf("retention of %d days: want 0 (off) to %d", c.Days, MaxRetentionDays)
	}
	return CheckID("workspace id", c.Workspace)
}

// SetVisitorDeletion sets what a visitor's request to be forgotten does in
// a workspace: DeletionImmediate or DeletionConfirm.
type SetVisitorDeletion struct {
	Workspace string `json:"workspace"`
	Mode      string `json:"mode"`
}

func (SetVisitorDeletion) Type() CommandType { return TypeSetVisitorDeletion }

func (c SetVisitorDeletion) Validate() error {
	if c.Mode != DeletionConfirm && c.Mode != DeletionImmediate {
		return invalidf("visitor deletion %q: want %s or %s", c.Mode, DeletionConfirm, DeletionImmediate)
	}
	return CheckID("workspace id", c.Workspace)
}

// RequestDeletion records that a visitor asked to be forgotten, in a
// workspace where an agent confirms it; the visitor's erasure
// (EraseVisitor) ends the request.
type RequestDeletion struct {
	Workspace string    `json:"workspace"`
	Visitor   string    `json:"visitor"`
	At        time.Time `json:"at"`
}

func (RequestDeletion) Type() CommandType { return TypeRequestDeletion }

func (c RequestDeletion) Validate() error {
	return firstErr(CheckID("workspace id", c.Workspace), CheckVisitor(c.Visitor))
}

// DeletionRequest is a visitor's request to be forgotten, awaiting an
// agent's confirmation.
type DeletionRequest struct {
	Visitor string    `json:"visitor"`
	At      time.Time `json:"at"`
}

// Erasure is one erasure and the log index that made it: of one
// conversation, or of every conversation of one visitor (Visitor set,
// Conversation empty).
type Erasure struct {
	Workspace    string `json:"workspace"`
	Conversation string `json:"conversation,omitempty"`
	Visitor      string `json:"visitor,omitempty"`
	Index        uint64 `json:"index"`
}

// Member is a server of the Raft configuration.
type Member struct {
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	Region string `json:"region,omitempty"` // as registered (RegisterSelf)
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader"`
	// Version is the protocol version the member runs (ProtocolVersion)
	// as gossip tells this node; 0 when gossip does not see it alive.
	Version int `json:"version"`
}

// Stats is this node's view of Raft, for metrics and the CLI.
type Stats struct {
	NodeID     string `json:"node_id"`
	State      string `json:"state"` // Leader, Follower, Candidate, Shutdown
	LeaderID   string `json:"leader_id"`
	LeaderAddr string `json:"leader_addr"`
	Term       uint64 `json:"term"`
	// LastLogIndex is the last entry in the local log; CommitIndex the last
	// this node knows committed; AppliedIndex the last raft handed to the
	// FSM; StateIndex the last command the state has applied.
	LastLogIndex      uint64 `json:"last_log_index"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	StateIndex        uint64 `json:"state_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	// SnapshotsRestored counts snapshots loaded into the state: at start-up
	// and when the leader sent one because this node was far behind.
	SnapshotsRestored uint64 `json:"snapshots_restored"`
	Voters            int    `json:"voters"`
	Nonvoters         int    `json:"nonvoters"`
}
