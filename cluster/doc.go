// Package cluster is Parley's control plane: the state that must never
// diverge between nodes (workspaces and their region pins, operators,
// sessions, API keys, identity secrets, plans, usage, billing events and
// conversation assignments) lives in a hashicorp/raft log stored in bbolt.
// Every change is a command (one type byte, then a JSON payload) proposed on
// the leader, and every node answers reads from its own copy of the applied
// state, which a caller can make linearizable with Consistent or WaitApplied.
// A node counts its traffic with a UsageReporter, which reports it to the
// control plane.
package cluster
