package node

import (
	"context"
	"net/http"
	"path/filepath"
	"time"

	"parley/cluster/schema"
	"parley/webhook"
)

// openWebhooks makes the node's webhook dispatcher (package webhook) on
// its file DATA/webhooks.db.
func (n *Node) openWebhooks() (*webhook.Dispatcher, error) {
	return webhook.New(webhook.Config{
		Self:         n.cfg.NodeID,
		Store:        n.store,
		Control:      webhookControl{n.ctl},
		Members:      n.gossip.m,
		Peers:        n.ctl.peers,
		Path:         filepath.Join(n.cfg.DataDir, "webhooks.db"),
		AllowPrivate: n.cfg.WebhookAllowPrivate,
		Timeout:      n.cfg.WebhookTimeout,
		Concurrency:  n.cfg.WebhookConcurrency,
		RetryFor:     n.cfg.WebhookRetryFor,
		BackoffMax:   n.cfg.WebhookBackoffMax,
		Registerer:   n.metrics.reg,
		Logger:       n.log,
	})
}

// webhookControl is what the webhook dispatcher reads of and writes to
// the control plane.
type webhookControl struct{ ctl *control }

func (w webhookControl) WebhookWorkspaces() []string { return w.ctl.c.WebhookWorkspaces() }

func (w webhookControl) HasWebhooks(ws string) bool { return w.ctl.c.HasWebhooks(ws) }

func (w webhookControl) Webhooks(ws string) ([]schema.Webhook, error) { return w.ctl.c.Webhooks(ws) }

func (w webhookControl) Secrets(ws, id string, now time.Time) ([][]byte, error) {
	k, err := w.ctl.c.WebhookSecrets(ws, id)
	if err != nil {
		return nil, err
	}
	return k.Signing(now), nil
}

func (w webhookControl) DeadLetters(ws, id string) ([]schema.DeadLetter, error) {
	return w.ctl.c.DeadLetters(ws, id)
}

func (w webhookControl) Outbox(ws, id string) ([]schema.OutboxEntry, error) {
	return w.ctl.c.WebhookOutbox(ws, id)
}

func (w webhookControl) Assignment(ws, conv string) (string, uint64, error) {
	a, err := w.ctl.c.Assignment(ws, conv)
	return a.Operator, a.Version, err
}

func (w webhookControl) Region(ws string) string { return w.ctl.Region(ws) }

func (w webhookControl) Apply(ctx context.Context, cmd schema.Command) error {
	_, err := w.ctl.c.Apply(ctx, cmd)
	return err
}

// webhookRoutes takes the progress of the conversations' senders.
func (n *Node) webhookRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+webhook.PathProgress, n.ctl.signed(func(w http.ResponseWriter, r *http.Request, body []byte) {
		if err := n.hooks.HandleProgress(body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
}
