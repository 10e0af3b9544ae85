// Package node is the Parley node process: it reads the configuration,
// opens the store, starts the gateway and the HTTP server in order, and stops
// them in reverse. It also owns what is node-wide: metrics, the redacting
// logger, health checks and the single-node stand-in for the control plane.
package node
