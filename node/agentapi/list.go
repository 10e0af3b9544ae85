package agentapi

import (
	"errors"
	"strconv"

	"parley/store"
)

// Paging of the conversation list.
const (
	defaultListLimit = 50
	maxListLimit     = 200
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
}

// apiList: GET /v1/workspaces/{ws}/conversations?limit=50&cursor=… lists
// the workspace's conversations this node holds, newest first (by last
// change, then ID), a page at a time: "next" is the cursor of the next
// page, left out on the last one.
func (a *API) apiList(c *apiCall) (any, error) {
	q := c.r.URL.Query()
	limit := defaultListLimit
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxListLimit {
			return nil, badRequest("limit: must be an integer 1..%d", maxListLimit)
		}
		limit = n
	}
	after, err := store.ParseCursor(q.Get("cursor"))
	if errors.Is(err, store.ErrBadCursor) {
		return nil, badRequest("cursor: give back the next of a page")
	}
	convs, next, err := a.cfg.Store.ConversationsPage(c.ws, "", after, limit)
	if err != nil {
		return nil, err
	}
	items := make([]listItem, 0, len(convs))
	for _, cv := range convs {
		it := listItem{ID: cv.ID, Owner: cv.Owner, OwnerName: cv.OwnerName, Created: cv.Created, Updated: cv.Updated, Head: cv.Head}
		if cv.Last != nil && !cv.Last.IsDeleted() {
			it.Preview = truncateRunes(cv.Last.Body, previewRunes)
		}
		items = append(items, it)
	}
	return struct {
		Items []listItem `json:"items"`
		Next  string     `json:"next,omitempty"`
	}{items, next.String()}, nil
}
