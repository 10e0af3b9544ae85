package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"

	"parley/cluster"
	"parley/crdt"
	"parley/store"
)

// Paging of an export.
const (
	defaultExportLimit = 50
	maxExportLimit     = 200
	// exportEvents is how many events of a conversation one store read
	// returns while exporting it.
	exportEvents = 1000
)

// stream is a reply written as it is made (write sends it): 200 first,
// then whatever it writes. An error after the first byte cuts the reply
// short, which leaves it invalid JSON.
type stream func(w io.Writer) error

// exportMessage is a message as an export shows it: its current state
// (the store keeps no other).
type exportMessage struct {
	ID      string `json:"id"`
	Author  string `json:"author"`
	Role    string `json:"role"`
	Name    string `json:"name,omitempty"`
	Sent    int64  `json:"sent"`             // unix ms
	Edited  int64  `json:"edited,omitempty"` // unix ms of the last edit
	Deleted bool   `json:"deleted,omitempty"`
	Body    string `json:"body"`
}

// exportConversation is a conversation with its messages and receipts.
type exportConversation struct {
	ID        string            `json:"id"`
	Owner     string            `json:"owner"`
	OwnerName string            `json:"owner_name,omitempty"`
	Created   int64             `json:"created"`
	Updated   int64             `json:"updated"`
	Reads     map[string]uint64 `json:"reads"`
	// The visitor's context (page, referrer, language, attributes), when
	// the widget told it: the visitor's personal data.
	Context *crdt.VisitorContext `json:"context,omitempty"`
	// Messages leaves out internal ones: agents' notes and inbox changes
	// are never in an export, which a visitor may be given.
	Messages []exportMessage `json:"messages"`
}

// export: GET /v1/admin/workspaces/{ws}/export[?visitor_id=…|user_id=…]
// [&limit=50&cursor=…] streams the workspace's data as JSON, a page of
// conversations at a time: on the first page of a workspace's export the
// workspace, its operators and saved replies too; with visitor_id or
// user_id only that visitor's conversations. Never a secret: no identity
// secret, no password hash, no session or key.
func (a *API) export(r *http.Request, p principal) (any, error) {
	ws, err := scope(r, p, accessAdmin)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	limit := defaultExportLimit
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxExportLimit {
			return nil, apiErr(http.StatusBadRequest, "invalid", "limit: an integer 1..%d", maxExportLimit)
		}
		limit = n
	}
	after, err := store.ParseCursor(q.Get("cursor"))
	if errors.Is(err, store.ErrBadCursor) {
		return nil, apiErr(http.StatusBadRequest, "invalid", "cursor: give back the next of a page")
	}
	owner := ""
	if q.Has("visitor_id") || q.Has("user_id") {
		owner, err = visitorRequest{VisitorID: q.Get("visitor_id"), UserID: q.Get("user_id")}.participant()
		if err != nil {
			return nil, err
		}
		if err := (cluster.EraseVisitor{Workspace: ws, Visitor: owner}).Validate(); err != nil {
			return nil, err
		}
	}
	w, err := a.cfg.Cluster.Workspace(ws)
	if err != nil {
		return nil, err
	}
	plan, err := a.planExport(r.Context(), ws, w.Region, owner, after.ID, limit)
	if err != nil {
		return nil, err
	}
	head := map[string]any{"node": a.cfg.NodeID, "exported_at": a.cfg.Now().UTC()}
	if owner != "" {
		head["visitor"] = owner
	}
	if owner == "" && after.ID == "" {
		ops, err := a.cfg.Cluster.Operators(ws)
		if err != nil {
			return nil, err
		}
		replies, err := a.cfg.Store.Replies(ws)
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		live := []store.Reply{}
		for _, rp := range replies {
			if !rp.Deleted {
				live = append(live, rp)
			}
		}
		head["workspace"], head["operators"], head["replies"] = w, ops, live
	}
	a.cfg.Logger.Info("export", "workspace", ws, "visitor", owner != "", "conversations", len(plan.ids), "unreachable", plan.unreachable)
	ctx := r.Context()
	return stream(func(out io.Writer) error {
		return a.writeExport(ctx, out, ws, head, plan)
	}), nil
}

// writeExport writes an export's page: head's fields, then the
// conversations one by one, each as it is read here or received from a
// node that holds it, then next and the nodes that answered or not.
func (a *API) writeExport(ctx context.Context, out io.Writer, ws string, head map[string]any, plan exportPlan) error {
	b, err := json.Marshal(head)
	if err != nil {
		return err
	}
	// head's object without its closing brace, then the conversations.
	if _, err := out.Write(append(b[:len(b)-1], `,"conversations":[`...)); err != nil {
		return err
	}
	unreachable, missing := plan.unreachable, []string{}
	written := 0
	for _, id := range plan.ids {
		b, failed, err := a.conversationJSON(ctx, ws, id, plan)
		if err != nil {
			return err
		}
		for _, node := range failed {
			if !slices.Contains(unreachable, node) {
				unreachable = append(unreachable, node)
			}
		}
		if b == nil {
			if len(failed) > 0 {
				missing = append(missing, id)
			}
			continue // erased meanwhile, or none of its holders gave it
		}
		if written > 0 {
			b = append([]byte{','}, b...)
		}
		written++
		if _, err := out.Write(b); err != nil {
			return err
		}
	}
	slices.Sort(unreachable)
	answered := slices.DeleteFunc(slices.Clone(plan.answered), func(n string) bool { return slices.Contains(unreachable, n) })
	next := ""
	if plan.next != "" {
		next = store.Cursor{ID: plan.next}.String()
	}
	tail, err := json.Marshal(map[string]any{"next": next, "nodes": answered, "unreachable": unreachable, "missing": missing})
	if err != nil {
		return err
	}
	// the tail's fields after the conversations.
	_, err = fmt.Fprintf(out, "],%s\n", tail[1:])
	return err
}

// exportConversation reads one conversation's messages, each in its
// current state, in the order they were first written here.
func (a *API) exportConversation(ws string, c store.Conversation) (exportConversation, error) {
	ec := exportConversation{ID: c.ID, Owner: c.Owner, OwnerName: c.OwnerName, Created: c.Created, Updated: c.Updated, Messages: []exportMessage{}}
	if x := c.InboxState().Context(); x.URL != "" || x.Referrer != "" || x.Language != "" || len(x.Attrs) > 0 {
		ec.Context = &x
	}
	at := map[string]int{}
	var after uint64
	for {
		events, more, err := a.cfg.Store.Events(ws, c.ID, after, exportEvents)
		if err != nil {
			return ec, fmt.Errorf("export %s: %w", c.ID, err)
		}
		for _, e := range events {
			after = max(after, e.Seq)
			if e.Kind != store.EventMessage || e.Message.Internal {
				continue
			}
			m := e.Message
			em := exportMessage{ID: m.ID, Author: m.Author, Role: string(m.Role), Name: m.Name, Sent: m.Created.Wall, Body: m.Body, Deleted: m.IsDeleted()}
			if m.BodyTS != m.Created {
				em.Edited = m.BodyTS.Wall
			}
			if i, ok := at[m.ID]; ok {
				ec.Messages[i] = em
				continue
			}
			at[m.ID] = len(ec.Messages)
			ec.Messages = append(ec.Messages, em)
		}
		if !more || len(events) == 0 {
			break
		}
	}
	reads, err := a.cfg.Store.Reads(ws, c.ID)
	if err != nil {
		return ec, fmt.Errorf("export %s: %w", c.ID, err)
	}
	ec.Reads = reads
	return ec, nil
}
