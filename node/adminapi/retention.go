package adminapi

import (
	"fmt"
	"net/http"

	"parley/cluster"
)

// setRetention: PUT /v1/admin/workspaces/{ws}/retention with {"days": 30}
// sets how many days after its last message every node erases a
// conversation of the workspace; 0 turns it off.
func (a *API) setRetention(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	var req struct {
		Days *int `json:"days"`
	}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Days == nil {
		return nil, apiErr(http.StatusBadRequest, "invalid", "days: required, 0 (off) to %d", cluster.MaxRetentionDays)
	}
	res, err := a.cfg.Cluster.Apply(r.Context(), cluster.SetRetention{Workspace: ws, Days: *req.Days})
	if err != nil {
		return nil, fmt.Errorf("set retention: %w", err)
	}
	a.written(r.Context(), res)
	return struct {
		Workspace     string `json:"workspace"`
		RetentionDays int    `json:"retention_days"`
		Index         uint64 `json:"index"`
	}{ws, *req.Days, res.Index}, nil
}
