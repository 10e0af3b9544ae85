// Package edge derives a client's own address at the node's edge, where a
// load balancer or TLS proxy may stand between the client and the node: the
// PROXY protocol (v1 and v2) on the TCP listener and X-Forwarded-For on
// HTTP requests, each believed only when the connection comes from an
// address in a trusted set (-trusted-proxies). Per-IP limits then count the
// client, not the proxy.
package edge
