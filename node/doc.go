// Package node is the Parley node process: it reads the configuration,
// opens the store, joins the control plane (cluster) and gossip, builds
// the data plane (cluster/replication), the gateway and the listeners
// (public HTTP, HTTP/3, the node link) in order, and stops them in
// reverse. It also holds what is node-wide: metrics, the redacting logger,
// health checks, the demo workspace, the route table of the admin and
// agents' HTTP APIs, the node link's signed requests, and the policies
// not yet moved to their engines (erasure, residency).
// docs/architecture.md maps it.
package node
