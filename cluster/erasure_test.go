package cluster

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
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

// TestDeletionRequestsEndWithTheErasure: a visitor's request to be
// forgotten is listed (a second keeps the first's time) until the
// visitor's erasure ends it, also after a snapshot; the workspace keeps
// its deletion mode.
func TestDeletionRequestsEndWithTheErasure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	const a, b = "v:0123456789abcdef0123456789abcdef", "u:42"
	h.must(SetVisitorDeletion{Workspace: "acme", Mode: DeletionConfirm})
	h.must(RequestDeletion{Workspace: "acme", Visitor: a, At: t0})
	h.must(RequestDeletion{Workspace: "acme", Visitor: b, At: t0.Add(time.Minute)})
	h.must(RequestDeletion{Workspace: "acme", Visitor: a, At: t0.Add(time.Hour)})
	if err := (SetVisitorDeletion{Workspace: "acme", Mode: "later"}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("mode later: %v", err)
	}
	reqs, err := h.state().DeletionRequests("acme")
	if err != nil || len(reqs) != 2 || reqs[0].Visitor != a || !reqs[0].At.Equal(t0) || reqs[1].Visitor != b {
		t.Fatalf("requests %+v %v", reqs, err)
	}
	h.must(EraseVisitor{Workspace: "acme", Visitor: a})
	r := newHarness(t)
	if err := r.f.Restore(io.NopCloser(bytes.NewReader(h.snapshot()))); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*State{h.state(), r.state()} {
		if reqs, err := s.DeletionRequests("acme"); err != nil || len(reqs) != 1 || reqs[0].Visitor != b {
			t.Fatalf("after the erasure: %+v %v", reqs, err)
		}
		if w, err := s.Workspace("acme"); err != nil || w.VisitorDeletion != DeletionConfirm {
			t.Fatalf("workspace %+v %v", w, err)
		}
	}
}
