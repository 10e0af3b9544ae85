// Package replication carries conversation events between the nodes that
// hold or serve them: one-hop deltas on an ordered stream per pair of nodes,
// acknowledgements that make a write durable on several replicas, and
// anti-entropy that repairs whatever a stream lost. It knows events only as
// origin-stamped, opaque payloads; the node stores and applies them
// (docs/replication.md).
package replication
