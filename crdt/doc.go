// Package crdt holds the state-based and delta CRDTs behind Parley's
// conversations, read receipts, typing indicators and presence. Every merge
// is a join (commutative, associative, idempotent), so replicas that see the
// same updates in any order, duplicated or late, converge; deltas are
// themselves states and are applied with the same join. Vector, the version
// vector of a conversation's events, is the causal word they share with the
// replication between nodes and with clients that resume.
package crdt
