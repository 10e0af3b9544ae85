package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"parley/cluster/schema"
)

// Webhook endpoints (schema/webhook.go). Each endpoint's signing secret is
// sealed under the master key like the identity secret, bound to its
// workspace and endpoint, so the log, the snapshots and every FSM hold only
// ciphertext; the node sending a delivery opens it.

// webhookRecord is an endpoint in the state, with its sealed secrets and
// its dead letters, oldest first.
type webhookRecord struct {
	Webhook  Webhook         `json:"webhook"`
	Sealed   Sealed          `json:"sealed"`
	Previous *previousSecret `json:"previous,omitempty"`
	Dead     []DeadLetter    `json:"dead_letters,omitempty"`
	// Outbox holds the control plane's events for the endpoint not yet
	// delivered, in log order.
	Outbox []OutboxEntry `json:"outbox,omitempty"`
}

// outbox records a control-plane event for every endpoint of ws that
// wants its type; past MaxOutbox an endpoint's oldest entry becomes a
// dead letter. Callers hold mu (the FSM).
func (s *State) outbox(ws *workspaceState, e OutboxEntry) {
	for _, w := range sortedValues(ws.Webhooks) {
		if !w.Webhook.Wants(e.Type) {
			continue
		}
		w.Outbox = append(w.Outbox, e)
		if len(w.Outbox) > schema.MaxOutbox {
			old := w.Outbox[0]
			w.Outbox = slices.Delete(w.Outbox, 0, 1)
			s.addDead(w, []DeadLetter{outboxLetter(ws.Workspace.ID, old, 0, "the outbox was full", old.At)})
		}
	}
}

// outboxLetter is the dead letter of an outbox entry.
func outboxLetter(ws string, e OutboxEntry, attempts int, lastErr string, dead time.Time) DeadLetter {
	if dead.IsZero() {
		dead = time.Unix(0, 0).UTC().AddDate(30, 0, 0) // a time checkTime takes, for entries without one
	}
	return DeadLetter{EventID: OutboxEventID(ws, e), Type: e.Type, Conversation: e.Conversation, Visitor: e.Visitor,
		Origin: schema.OutboxOrigin, OSeq: e.Index, Attempts: attempts, LastError: lastErr, Dead: dead}
}

// OutboxEventID is a control-plane event's ID: the same on every node,
// from the log index of its change.
func OutboxEventID(ws string, e OutboxEntry) string {
	return schema.EventID(ws, e.Conversation+e.Visitor, schema.OutboxOrigin, e.Index)
}

// webhookKind is the sealing slot of an endpoint's secret: a sealed secret
// copied to another endpoint does not open.
func webhookKind(id string) SecretKind { return SecretKind("webhook/" + id) }

func (s *State) webhook(workspace, id string) (*workspaceState, *webhookRecord, error) {
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return nil, nil, err
	}
	w := ws.Webhooks[id]
	if w == nil {
		return ws, nil, fmt.Errorf("webhook %s/%s: %w", workspace, id, ErrNotFound)
	}
	return ws, w, nil
}

func (s *State) applyCreateWebhook(c *CreateWebhook) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	if _, ok := ws.Webhooks[c.ID]; ok {
		return Result{}, fmt.Errorf("webhook %s/%s: %w", c.Workspace, c.ID, ErrExists)
	}
	if len(ws.Webhooks) >= schema.MaxWebhooksPerWorkspace {
		return Result{}, fmt.Errorf("workspace %s has %d webhooks, the most it may: %w", c.Workspace, len(ws.Webhooks), ErrOverLimit)
	}
	ws.Webhooks[c.ID] = &webhookRecord{
		Webhook: Webhook{ID: c.ID, Workspace: c.Workspace, URL: c.URL, Events: slices.Clone(c.Events), Created: c.Created},
		Sealed:  c.Sealed,
	}
	return Result{}, nil
}

func (s *State) applyRotateWebhookSecret(c *RotateWebhookSecret) (Result, error) {
	_, w, err := s.webhook(c.Workspace, c.ID)
	if err != nil {
		return Result{}, err
	}
	w.Previous = &previousSecret{Sealed: w.Sealed, Until: c.OverlapUntil}
	w.Sealed = c.Sealed
	w.Webhook.Rotated = c.Rotated
	w.Webhook.PreviousUntil = c.OverlapUntil
	return Result{}, nil
}

func (s *State) applyDeleteWebhook(c *DeleteWebhook) (Result, error) {
	ws, _, err := s.webhook(c.Workspace, c.ID)
	if err != nil {
		return Result{}, err
	}
	delete(ws.Webhooks, c.ID)
	return Result{}, nil
}

func (s *State) applyAddDeadLetters(c *AddDeadLetters) (Result, error) {
	_, w, err := s.webhook(c.Workspace, c.Webhook)
	if err != nil {
		return Result{}, nil // deleted meanwhile: nothing to keep
	}
	s.addDead(w, c.Letters)
	return Result{}, nil
}

func (s *State) addDead(w *webhookRecord, letters []DeadLetter) {
	for _, l := range letters {
		w.Dead = slices.DeleteFunc(w.Dead, func(d DeadLetter) bool { return d.EventID == l.EventID })
		w.Dead = append(w.Dead, l)
	}
	if n := len(w.Dead) - schema.MaxDeadLetters; n > 0 {
		w.Dead = slices.Delete(w.Dead, 0, n)
		w.Webhook.DeadDropped += uint64(n)
	}
}

func (s *State) applyAckWebhookOutbox(c *AckWebhookOutbox) (Result, error) {
	_, w, err := s.webhook(c.Workspace, c.Webhook)
	if err != nil {
		return Result{}, nil // deleted meanwhile
	}
	w.Outbox = slices.DeleteFunc(w.Outbox, func(e OutboxEntry) bool { return e.Index <= c.Through })
	return Result{}, nil
}

// WebhookOutbox returns an endpoint's control-plane events not yet
// delivered, in log order.
func (s *State) WebhookOutbox(workspace, id string) ([]OutboxEntry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, w, err := s.webhook(workspace, id)
	if err != nil {
		return nil, err
	}
	return slices.Clone(w.Outbox), nil
}

func (s *State) applyRedeliverWebhook(c *RedeliverWebhook) (Result, error) {
	_, w, err := s.webhook(c.Workspace, c.Webhook)
	if err != nil {
		return Result{}, err
	}
	found := 0
	for i := range w.Dead {
		if len(c.EventIDs) == 0 || slices.Contains(c.EventIDs, w.Dead[i].EventID) {
			w.Dead[i].Redeliver = true
			found++
		}
	}
	if found == 0 && len(c.EventIDs) > 0 {
		return Result{}, fmt.Errorf("webhook %s/%s holds none of those dead letters: %w", c.Workspace, c.Webhook, ErrNotFound)
	}
	return Result{}, nil
}

func (s *State) applyResolveDeadLetters(c *ResolveDeadLetters) (Result, error) {
	_, w, err := s.webhook(c.Workspace, c.Webhook)
	if err != nil {
		return Result{}, nil // deleted meanwhile
	}
	w.Dead = slices.DeleteFunc(w.Dead, func(d DeadLetter) bool { return slices.Contains(c.Delivered, d.EventID) })
	for i := range w.Dead {
		if slices.Contains(c.Failed, w.Dead[i].EventID) {
			w.Dead[i].Redeliver = false
			w.Dead[i].Attempts++
			w.Dead[i].LastError = c.Error
		}
	}
	return Result{}, nil
}

// Webhooks lists a workspace's endpoints by ID; ErrNotFound without the
// workspace.
func (s *State) Webhooks(workspace string) ([]Webhook, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return nil, err
	}
	out := make([]Webhook, 0, len(ws.Webhooks))
	for _, w := range sortedValues(ws.Webhooks) {
		out = append(out, w.info())
	}
	return out, nil
}

// Webhook returns one endpoint.
func (s *State) Webhook(workspace, id string) (Webhook, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, w, err := s.webhook(workspace, id)
	if err != nil {
		return Webhook{}, err
	}
	return w.info(), nil
}

func (w *webhookRecord) info() Webhook {
	x := w.Webhook
	x.Events = slices.Clone(x.Events)
	x.Dead = len(w.Dead)
	x.Pending = len(w.Outbox)
	return x
}

// DeadLetters returns an endpoint's dead letters, oldest first.
func (s *State) DeadLetters(workspace, id string) ([]DeadLetter, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, w, err := s.webhook(workspace, id)
	if err != nil {
		return nil, err
	}
	return slices.Clone(w.Dead), nil
}

// WebhookWorkspaces lists the workspaces that have an endpoint.
func (s *State) WebhookWorkspaces() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for id, ws := range s.d.Workspaces {
		if len(ws.Webhooks) > 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// HasWebhooks says whether a workspace has an endpoint (false for one
// unknown), without allocating.
func (s *State) HasWebhooks(workspace string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, ok := s.d.Workspaces[workspace]
	return ok && len(ws.Webhooks) > 0
}

// NewWebhookSecret makes an endpoint's signing secret: 32 random bytes,
// shown as "whsec_" and 64 hex digits; the string is the HMAC key.
func NewWebhookSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "whsec_" + hex.EncodeToString(b)
}

// NewWebhookID makes an endpoint's ID.
func NewWebhookID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "wh_" + hex.EncodeToString(b)
}

// CreateWebhook seals a new signing secret on this node and adds the
// endpoint; it returns the endpoint and the secret, which nothing shows
// again.
func (c *Cluster) CreateWebhook(ctx context.Context, workspace, url string, events []string) (Webhook, string, Result, error) {
	id := NewWebhookID()
	secret := NewWebhookSecret()
	sl, err := c.sealer.seal(workspace, webhookKind(id), []byte(secret))
	if err != nil {
		return Webhook{}, "", Result{}, err
	}
	cmd := CreateWebhook{Workspace: workspace, ID: id, URL: url, Events: events, Sealed: sl, Created: time.Now().UTC()}
	res, err := c.Apply(ctx, cmd)
	if err != nil {
		return Webhook{}, "", res, err
	}
	return Webhook{ID: id, Workspace: workspace, URL: url, Events: events, Created: cmd.Created}, secret, res, nil
}

// RotateWebhookSecret seals a new signing secret for an endpoint; the one
// it replaces keeps signing beside it for overlap (0 to MaxSecretOverlap).
// It returns the new secret and when the overlap ends.
func (c *Cluster) RotateWebhookSecret(ctx context.Context, workspace, id string, overlap time.Duration) (string, time.Time, Result, error) {
	if _, err := c.State.Webhook(workspace, id); err != nil {
		return "", time.Time{}, Result{}, err
	}
	secret := NewWebhookSecret()
	sl, err := c.sealer.seal(workspace, webhookKind(id), []byte(secret))
	if err != nil {
		return "", time.Time{}, Result{}, err
	}
	now := time.Now().UTC()
	res, err := c.Apply(ctx, RotateWebhookSecret{Workspace: workspace, ID: id, Sealed: sl, Rotated: now, OverlapUntil: now.Add(overlap)})
	return secret, now.Add(overlap), res, err
}

// WebhookSecrets are an endpoint's signing secrets in plaintext.
type WebhookSecrets struct {
	Current []byte
	// Previous is nil when the secret was never rotated; it signs beside
	// Current until PreviousUntil by the sender's clock.
	Previous      []byte
	PreviousUntil time.Time
}

// Signing returns the secrets that sign at now: the current one, and the
// previous one during its overlap.
func (k WebhookSecrets) Signing(now time.Time) [][]byte {
	out := [][]byte{k.Current}
	if k.Previous != nil && now.Before(k.PreviousUntil) {
		out = append(out, k.Previous)
	}
	return out
}

// WebhookSecrets decrypts an endpoint's secrets from this node's state.
func (c *Cluster) WebhookSecrets(workspace, id string) (WebhookSecrets, error) {
	c.State.mu.RLock()
	_, w, err := c.State.webhook(workspace, id)
	var cur Sealed
	var prev *previousSecret
	if err == nil {
		cur, prev = w.Sealed, w.Previous
	}
	c.State.mu.RUnlock()
	if err != nil {
		return WebhookSecrets{}, err
	}
	var k WebhookSecrets
	if k.Current, err = c.sealer.open(workspace, webhookKind(id), cur); err != nil {
		return WebhookSecrets{}, err
	}
	if prev != nil {
		if k.Previous, err = c.sealer.open(workspace, webhookKind(id), prev.Sealed); err != nil {
			return WebhookSecrets{}, err
		}
		k.PreviousUntil = prev.Until
	}
	return k, nil
}
