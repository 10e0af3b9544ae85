package adminapi

import (
	"fmt"
	"net/http"

	"parley/cluster"
)

// setVisitorDeletion: PUT /v1/admin/workspaces/{ws}/visitor-deletion with
// {"mode": "immediate"|"confirm"} sets what a visitor's request to be
// forgotten, from the widget, does: erase them at once, or wait for an
// agent's confirmation.
func (a *API) setVisitorDeletion(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	var req struct {
		Mode string `json:"mode"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	res, err := a.cfg.Cluster.Apply(r.Context(), cluster.SetVisitorDeletion{Workspace: ws, Mode: req.Mode})
	if err != nil {
		return nil, fmt.Errorf("set visitor deletion: %w", err)
	}
	a.written(r.Context(), res)
	return struct {
		Workspace       string `json:"workspace"`
		VisitorDeletion string `json:"visitor_deletion"`
		Index           uint64 `json:"index"`
	}{ws, req.Mode, res.Index}, nil
}
