package agentapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"parley/cluster"
	"parley/node/httpapi"
)

// apiDeletionRequests: GET /v1/workspaces/{ws}/deletion-requests lists the
// visitors who asked from the widget to be forgotten and await an agent's
// confirmation, oldest first.
func (a *API) apiDeletionRequests(c *apiCall) (any, error) {
	reqs, err := a.cfg.Cluster.DeletionRequests(c.ws)
	if err != nil {
		return nil, err
	}
	return struct {
		Items []cluster.DeletionRequest `json:"items"`
	}{reqs}, nil
}

// apiConfirmDeletion: POST /v1/workspaces/{ws}/deletion-requests/confirm
// {"visitor":"v:…"} erases a visitor who asked to be forgotten, as the
// admin API's erasure of a visitor does, and ends the request.
func (a *API) apiConfirmDeletion(c *apiCall) (any, error) {
	var in struct {
		Visitor string `json:"visitor"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.w, c.r.Body, 1<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || dec.More() {
		return nil, badRequest("body: one JSON object {\"visitor\"}")
	}
	reqs, err := a.cfg.Cluster.DeletionRequests(c.ws)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(reqs, func(r cluster.DeletionRequest) bool { return r.Visitor == in.Visitor }) {
		return nil, &httpapi.Error{Status: http.StatusNotFound, Code: codeNotFound, Message: "no deletion request of this visitor"}
	}
	res, err := a.cfg.Cluster.Apply(c.r.Context(), cluster.EraseVisitor{Workspace: c.ws, Visitor: in.Visitor})
	if err != nil {
		return nil, fmt.Errorf("erase visitor: %w", err)
	}
	a.cfg.Logger.Info("visitor forgotten at their request, confirmed", "workspace", c.ws, "agent", c.agent.ID, "index", res.Index)
	conf := a.cfg.Erasures.Confirm(c.r.Context(), res.Index)
	return struct {
		Visitor string `json:"visitor"`
		httpapi.Confirmation
	}{in.Visitor, conf}, nil
}
