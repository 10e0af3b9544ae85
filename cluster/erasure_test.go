package cluster

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestEraseConversationOnceAndInSnapshots: the first erasure's index stays,
// a second one is a duplicate, ErasedAfter lists erasures in index order,
// and a node restored from a snapshot knows them.
func TestEraseConversationOnceAndInSnapshots(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	first := h.must(EraseConversation{Workspace: "acme", Conversation: "c1"})
	again := h.must(EraseConversation{Workspace: "acme", Conversation: "c1"})
	if !again.Duplicate || again.Index != first.Index {
		t.Fatalf("second erasure: %+v, first %+v", again, first)
	}
	second := h.must(EraseConversation{Workspace: "acme", Conversation: "c2"})
	if _, err := h.apply(EraseConversation{Workspace: "nope", Conversation: "c1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("erasure in an unknown workspace: %v", err)
	}
	r := newHarness(t)
	if err := r.f.Restore(io.NopCloser(bytes.NewReader(h.snapshot()))); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*State{h.state(), r.state()} {
		if i, ok, err := s.Erased("acme", "c1"); err != nil || !ok || i != first.Index {
			t.Fatalf("Erased(c1) = %d %v %v", i, ok, err)
		}
		if _, ok, _ := s.Erased("acme", "c3"); ok {
			t.Fatal("c3 erased")
		}
		all, _ := s.ErasedAfter(0)
		if len(all) != 2 || all[0].Conversation != "c1" || all[1].Conversation != "c2" {
			t.Fatalf("ErasedAfter(0) = %+v", all)
		}
		if later, _ := s.ErasedAfter(first.Index); len(later) != 1 || later[0].Index != second.Index {
			t.Fatalf("ErasedAfter(%d) = %+v", first.Index, later)
		}
	}
}

// TestEraseVisitorEachTimeAndInSnapshots: each erasure of a visitor is a
// new record (the visitor may have started conversations since), listed
// by ErasedAfter after the conversations' erasures before it, and known
// to a node restored from a snapshot; a visitor that is not one is refused.
func TestEraseVisitorEachTimeAndInSnapshots(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	const v = "v:0123456789abcdef0123456789abcdef"
	conv := h.must(EraseConversation{Workspace: "acme", Conversation: "c1"})
	first := h.must(EraseVisitor{Workspace: "acme", Visitor: v})
	again := h.must(EraseVisitor{Workspace: "acme", Visitor: v})
	if again.Duplicate || again.Index <= first.Index {
		t.Fatalf("second erasure of the visitor: %+v, first %+v", again, first)
	}
	for _, bad := range []string{"", "a:sam", "v:0123", "v:0123456789ABCDEF0123456789ABCDEF", "u:", "u:a\nb", "u:" + string(make([]byte, 129))} {
		if err := (EraseVisitor{Workspace: "acme", Visitor: bad}).Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("visitor %q: %v", bad, err)
		}
	}
	r := newHarness(t)
	if err := r.f.Restore(io.NopCloser(bytes.NewReader(h.snapshot()))); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*State{h.state(), r.state()} {
		all, _ := s.ErasedAfter(0)
		if len(all) != 2 || all[0].Conversation != "c1" || all[0].Index != conv.Index || all[1].Visitor != v || all[1].Index != again.Index {
			t.Fatalf("ErasedAfter(0) = %+v", all)
		}
		if later, _ := s.ErasedAfter(first.Index); len(later) != 1 || later[0].Visitor != v {
			t.Fatalf("ErasedAfter(%d) = %+v", first.Index, later)
		}
	}
}
