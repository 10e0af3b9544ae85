// Package gateway serves Parley's visitors and agents: it upgrades their
// connections, speaks the versioned wire protocol of docs/protocol.md,
// authenticates at the edge, and fans durable conversation events out to the
// connections subscribed to them. Transports (WebSocket, ws.go, and
// WebTransport over HTTP/3, webtransport.go) only move frames; sessions,
// the hub, presence and relays to another node are shared by both.
package gateway
