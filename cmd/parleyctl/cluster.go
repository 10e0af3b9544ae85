package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"parley/cluster/schema"
)

func init() {
	register(
		command{"cluster status", "", "members (voter, leader, region), nodes and their addresses, this node's Raft state", clusterStatus},
		command{"cluster remove-member", "NODE_ID -yes", "remove a node from the Raft configuration (ask the leader)", clusterRemove},
		command{"cluster snapshot", "", "make the node snapshot its control-plane state now", clusterSnapshot},
		command{"token", "", "print the cluster admin token derived from the cluster key", token},
	)
}

type clusterInfo struct {
	Raft    schema.Stats      `json:"raft"`
	Members []schema.Member   `json:"members"`
	Nodes   []schema.NodeInfo `json:"nodes"`
	Alive   []struct {
		ID     string `json:"id"`
		Region string `json:"region"`
	} `json:"alive"`
	// Versions: the protocol versions (docs/operations.md, Upgrading).
	Versions struct {
		Node         int `json:"node"`
		MinSupported int `json:"min_supported"`
		Cluster      int `json:"cluster"`
	} `json:"versions"`
}

func clusterStatus(e *env, args []string) error {
	if _, err := e.flags("cluster status").parse(args, 0, 0); err != nil {
		return err
	}
	var ci clusterInfo
	raw, err := e.call(http.MethodGet, "/v1/admin/cluster", nil, nil, &ci, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		s := ci.Raft
		w := e.stdout
		fields(w,
			"node", s.NodeID,
			"raft state", s.State,
			"leader", orNone(s.LeaderID, "none known"),
			"term", fmt.Sprint(s.Term),
			"indexes", fmt.Sprintf("last log %d, commit %d, applied %d, state %d, last snapshot %d",
				s.LastLogIndex, s.CommitIndex, s.AppliedIndex, s.StateIndex, s.LastSnapshotIndex),
			"voters", fmt.Sprintf("%d (and %d non-voters)", s.Voters, s.Nonvoters),
			"protocol", protocolLine(ci),
		)
		alive := map[string]bool{}
		for _, a := range ci.Alive {
			alive[a.ID] = true
		}
		nodes := map[string]schema.NodeInfo{}
		for _, n := range ci.Nodes {
			nodes[n.ID] = n
		}
		fmt.Fprintln(w)
		var rows [][]string
		listed := map[string]bool{}
		for _, m := range ci.Members {
			role := "non-voter"
			if m.Voter {
				role = "voter"
			}
			if m.Leader {
				role += ", leader"
			}
			n := nodes[m.ID]
			rows = append(rows, []string{m.ID, role, m.Region, yesNo(alive[m.ID]), n.APIAddr, m.Addr, n.GossipAddr, versionCell(m.Version)})
			listed[m.ID] = true
		}
		for _, n := range ci.Nodes {
			if !listed[n.ID] {
				rows = append(rows, []string{n.ID, "not a member", n.Region, yesNo(alive[n.ID]), n.APIAddr, n.RaftAddr, n.GossipAddr, ""})
			}
		}
		table(w, []string{"MEMBER", "ROLE", "REGION", "ALIVE", "API", "RAFT", "GOSSIP", "VERSION"}, rows)
	})
}

// protocolLine says this node's protocol version and the cluster's, or
// that the node predates versions (it reports none).
func protocolLine(ci clusterInfo) string {
	v := ci.Versions
	if v.Node == 0 {
		return "1 (a node of the first release: reports no versions)"
	}
	cluster := fmt.Sprint(v.Cluster)
	if v.Cluster == 0 {
		cluster = "unknown (a member is not seen alive)"
	}
	return fmt.Sprintf("this node %d (works beside %d and later); cluster %s", v.Node, v.MinSupported, cluster)
}

// versionCell is a member's protocol version, "?" when unknown.
func versionCell(v int) string {
	if v == 0 {
		return "?"
	}
	return fmt.Sprint(v)
}

func clusterRemove(e *env, args []string) error {
	f := e.flags("cluster remove-member")
	yes := f.Bool("yes", false, "really remove")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := checkID("node", pos[0]); err != nil {
		return err
	}
	if !*yes {
		return usagef("removing %s from the Raft configuration changes the quorum: add -yes", pos[0])
	}
	raw, err := e.call(http.MethodDelete, "/v1/admin/cluster/members/"+url.PathEscape(pos[0]), nil, nil, nil, true)
	if err != nil {
		if ae, ok := err.(*apiError); ok && ae.Code == "not_leader" {
			// "ask the leader n1 at 127.0.0.1:8081"
			if _, addr, ok := strings.Cut(ae.Message, " at "); ok && strings.Contains(ae.Message, "ask the leader") {
				return fmt.Errorf("only the leader changes membership: %s; run again with -node http://%s", ae.Message, addr)
			}
		}
		return err
	}
	return e.out(raw, func() { fmt.Fprintf(e.stdout, "%s removed from the Raft configuration\n", pos[0]) })
}

func clusterSnapshot(e *env, args []string) error {
	if _, err := e.flags("cluster snapshot").parse(args, 0, 0); err != nil {
		return err
	}
	var s schema.Stats
	raw, err := e.call(http.MethodPost, "/v1/admin/cluster/snapshot", nil, nil, &s, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		fmt.Fprintf(e.stdout, "%s snapshotted: last snapshot at log index %d (applied %d)\n", s.NodeID, s.LastSnapshotIndex, s.AppliedIndex)
	})
}

func token(e *env, args []string) error {
	if _, err := e.flags("token").parse(args, 0, 0); err != nil {
		return err
	}
	if e.g.token != "" && e.g.clusterKey == "" {
		return usagef("token derives the admin token from a cluster key: give -cluster-key FILE, not -token")
	}
	saved := e.g.token
	e.g.token = ""
	tok, _, err := e.g.credential()
	e.g.token = saved
	if err != nil {
		return err
	}
	if e.g.json {
		fmt.Fprintf(e.stdout, "{\"token\": %q}\n", tok)
		return nil
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}
