// Package residency keeps a node's store to what the node may hold.
//
// Erasures applies the control plane's erasure records to the store, in
// index order, now or when the node catches up (a node down at the time
// erases its copy when it comes back; one that joins later learns every
// erasure from the snapshot), and tells who waits how far it got.
//
// The Purger makes the store agree with residency: a node holds a
// workspace's data only when the control plane knows the workspace and it
// is unpinned or pinned to the node's region (replication.Control.Serves
// says which). A deleted workspace's data is purged; a workspace pinned to
// another region is handed over to that region's nodes first (the data
// plane's Handover) and purged once they confirmed they hold it.
// docs/replication.md has the design.
package residency
