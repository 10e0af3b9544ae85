package adminapi

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"parley/cluster"
	"parley/cluster/schema"
	"parley/webhook"
)

// Webhook endpoints (docs/api.md, "Webhooks"). The signing secret is
// shown by the endpoint's creation and by each rotation, never again: an
// API key may do neither (a leaked key must not obtain a secret that
// signs as Parley), as with the identity secret.

type webhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

type webhookSecretReply struct {
	Webhook cluster.Webhook `json:"webhook"`
	// Secret keys the endpoint's signatures (Parley-Signature). Shown
	// once.
	Secret string `json:"secret"`
}

func (a *API) webhooks(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	return a.cfg.Cluster.Webhooks(ws)
}

func (a *API) webhook(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	return a.cfg.Cluster.Webhook(ws, r.PathValue("id"))
}

func (a *API) createWebhook(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessSecrets)
	if err != nil {
		return nil, err
	}
	var req webhookRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if err := schema.CheckWebhookURL(req.URL); err != nil {
		return nil, err
	}
	if err := schema.CheckWebhookEvents(req.Events); err != nil {
		return nil, err
	}
	if err := a.checkWebhookHost(req.URL); err != nil {
		return nil, err
	}
	if _, err := a.cfg.Cluster.Workspace(ws); err != nil {
		return nil, err
	}
	h, secret, res, err := a.cfg.Cluster.CreateWebhook(r.Context(), ws, req.URL, req.Events)
	if err != nil {
		return nil, err
	}
	a.written(r.Context(), res)
	return webhookSecretReply{Webhook: h, Secret: secret}, nil
}

// checkWebhookHost refuses at once a URL whose host is a literal address
// the nodes may not send to; a name is checked at each connection, where
// it resolves (package webhook).
func (a *API) checkWebhookHost(raw string) error {
	if a.cfg.WebhookAllowPrivate {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return apiErr(http.StatusBadRequest, "invalid", "webhook url: %v", err)
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil && webhook.Forbidden(ip) {
		return apiErr(http.StatusBadRequest, "invalid", "webhook url %q: %s is a private, loopback or link-local address", raw, host)
	}
	if host = strings.ToLower(host); host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return apiErr(http.StatusBadRequest, "invalid", "webhook url %q: localhost is a loopback address", raw)
	}
	return nil
}

type webhookRotateReply struct {
	webhookSecretReply
	PreviousUntil time.Time `json:"previous_valid_until"`
}

func (a *API) rotateWebhookSecret(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessSecrets)
	if err != nil {
		return nil, err
	}
	overlap, err := decodeOverlap(r, "signing beside the new one")
	if err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	secret, until, res, err := a.cfg.Cluster.RotateWebhookSecret(r.Context(), ws, id, overlap)
	if err != nil {
		return nil, err
	}
	a.written(r.Context(), res)
	h, err := a.cfg.Cluster.Webhook(ws, id)
	if err != nil {
		return nil, err
	}
	return webhookRotateReply{webhookSecretReply: webhookSecretReply{Webhook: h, Secret: secret}, PreviousUntil: until}, nil
}

func (a *API) deleteWebhook(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	res, err := a.cfg.Cluster.Apply(r.Context(), cluster.DeleteWebhook{Workspace: ws, ID: r.PathValue("id")})
	if err != nil {
		return nil, err
	}
	a.written(r.Context(), res)
	return res, nil
}

type deadLettersReply struct {
	Webhook string               `json:"webhook"`
	Dead    []cluster.DeadLetter `json:"dead_letters"`
	// Dropped counts the letters forgotten past the most an endpoint
	// keeps.
	Dropped uint64 `json:"dropped,omitempty"`
}

func (a *API) deadLetters(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	id := r.PathValue("id")
	h, err := a.cfg.Cluster.Webhook(ws, id)
	if err != nil {
		return nil, err
	}
	d, err := a.cfg.Cluster.DeadLetters(ws, id)
	if err != nil {
		return nil, err
	}
	if d == nil {
		d = []cluster.DeadLetter{}
	}
	return deadLettersReply{Webhook: id, Dead: d, Dropped: h.DeadDropped}, nil
}

type redeliverRequest struct {
	// EventIDs are the dead letters to send again; none: all of them.
	EventIDs []string `json:"event_ids"`
}

func (a *API) redeliverWebhook(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	var req redeliverRequest
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return nil, err
		}
	}
	res, err := a.cfg.Cluster.Apply(r.Context(), cluster.RedeliverWebhook{Workspace: ws, Webhook: r.PathValue("id"), EventIDs: req.EventIDs})
	if err != nil {
		return nil, err
	}
	a.written(r.Context(), res)
	return res, nil
}
