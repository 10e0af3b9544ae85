// Package node is the Parley node process: it reads the configuration,
// opens the store, joins the control plane (cluster) and gossip, builds
// the data plane (cluster/replication), the gateway and the listeners
// (public HTTP, HTTP/3, the node link) in order, and stops them in
// reverse. It also holds what is node-wide: metrics, the redacting logger,
// health checks, the demo workspace, the route table (public, admin,
// agents' and internal), the node link's signed requests, and the
// adapters that hand each part what it depends on. The policies live with
// their engines: cluster/replication, cluster/residency, cluster's usage
// reporter. docs/architecture.md maps it.
package node
