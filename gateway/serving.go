package gateway

import (
	"slices"
	"sort"
	"strings"
	"time"

	"parley/ident"
)

// Where a conversation's participants are connected: replication sends a
// conversation's events to its replicas and to the nodes serving its
// participants (every agent of the workspace sees every conversation; a
// visitor sees their own), so that a node outside the conversation's
// placement still delivers it live, in one hop. Presence already tells
// every node which connections the others hold (their leases carry the
// node in their ID); this reads it.

// servingTTL bounds how stale the index may be: a connection that just
// opened elsewhere is known from its first lease signal, and the index of
// a workspace is rebuilt at most this often.
const servingTTL = time.Second

// servingIndex is, for one workspace, the other nodes with an agent
// connected and, per participant, the nodes they are connected to.
type servingIndex struct {
	built  time.Time
	agents []string
	byPart map[string][]string
}

// Serving lists the other nodes where an agent of ws, or participant, has
// a live connection, by this node's view of presence.
func (s *Server) Serving(ws, participant string) []string {
	idx := s.presence.serving(ws, s.cfg.Node, time.Now())
	if idx == nil {
		return nil
	}
	out := idx.agents
	if extra := idx.byPart[participant]; len(extra) > 0 {
		out = union(out, extra)
	}
	return out
}

// HasAgents says whether an agent of ws is connected to this node: such a
// node holds every conversation of ws, not only those placed on it.
func (s *Server) HasAgents(ws string) bool {
	s.hub.mu.RLock()
	defer s.hub.mu.RUnlock()
	r := s.hub.rooms[ws]
	return r != nil && len(r.agents) > 0
}

// VisitorsOn lists the visitors of ws with a live connection on node (this
// node's own, or another's by presence).
func (s *Server) VisitorsOn(ws, node string) map[string]bool {
	out := map[string]bool{}
	if node == s.cfg.Node {
		s.hub.mu.RLock()
		defer s.hub.mu.RUnlock()
		if r := s.hub.rooms[ws]; r != nil {
			for c := range r.visitors {
				out[c.id.Participant] = true
			}
		}
		return out
	}
	idx := s.presence.serving(ws, s.cfg.Node, time.Now())
	if idx == nil {
		return out
	}
	for part, nodes := range idx.byPart {
		if slices.Contains(nodes, node) {
			out[part] = true
		}
	}
	return out
}

func (p *presence) serving(ws, self string, now time.Time) *servingIndex {
	p.mu.Lock()
	defer p.mu.Unlock()
	if idx := p.servingIdx[ws]; idx != nil && now.Sub(idx.built) < servingTTL {
		return idx
	}
	set := p.leases[ws]
	if set == nil {
		delete(p.servingIdx, ws)
		return nil
	}
	nowMS := now.UnixMilli()
	agents := map[string]bool{}
	byPart := map[string]map[string]bool{}
	for _, l := range set.Leases() {
		node, _, ok := strings.Cut(l.ID, "/")
		if !ok || node == self || !l.Live(nowMS) {
			continue
		}
		if p.peers[ws][l.Participant].role == ident.Agent {
			agents[node] = true
			continue
		}
		if byPart[l.Participant] == nil {
			byPart[l.Participant] = map[string]bool{}
		}
		byPart[l.Participant][node] = true
	}
	idx := &servingIndex{built: now, agents: sortedKeys(agents), byPart: map[string][]string{}}
	for part, nodes := range byPart {
		idx.byPart[part] = sortedKeys(nodes)
	}
	p.servingIdx[ws] = idx
	return idx
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range append(append([]string{}, a...), b...) {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}
