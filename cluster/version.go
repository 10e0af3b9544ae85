package cluster

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"parley/cluster/schema"
)

// Protocol versions in a cluster of nodes of different releases (a
// rolling upgrade): each node advertises the version it runs (gossip,
// Config.Versions); a command newer than the lowest version among the
// members of the Raft configuration is refused before it is proposed, so
// that no older node meets a type it does not know in the log and stops
// its state machine (fsm.Apply). A member gossip does not see alive may
// run anything: while one is out of sight, newer commands are refused too.

// VersionInfo is what this node knows of the protocol versions in the
// cluster.
type VersionInfo struct {
	// Node is this build's version; MinSupported the oldest it works
	// beside (schema.ProtocolVersion, schema.MinProtocolVersion).
	Node         int `json:"node"`
	MinSupported int `json:"min_supported"`
	// Cluster is the lowest version among the members of the Raft
	// configuration, 0 while one of them is of unknown version (not seen
	// alive by gossip): commands introduced after it are refused.
	Cluster int `json:"cluster"`
	// Members are the members' versions by ID, 0 for unknown.
	Members map[string]int `json:"members"`
}

// versions is the members' versions as Config.Versions reports them.
func (c *Cluster) versions() map[string]int {
	if c.cfg.Versions == nil {
		out := map[string]int{}
		if f := c.raft.GetConfiguration(); f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				out[string(s.ID)] = schema.ProtocolVersion
			}
		}
		return out
	}
	return c.cfg.Versions()
}

// Versions reports the protocol versions of the cluster's members as this
// node knows them.
func (c *Cluster) Versions() VersionInfo {
	vi := VersionInfo{Node: schema.ProtocolVersion, MinSupported: schema.MinProtocolVersion, Members: map[string]int{}}
	known := c.versions()
	lowest := 0
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return vi
	}
	c.seenMu.Lock()
	if c.seen == nil {
		c.seen = map[string]int{}
	}
	for id, v := range known {
		c.seen[id] = max(c.seen[id], v)
	}
	c.seenMu.Unlock()
	for i, s := range f.Configuration().Servers {
		v := known[string(s.ID)]
		vi.Members[string(s.ID)] = v
		if i == 0 || v < lowest {
			lowest = v
		}
	}
	vi.Cluster = lowest
	return vi
}

// checkVersion refuses cmd (ErrClusterUpgrading) when it needs a protocol
// version that a member of the cluster does not run, or may not.
func (c *Cluster) checkVersion(cmd Command) error {
	return c.checkNeed(cmd, schema.RequiredVersion(cmd))
}

// checkNeed is checkVersion of a command that needs version need.
func (c *Cluster) checkNeed(cmd Command, need int) error {
	return c.Require(schema.Innermost(cmd).Type().String(), need)
}

// Require refuses (ErrClusterUpgrading) what needs protocol version need
// while a member of the cluster does not run it, or may not (not seen
// alive); what names it in the error. Besides commands (Apply checks
// those), what nodes exchange outside the log asks it: internal messages,
// which an older node would hand to visitors (the gateway's
// Config.InternalMessages).
func (c *Cluster) Require(what string, need int) error {
	if need <= schema.MinProtocolVersion {
		// Every node this one links with runs at least that.
		return nil
	}
	vi := c.Versions()
	if vi.Cluster >= need {
		return nil
	}
	return upgrading(vi, what, need)
}

// RequireLastSeen is Require where a member out of sight counts at the
// version gossip last showed for it since this node started (a release
// is never downgraded: docs/operations.md, *Upgrading*): what nodes
// exchange as data, such as internal messages, goes on through a
// partition once every member was seen at the version. A member not
// seen since this node started is of unknown version: refused.
func (c *Cluster) RequireLastSeen(what string, need int) error {
	if need <= schema.MinProtocolVersion {
		return nil
	}
	vi := c.Versions()
	if vi.Cluster >= need {
		return nil
	}
	c.seenMu.Lock()
	lowest := -1
	for id, v := range vi.Members {
		if v == 0 {
			v = c.seen[id]
			vi.Members[id] = v
		}
		if lowest < 0 || v < lowest {
			lowest = v
		}
	}
	c.seenMu.Unlock()
	if lowest >= need {
		return nil
	}
	return upgrading(vi, what, need)
}

// upgrading is ErrClusterUpgrading for what, naming the members behind.
func upgrading(vi VersionInfo, what string, need int) error {
	var behind []string
	for _, id := range slices.Sorted(maps.Keys(vi.Members)) {
		switch v := vi.Members[id]; {
		case v == 0:
			behind = append(behind, id+" of unknown version (not seen alive)")
		case v < need:
			behind = append(behind, fmt.Sprintf("%s runs %d", id, v))
		}
	}
	if len(vi.Members) == 0 {
		behind = append(behind, "the members are unknown")
	}
	return fmt.Errorf("%w: %s needs protocol version %d on every node, and %s (this node runs %d): upgrade every node first",
		ErrClusterUpgrading, what, need, strings.Join(behind, ", "), schema.ProtocolVersion)
}
