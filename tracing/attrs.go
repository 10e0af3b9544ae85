package tracing

import "go.opentelemetry.io/otel/attribute"

// The attributes a span of Parley's may carry: IDs that name no person
// and numbers. Nothing else is added to a span (the package comment).
// Workspace IDs are an operator's (a customer's account), node names the
// cluster's; a role or a transport is one of a few words; a code is a wire
// error code (docs/protocol.md).

// Workspace is the workspace a span's work is for.
func Workspace(ws string) attribute.KeyValue { return attribute.String("parley.workspace", ws) }

// Role is the role of the connection's participant: visitor, agent, bot.
func Role(role string) attribute.KeyValue { return attribute.String("parley.role", role) }

// Transport is the connection's transport: ws, wt.
func Transport(name string) attribute.KeyValue { return attribute.String("parley.transport", name) }

// Seq is an event's seq in this node's log of its conversation.
func Seq(seq uint64) attribute.KeyValue { return attribute.Int64("parley.seq", int64(seq)) }

// Origin and OSeq name an event on every replica (its origin node and
// that node's counter).
func Origin(node string) attribute.KeyValue { return attribute.String("parley.origin", node) }

// OSeq is an event's counter at its origin.
func OSeq(oseq uint64) attribute.KeyValue { return attribute.Int64("parley.oseq", int64(oseq)) }

// Peer is the node a replication span sends to or received from.
func Peer(node string) attribute.KeyValue { return attribute.String("parley.peer", node) }

// Bytes is a size: a message's text in bytes, a frame's.
func Bytes(n int) attribute.KeyValue { return attribute.Int("parley.bytes", n) }

// Events is how many events a span handled.
func Events(n int) attribute.KeyValue { return attribute.Int("parley.events", n) }

// Dup says a send was a duplicate of a stored message.
func Dup(dup bool) attribute.KeyValue { return attribute.Bool("parley.dup", dup) }

// Code is the wire error code a client was answered with.
func Code(code string) attribute.KeyValue { return attribute.String("parley.code", code) }
