package adminapi

import (
	"encoding/hex"
	"net/http"
	"time"

	"parley/cluster"
	"parley/node/httpapi"
)

// The identity secret is shown twice in its life: by the workspace's
// creation and by the rotation that makes it. No route reads it back:
// GET .../secrets says only when it was rotated and until when the one it
// replaced verifies.

// secretsReply carries a secret that is being shown once.
type secretsReply struct {
	Workspace string `json:"workspace"`
	// IdentitySecret keys the user_hash and identity tokens a site makes
	// for verified visitors (docs/protocol.md); keep it on the site's
	// server. Shown once.
	IdentitySecret string `json:"identity_secret"`
}

func (a *API) secretInfo(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	return a.cfg.Cluster.IdentitySecretInfo(ws)
}

type rotateRequest struct {
	// Overlap is how long the replaced secret keeps verifying: a Go
	// duration ("24h", "90m", "3s", "0s").
	Overlap *string `json:"overlap"`
}

type rotateReply struct {
	secretsReply
	Rotated       time.Time `json:"rotated"`
	PreviousUntil time.Time `json:"previous_valid_until"`
	// Confirmation names the nodes that have applied the new secret, so
	// that they verify it.
	Confirmation httpapi.Confirmation `json:"confirmation"`
}

// decodeOverlap reads a rotation's body: how long the old secret keeps
// what (verifying, signing).
func decodeOverlap(r *http.Request, what string) (time.Duration, error) {
	var req rotateRequest
	if err := decode(r, &req); err != nil {
		return 0, err
	}
	if req.Overlap == nil {
		return 0, apiErr(http.StatusBadRequest, "invalid", `overlap is required: how long the old secret keeps %s ("24h", "0s")`, what)
	}
	overlap, err := time.ParseDuration(*req.Overlap)
	if err != nil || overlap < 0 || overlap > cluster.MaxSecretOverlap {
		return 0, apiErr(http.StatusBadRequest, "invalid", "overlap %q: want a duration from 0s to %v", *req.Overlap, cluster.MaxSecretOverlap)
	}
	return overlap, nil
}

// rotateIdentitySecret gives the workspace a new identity secret, shown in
// the reply only, and keeps the old one valid for the overlap asked. An
// API key may not: a leaked one must not be able to obtain a secret.
func (a *API) rotateIdentitySecret(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessSecrets)
	if err != nil {
		return nil, err
	}
	overlap, err := decodeOverlap(r, "verifying")
	if err != nil {
		return nil, err
	}
	if _, err := a.cfg.Cluster.IdentitySecretInfo(ws); err != nil {
		return nil, err
	}
	secret := random(32)
	res, until, err := a.cfg.Cluster.RotateIdentitySecret(r.Context(), ws, secret, overlap)
	if err != nil {
		return nil, err
	}
	// Every node verifies the new secret once it has applied it: wait for
	// all, so the site can use it anywhere at once.
	conf := a.cfg.Confirmer.ConfirmEverywhere(r.Context(), res.Index)
	if len(conf.Unconfirmed) > 0 {
		a.cfg.Logger.Warn("new identity secret not yet known on every node", "workspace", ws, "unconfirmed", conf.Unconfirmed)
	}
	return rotateReply{
		secretsReply:  secretsReply{Workspace: ws, IdentitySecret: hex.EncodeToString(secret)},
		Rotated:       until.Add(-overlap),
		PreviousUntil: until,
		Confirmation:  conf,
	}, nil
}
