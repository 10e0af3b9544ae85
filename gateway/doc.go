// Package gateway serves Parley's visitors and agents: it upgrades their
// connections, speaks the versioned wire protocol of docs/protocol.md,
// authenticates at the edge, and fans durable conversation events out to the
// connections subscribed to them. Transports (WebSocket now, WebTransport
// next) only move frames; sessions, the hub and presence are shared.
package gateway
