package adminapi

import (
	"net/http"

	"parley/cluster"
	"parley/cluster/schema"
)

// E-mail settings (docs/api.md, "E-mail"): a workspace's SMTP server. The
// password or API key is taken by PUT and never shown again: a read says
// only password_set. Mail outcomes per conversation are readable by every
// operator of the workspace (agents see a failed mail).

type emailRequest struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	TLS  string `json:"tls"`
	User string `json:"user,omitempty"`
	// Password is the SMTP password or API key: absent keeps the one held,
	// "" clears it, anything else replaces it (a rotation).
	Password *string `json:"password,omitempty"`
	From     string  `json:"from"`
	SiteURL  string  `json:"site_url,omitempty"`
}

func (a *API) emailSettings(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	return a.cfg.Cluster.EmailSettings(ws)
}

func (a *API) setEmailSettings(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessSecrets)
	if err != nil {
		return nil, err
	}
	var req emailRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.TLS == schema.TLSNone && !a.cfg.EmailAllowPlaintext {
		return nil, apiErr(http.StatusBadRequest, "invalid", "tls none sends the password in clear: refused unless the nodes run with -email-allow-plaintext (loopback tests)")
	}
	if req.Password != nil && len(*req.Password) > schema.MaxSecretLen {
		return nil, apiErr(http.StatusBadRequest, "invalid", "password of %d bytes: want at most %d", len(*req.Password), schema.MaxSecretLen)
	}
	if _, err := a.cfg.Cluster.Workspace(ws); err != nil {
		return nil, err
	}
	st := cluster.EmailSettings{Workspace: ws, Host: req.Host, Port: req.Port, TLS: req.TLS, User: req.User, From: req.From, SiteURL: req.SiteURL}
	check := st
	check.Created, check.Updated = a.cfg.Now(), a.cfg.Now()
	if err := check.Validate(); err != nil {
		return nil, err
	}
	out, res, err := a.cfg.Cluster.SetEmailSettings(r.Context(), st, req.Password)
	if err != nil {
		return nil, err
	}
	a.written(r.Context(), res)
	return out, nil
}

func (a *API) deleteEmailSettings(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessSecrets)
	if err != nil {
		return nil, err
	}
	res, err := a.cfg.Cluster.Apply(r.Context(), cluster.DeleteEmailSettings{Workspace: ws})
	if err != nil {
		return nil, err
	}
	a.written(r.Context(), res)
	return map[string]any{"deleted": true, "index": res.Index}, nil
}

// mailStates lists the conversations' mail outcomes; ?status=failed (or
// retrying, sent) keeps those.
func (a *API) mailStates(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessRead)
	if err != nil {
		return nil, err
	}
	st := r.URL.Query().Get("status")
	if st != "" && st != schema.MailSent && st != schema.MailRetrying && st != schema.MailFailed {
		return nil, apiErr(http.StatusBadRequest, "invalid", "status %q: want sent, retrying or failed", st)
	}
	return a.cfg.Cluster.MailStates(ws, st)
}

// mailState is one conversation's mail outcome.
func (a *API) mailState(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessRead)
	if err != nil {
		return nil, err
	}
	return a.cfg.Cluster.MailState(ws, r.PathValue("conv"))
}
