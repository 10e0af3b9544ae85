// Package replication carries conversation events between the nodes that
// hold or serve them: one-hop deltas on an ordered stream per pair of nodes,
// acknowledgements that make a write durable on several replicas, and the
// gate that admits each origin's events once and in order. It knows events
// only as origin-stamped, opaque payloads; the node stores and applies
// them, and runs anti-entropy (node/antientropy.go) to repair whatever a
// stream lost (docs/replication.md).
package replication
