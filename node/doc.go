// Package node is the Parley node process: it reads the configuration,
// opens the store, joins the control plane (cluster) and gossip, starts the
// replication links, the gateway and the listeners (public HTTP, HTTP/3,
// the node link) in order, and stops them in reverse. It also holds what is
// node-wide: metrics, the redacting logger, health checks, the demo
// workspace, the admin and agents' HTTP APIs, and the policy of the data
// plane (what to replicate where, anti-entropy rounds, erasure and
// residency) on top of cluster/replication. docs/architecture.md maps it.
package node
