package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"parley/cluster"
	"parley/ident"
	"parley/store"
)

// An export is complete whichever node answers it: each conversation lives
// on up to three nodes of its workspace's region (docs/replication.md), so
// the answering node asks every node of the region, over the node link, for
// the IDs of the conversations it holds after the cursor, in ID order,
// merges them (a conversation held by several nodes once), and takes the
// page's conversations it does not hold from a node that listed them. A
// page is never more than limit conversations from each node, and the
// cursor is a conversation ID, the same on every node. The nodes that did
// not answer are named in the reply (unreachable), with the conversations
// that none of the nodes that answered could give (missing).

// Internal paths of an export's fan-out: node to node, over the node link
// only, signed (Register's mux never serves them).
const (
	PathExportList         = "/internal/v1/export/list"
	PathExportConversation = "/internal/v1/export/conversation"
)

// Bounds of the fan-out.
const (
	// exportListTimeout bounds one node's listing of a page.
	exportListTimeout = 5 * time.Second
	// exportConvTimeout bounds the fetch of one conversation.
	exportConvTimeout = 15 * time.Second
	// maxExportListReply bounds a node's listing: 200 IDs.
	maxExportListReply = 64 << 10
	// maxExportConversation bounds one conversation as a node sends it.
	maxExportConversation = 64 << 20
)

// Peers sends signed requests to other nodes over the node link.
type Peers interface {
	// PostUpTo sends body to path on the node whose link listens at
	// addr and returns the reply of a 200, at most limit bytes.
	PostUpTo(ctx context.Context, addr, path string, body []byte, limit int64) ([]byte, error)
}

type exportListRequest struct {
	Workspace string `json:"workspace"`
	Owner     string `json:"owner,omitempty"`
	After     string `json:"after,omitempty"` // a conversation ID; "" for the top
	Limit     int    `json:"limit"`
}

type exportListReply struct {
	IDs  []string `json:"ids"`
	More bool     `json:"more"` // more held after the last of IDs
}

type exportConversationRequest struct {
	Workspace string `json:"workspace"`
	ID        string `json:"id"`
}

// heldAfter lists the IDs of the conversations of ws (of owner, when set)
// this node holds after the ID after, in ID order, up to limit; more says
// whether it holds others after them.
func (a *API) heldAfter(ws, owner, after string, limit int) ([]string, bool, error) {
	convs, err := a.cfg.Store.Conversations(ws, owner)
	if err != nil {
		return nil, false, fmt.Errorf("export: %w", err)
	}
	ids := []string{}
	for _, c := range convs {
		if c.ID > after {
			ids = append(ids, c.ID)
		}
	}
	slices.Sort(ids)
	if len(ids) > limit {
		return ids[:limit], true, nil
	}
	return ids, false, nil
}

// exportPlan is one page of an export: its conversations and who holds
// them.
type exportPlan struct {
	ids     []string
	holders map[string][]string // conversation → nodes that listed it, this node first
	addrs   map[string]string   // node → link address
	next    string              // the last of ids when there are more
	// Nodes of the region that answered, and those that did not.
	answered, unreachable []string
}

// planExport asks this node and every other node of region ("": every
// node) for its next conversations after the ID after, and merges them.
func (a *API) planExport(ctx context.Context, ws, region, owner, after string, limit int) (exportPlan, error) {
	ids, more, err := a.heldAfter(ws, owner, after, limit)
	if err != nil {
		return exportPlan{}, err
	}
	plan := exportPlan{holders: map[string][]string{}, addrs: map[string]string{}, answered: []string{a.cfg.NodeID}, unreachable: []string{}}
	for _, id := range ids {
		plan.holders[id] = []string{a.cfg.NodeID}
	}
	anyMore := more
	if a.cfg.Peers != nil {
		body, _ := json.Marshal(exportListRequest{Workspace: ws, Owner: owner, After: after, Limit: limit})
		var mu sync.Mutex
		var wg sync.WaitGroup
		replies := map[string]exportListReply{}
		for _, n := range a.cfg.Cluster.Nodes() {
			if n.ID == a.cfg.NodeID || (region != "" && n.Region != region) {
				continue
			}
			plan.addrs[n.ID] = n.RaftAddr
			wg.Add(1)
			go func(n cluster.NodeInfo) {
				defer wg.Done()
				rep, err := a.listOn(ctx, n, body)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					a.cfg.Logger.Warn("export: a node of the region did not list its conversations", "workspace", ws, "node", n.ID, "err", err)
					plan.unreachable = append(plan.unreachable, n.ID)
					return
				}
				replies[n.ID] = rep
			}(n)
		}
		wg.Wait()
		peers := make([]string, 0, len(replies))
		for id := range replies {
			peers = append(peers, id)
		}
		slices.Sort(peers)
		for _, node := range peers {
			rep := replies[node]
			plan.answered = append(plan.answered, node)
			anyMore = anyMore || rep.More
			for _, id := range rep.IDs {
				plan.holders[id] = append(plan.holders[id], node)
			}
		}
	}
	for id := range plan.holders {
		plan.ids = append(plan.ids, id)
	}
	slices.Sort(plan.ids)
	if len(plan.ids) > limit {
		plan.ids, anyMore = plan.ids[:limit], true
	}
	if anyMore && len(plan.ids) > 0 {
		plan.next = plan.ids[len(plan.ids)-1]
	}
	slices.Sort(plan.answered)
	slices.Sort(plan.unreachable)
	return plan, nil
}

// listOn asks node n for its next conversations.
func (a *API) listOn(ctx context.Context, n cluster.NodeInfo, body []byte) (exportListReply, error) {
	if n.RaftAddr == "" {
		return exportListReply{}, errors.New("no link address registered")
	}
	ctx, cancel := context.WithTimeout(ctx, exportListTimeout)
	defer cancel()
	b, err := a.cfg.Peers.PostUpTo(ctx, n.RaftAddr, PathExportList, body, maxExportListReply)
	if err != nil {
		return exportListReply{}, err
	}
	var rep exportListReply
	if err := json.Unmarshal(b, &rep); err != nil {
		return exportListReply{}, fmt.Errorf("export list of %s: %w", n.ID, err)
	}
	return rep, nil
}

// conversationJSON is one conversation of a page as JSON: from this node's
// store when it holds it, else from the first of its holders that gives
// it; failed names the holders that did not.
func (a *API) conversationJSON(ctx context.Context, ws, id string, plan exportPlan) (b []byte, failed []string, err error) {
	body, _ := json.Marshal(exportConversationRequest{Workspace: ws, ID: id})
	for _, node := range plan.holders[id] {
		if node == a.cfg.NodeID {
			b, err := a.localConversationJSON(ws, id)
			if err == nil {
				return b, failed, nil
			}
			if !errors.Is(err, store.ErrNotFound) {
				return nil, failed, err
			}
			continue // erased since it was listed
		}
		cctx, cancel := context.WithTimeout(ctx, exportConvTimeout)
		b, err := a.cfg.Peers.PostUpTo(cctx, plan.addrs[node], PathExportConversation, body, maxExportConversation)
		cancel()
		if err == nil && json.Valid(b) {
			return b, failed, nil
		}
		a.cfg.Logger.Warn("export: a node did not give a conversation it listed", "workspace", ws, "conversation", id, "node", node, "err", err)
		failed = append(failed, node)
	}
	return nil, failed, nil
}

// localConversationJSON is conversation id of ws from this node's store.
func (a *API) localConversationJSON(ws, id string) ([]byte, error) {
	c, err := a.cfg.Store.Conversation(ws, id)
	if err != nil {
		return nil, err
	}
	ec, err := a.exportConversation(ws, c)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ec)
}

// ExportRoutes serves other nodes' parts of an export on mux, the node
// link's: signed wraps each handler with the check of the sending node's
// signature.
func (a *API) ExportRoutes(mux *http.ServeMux, signed func(func(http.ResponseWriter, *http.Request, []byte)) http.HandlerFunc) {
	mux.HandleFunc("POST "+PathExportList, signed(func(w http.ResponseWriter, r *http.Request, body []byte) {
		var q exportListRequest
		if err := json.Unmarshal(body, &q); err != nil || q.Workspace == "" || q.Limit < 1 || q.Limit > maxExportLimit {
			http.Error(w, "export list: want {\"workspace\", \"limit\": 1..200}", http.StatusBadRequest)
			return
		}
		ids, more, err := a.heldAfter(q.Workspace, q.Owner, q.After, q.Limit)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(exportListReply{IDs: ids, More: more})
	}))
	mux.HandleFunc("POST "+PathExportConversation, signed(func(w http.ResponseWriter, r *http.Request, body []byte) {
		var q exportConversationRequest
		if err := json.Unmarshal(body, &q); err != nil || q.Workspace == "" || !ident.ValidConversation(q.ID) {
			http.Error(w, "export conversation: want {\"workspace\", \"id\"}", http.StatusBadRequest)
			return
		}
		b, err := a.localConversationJSON(q.Workspace, q.ID)
		if errors.Is(err, store.ErrNotFound) {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
}
