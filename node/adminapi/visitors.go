package adminapi

import (
	"fmt"
	"net/http"

	"parley/cluster"
	"parley/node/httpapi"
)

// visitorRequest names one visitor of a workspace: an anonymous visitor by
// the visitor_id its widget keeps, or a verified one by the user_id the
// site signs.
type visitorRequest struct {
	VisitorID string `json:"visitor_id,omitempty"`
	UserID    string `json:"user_id,omitempty"`
}

// participant is the visitor as a conversation names its owner.
func (v visitorRequest) participant() (string, error) {
	switch {
	case v.VisitorID != "" && v.UserID == "":
		return "v:" + v.VisitorID, nil
	case v.UserID != "" && v.VisitorID == "":
		return "u:" + v.UserID, nil
	}
	return "", apiErr(http.StatusBadRequest, "invalid", "give one of visitor_id and user_id")
}

// eraseVisitor: POST /v1/admin/workspaces/{ws}/erasures with
// {"visitor_id": …} or {"user_id": …} erases every conversation the
// visitor started, on every node: the erasure is a control-plane record
// (EraseVisitor) that each node applies to the conversations it holds, now
// or when it catches up, recording each conversation's erasure in turn.
// The answer says which nodes confirmed they applied it and which did not
// in time.
func (a *API) eraseVisitor(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	var req visitorRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	visitor, err := req.participant()
	if err != nil {
		return nil, err
	}
	res, err := a.cfg.Cluster.Apply(r.Context(), cluster.EraseVisitor{Workspace: ws, Visitor: visitor})
	if err != nil {
		return nil, fmt.Errorf("erase visitor: %w", err)
	}
	a.cfg.Logger.Info("visitor erased", "workspace", ws, "index", res.Index)
	conf := a.cfg.Erasures.Confirm(r.Context(), res.Index)
	return struct {
		Visitor string `json:"visitor"`
		httpapi.Confirmation
	}{visitor, conf}, nil
}
