package node

// workspaceShare is this node's part of a workspace's budget
// (-workspace-rate, gateway.Config.WorkspaceShare): one over the alive
// nodes that serve the workspace, by this node's view of gossip, itself
// included: every alive node of the workspace's region when it is pinned
// to one (the others relay its connections there), every alive node
// otherwise. A node leaving gracefully no longer counts.
//
// Why an equal part and not one weighed by each node's recent traffic:
// it needs no exchange between nodes, and when the nodes' views agree
// the parts add up to the budget exactly, whatever the traffic does; a
// load balancer spreads visitors about evenly, and a node that gets more
// than its part of a workspace's traffic refuses the rest with a retry
// hint rather than letting the cluster exceed the budget. While the views
// disagree (a node failed and not everyone has noticed yet, or a
// partition) each side counts only the nodes it sees, so the cluster
// allows up to the budget times the number of sides, and never less than
// the budget.
func (n *Node) workspaceShare(ws string) float64 {
	region := ""
	if w, err := n.ctl.c.Workspace(ws); err == nil {
		region = w.Region
	}
	alive := 0
	selfCounted := false
	for _, m := range n.gossip.m.Members() {
		if m.Leaving || (region != "" && m.Region != region) {
			continue
		}
		alive++
		if m.ID == n.cfg.NodeID {
			selfCounted = true
		}
	}
	if !selfCounted {
		alive++ // what reaches this node is served here
	}
	return 1 / float64(alive)
}

// plan is the conversations and messages a month a workspace's plan
// allows (gateway.Config.Plan), zero when unknown: the gateway's address
// caps then stay as configured, and Allow refuses the workspace anyway.
func (n *Node) plan(ws string) (conversations, messages int64) {
	w, err := n.ctl.c.Workspace(ws)
	if err != nil {
		return 0, 0
	}
	p, err := n.ctl.c.Plan(w.Plan)
	if err != nil {
		return 0, 0
	}
	return p.ConversationsPerMonth, p.MessagesPerMonth
}
