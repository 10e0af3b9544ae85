// Package replication is the data plane between nodes: links, gate,
// fan-out, acknowledgements, anti-entropy and saved-reply sync.
//
// Links (link.go, wire.go) carry conversation events on one ordered
// stream per pair of nodes, with acknowledgements, and ephemeral signals;
// the Gate (gate.go) admits each origin's events once and in order. The
// Replicator decides what goes where: a node's own message events go at
// once to the other replicas of their conversation (placement over the
// alive nodes of the workspace's region) and to the nodes serving its
// participants (fanout.go); a sender's ack waits for a second replica
// (ack.go); a peer's events pass the gate into the store (inbound.go);
// presence, typing, views and receipts travel as signals (signal.go);
// anti-entropy rounds repair whatever a link lost (antientropy.go, its
// hash tree tree.go, the peer's side antientropy_peer.go); saved replies
// are kept in step between the nodes serving a workspace (replies.go);
// a workspace pinned elsewhere is handed over to its region (handover.go).
//
// The Replicator depends on the rest of the node through the small
// interfaces of Config (config.go): the store, the control plane's
// lookups, gossip's members, the node link's requests, the usage meter;
// the gateway is given to Run. docs/replication.md has the design.
package replication
