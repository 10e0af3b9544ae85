package cluster

import (
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"

	"parley/cluster/schema"
)

// The command table's versions: every command of the first release (types
// 1 to 35, commit f1a04e3) is of version 1, every later one names a later
// version, none beyond this build's; an envelope needs what it carries.
func TestCommandVersions(t *testing.T) {
	t.Parallel()
	for n := 1; n < 128; n++ {
		typ := CommandType(n)
		if schema.NewCommand(typ) == nil {
			continue
		}
		since := schema.Since(typ)
		switch {
		case since < 1 || since > schema.ProtocolVersion:
			t.Errorf("%s (%d): since %d, want 1 to %d", typ, n, since, schema.ProtocolVersion)
		case n <= 35 && since != 1:
			t.Errorf("%s (%d) is of the first release: since %d, want 1", typ, n, since)
		case n > 35 && since < 2:
			t.Errorf("%s (%d) came after the first release: since %d, want 2 or later", typ, n, since)
		}
	}
	if schema.MinProtocolVersion < 1 || schema.MinProtocolVersion > schema.ProtocolVersion {
		t.Fatalf("versions %d to %d", schema.MinProtocolVersion, schema.ProtocolVersion)
	}
	if v := schema.RequiredVersion(Request{ID: "0123456789abcdef", Cmd: Audited{Cmd: &SetPlan{}}}); v != 1 {
		t.Fatalf("a request of an audited set_plan needs %d", v)
	}
	if c := schema.Innermost(Request{ID: "0123456789abcdef", Cmd: Audited{Cmd: &SetPlan{}}}); c.Type() != TypeSetPlan {
		t.Fatalf("innermost %s", c.Type())
	}
}

// A command newer than a member runs, or than a member gossip does not
// see may run, is refused before it is proposed, naming the versions;
// once every member runs it, it passes. Commands of the first release
// pass whatever the members advertise.
func TestNewerCommandRefusedUntilEveryMemberRunsIt(t *testing.T) {
	t.Parallel()
	c, set := clusterSeeing(t, map[string]int{"n1": 2, "n2": 2, "n3": 1})
	cmd := &SetPlan{}
	if vi := c.Versions(); vi.Cluster != 1 || vi.Members["n3"] != 1 || vi.Node != schema.ProtocolVersion {
		t.Fatalf("versions %+v", vi)
	}
	err := c.checkNeed(cmd, 2)
	if !errors.Is(err, ErrClusterUpgrading) || ErrorCode(err) != "cluster_upgrading" ||
		!strings.Contains(err.Error(), "set_plan needs protocol version 2 on every node, and n3 runs 1") {
		t.Fatalf("with n3 at 1: %v", err)
	}
	set(map[string]int{"n1": 2, "n2": 2})
	if err := c.checkNeed(cmd, 2); !errors.Is(err, ErrClusterUpgrading) || !strings.Contains(err.Error(), "n3 of unknown version") {
		t.Fatalf("with n3 unseen: %v", err)
	}
	// Version-1 commands go through all the while.
	if _, err := c.Apply(testContext(t), SetPlan{Plan: Plan{Name: "p1", Seats: 1}}); err != nil {
		t.Fatalf("a first-release command with a member unseen: %v", err)
	}
	set(map[string]int{"n1": 2, "n2": 2, "n3": 2})
	if err := c.checkNeed(cmd, 2); err != nil {
		t.Fatalf("every member at 2: %v", err)
	}
	if vi := c.Versions(); vi.Cluster != 2 {
		t.Fatalf("versions %+v", vi)
	}
	if err := c.checkNeed(cmd, 3); !errors.Is(err, ErrClusterUpgrading) {
		t.Fatalf("a command of version 3: %v", err)
	}
	// The error crosses a forward as itself.
	if _, err := decodeReply(encodeReply(Result{}, c.checkNeed(cmd, 3))); !errors.Is(err, ErrClusterUpgrading) {
		t.Fatalf("forwarded: %v", err)
	}
}

// What is exchanged as data (internal messages) counts a member out of
// sight at the version it was last seen at: it goes on through a
// partition once every member was seen at the version needed, and not
// before.
func TestRequireLastSeenThroughAPartition(t *testing.T) {
	t.Parallel()
	c, set := clusterSeeing(t, map[string]int{"n1": 2, "n2": 2})
	if err := c.RequireLastSeen("a note", 2); !errors.Is(err, ErrClusterUpgrading) || !strings.Contains(err.Error(), "n3 of unknown version") {
		t.Fatalf("n3 never seen: %v", err)
	}
	set(map[string]int{"n1": 2, "n2": 2, "n3": 1})
	if err := c.RequireLastSeen("a note", 2); !errors.Is(err, ErrClusterUpgrading) || !strings.Contains(err.Error(), "n3 runs 1") {
		t.Fatalf("n3 at 1: %v", err)
	}
	set(map[string]int{"n1": 2, "n2": 2, "n3": 2})
	if err := c.RequireLastSeen("a note", 2); err != nil {
		t.Fatalf("every member at 2: %v", err)
	}
	// n3 out of sight (a partition): last seen at 2, so data goes on;
	// commands stay refused (Require).
	set(map[string]int{"n1": 2, "n2": 2})
	if err := c.RequireLastSeen("a note", 2); err != nil {
		t.Fatalf("n3 out of sight, last seen at 2: %v", err)
	}
	if err := c.Require("a command", 2); !errors.Is(err, ErrClusterUpgrading) {
		t.Fatalf("a command with n3 out of sight: %v", err)
	}
	if err := c.RequireLastSeen("a note", 3); !errors.Is(err, ErrClusterUpgrading) {
		t.Fatalf("version 3: %v", err)
	}
}

// clusterSeeing is the leader of a 3-node test cluster whose gossip shows
// the members' versions as known says, and set, which changes them.
func clusterSeeing(t *testing.T, known map[string]int) (*Cluster, func(map[string]int)) {
	var mu sync.Mutex
	tc := newTestCluster(t, 3, func(cfg *Config) {
		cfg.Versions = func() map[string]int {
			mu.Lock()
			defer mu.Unlock()
			return maps.Clone(known)
		}
	})
	set := func(m map[string]int) {
		mu.Lock()
		known = m
		mu.Unlock()
	}
	return tc.leader(), set
}
