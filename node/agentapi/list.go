package agentapi

import (
	"errors"

	"parley/crdt"

	"parley/store"
)

// listItem is a conversation in a page of the list.
type listItem struct {
	ID        string `json:"id"`
	Owner     string `json:"owner"`
	OwnerName string `json:"owner_name,omitempty"`
	Created   int64  `json:"created"`
	Updated   int64  `json:"updated"`
	Head      uint64 `json:"head"`
	Preview   string `json:"preview"`
	Assignee  string `json:"assignee,omitempty"`
	// The inbox state: the status now, when a snooze ends (unix ms), the
	// tags that are on.
	Status crdt.Status `json:"status"`
	Until  int64       `json:"until,omitempty"`
	Tags   []string    `json:"tags,omitempty"`
}

// apiList: GET /v1/workspaces/{ws}/conversations?limit=50&cursor=… lists
// the workspace's conversations this node holds, newest first (by last
// change, then ID), a page at a time: "next" is the cursor of the next
// page, left out on the last one. Filters (visitor, assignee,
// updated_since; listFilter) narrow it; a page asked with a cursor takes
// the same filters as the page that gave it.
func (a *API) apiList(c *apiCall) (any, error) {
	q := c.r.URL.Query()
	f, err := parseListFilter(q)
	if err != nil {
		return nil, err
	}
	limit, err := pageLimit(c.r)
	if err != nil {
		return nil, err
	}
	after, err := store.ParseCursor(q.Get("cursor"))
	if errors.Is(err, store.ErrBadCursor) {
		return nil, badRequest("cursor: give back the next of a page")
	}
	keep := func(cv store.Conversation) bool {
		return f.keep(cv, func(id string) string { return a.assignee(c.ws, id) })
	}
	convs, next, err := a.cfg.Store.ConversationsPageFunc(c.ws, f.visitor, after, limit, keep)
	if err != nil {
		return nil, err
	}
	items := make([]listItem, 0, len(convs))
	for _, cv := range convs {
		items = append(items, a.item(c.ws, cv))
	}
	return struct {
		Items []listItem `json:"items"`
		Next  string     `json:"next,omitempty"`
	}{items, next.String()}, nil
}
