package replication

import (
	"testing"

	"parley/cluster/membership"
	"parley/crdt"
	"parley/ident"
	"parley/store"
)

// lone is the membership of a node no other node is alive beside; it
// counts what is asked of it.
type lone struct{ listed int }

func (l *lone) Members() []membership.Member {
	l.listed++
	return []membership.Member{{ID: "n1"}}
}
func (l *lone) Alive(id string) bool { return id == "n1" }
func (l *lone) Others() int          { return 0 }

// originOnly is a store of which Publish may ask only the origin.
type originOnly struct{ Store }

func (originOnly) Origin() string { return "n1" }

// TestPublishAloneCostsNothing: on a node with no other node alive, there
// is no replica to send an event to and no answer to wait for, so Publish
// lists no members, encodes nothing, keeps nothing for the ack and
// allocates nothing.
func TestPublishAloneCostsNothing(t *testing.T) {
	mem := &lone{}
	r := New(Config{Self: "n1", Store: originOnly{}, Members: mem})
	msg := crdt.NewMessage("m_12345678", "v:x", ident.Visitor, "", "hello", crdt.Timestamp{Wall: 1, Node: "n1"})
	evs := []store.Event{{Kind: store.EventMessage, Workspace: "ws1", Conversation: "c1", Seq: 1, Stamp: store.Stamp{Origin: "n1", OSeq: 1}, Message: msg}}
	allocs := testing.AllocsPerRun(100, func() { r.Publish(nil, evs) })
	if mem.listed != 0 {
		t.Errorf("Publish listed the members %d times", mem.listed)
	}
	if len(r.acks) != 0 {
		t.Errorf("Publish kept %d acks to wait for", len(r.acks))
	}
	if allocs != 0 {
		t.Errorf("%.1f allocations per Publish", allocs)
	}
}

// unpinned is a control plane whose workspaces are all unpinned.
type unpinned struct{ Control }

func (unpinned) Region(string) string { return "" }

// BenchmarkPublishAlone is what Publish costs a node with no other node
// alive, per message event (issue 16: node.publish on one node).
func BenchmarkPublishAlone(b *testing.B) {
	r := New(Config{Self: "n1", Store: originOnly{}, Members: &lone{}, Control: unpinned{}})
	msg := crdt.NewMessage("m_12345678", "v:x", ident.Visitor, "", "hello", crdt.Timestamp{Wall: 1, Node: "n1"})
	evs := []store.Event{{Kind: store.EventMessage, Workspace: "ws1", Conversation: "c_000000000000000000000001", Seq: 1, Stamp: store.Stamp{Origin: "n1", OSeq: 1}, Message: msg}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r.Publish(nil, evs)
	}
}
