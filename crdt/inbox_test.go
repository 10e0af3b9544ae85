package crdt_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"parley/crdt"
	"parley/ident"
)

func genInbox() *rapid.Generator[*crdt.Inbox] {
	return rapid.Custom(func(t *rapid.T) *crdt.Inbox {
		x := &crdt.Inbox{}
		for i := rapid.IntRange(0, 4).Draw(t, "statuses"); i > 0; i-- {
			x.SetStatus(crdt.StatusSet{
				Status: rapid.SampledFrom([]crdt.Status{crdt.StatusOpen, crdt.StatusPending, crdt.StatusSnoozed, crdt.StatusResolved}).Draw(t, "s"),
				Until:  rapid.Int64Range(0, 5).Draw(t, "until"),
				By:     rapid.SampledFrom([]string{"a:ann", "a:bob"}).Draw(t, "by"),
				TS:     genTS().Draw(t, "ts"),
			})
		}
		for i := rapid.IntRange(0, 6).Draw(t, "tags"); i > 0; i-- {
			x.SetTag(crdt.TagSet{
				Tag: rapid.SampledFrom([]string{"billing", "bug", "vip"}).Draw(t, "tag"),
				On:  rapid.Bool().Draw(t, "on"),
				TS:  genTS().Draw(t, "ts"),
			})
		}
		if rapid.Bool().Draw(t, "context") {
			x.SetContext(crdt.ContextSet{
				Context: crdt.VisitorContext{
					URL:   rapid.SampledFrom([]string{"https://a.test/", "https://b.test/"}).Draw(t, "url"),
					Attrs: map[string]string{"plan": rapid.SampledFrom([]string{"free", "pro"}).Draw(t, "plan")},
				},
				TS: genTS().Draw(t, "ts"),
			})
		}
		if rapid.Bool().Draw(t, "visitor") {
			x.VisitorWrote(genTS().Draw(t, "visitor_ts"))
		}
		return x
	})
}

// Folding a log's messages in any order, each any number of times, gives
// the same state: what lets every replica keep the state beside its log.
func TestInboxFoldOrderFree(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 8).Draw(t, "n")
		var msgs []crdt.Message
		for i := range n {
			ts := genTS().Draw(t, "ts")
			var m crdt.Message
			switch rapid.IntRange(0, 3).Draw(t, "kind") {
			case 0:
				m = crdt.NewMessage(fmt.Sprint(i), "v:a", ident.Visitor, "", "hi", ts)
			case 1:
				body, _ := json.Marshal(crdt.InboxOp{Status: rapid.SampledFrom([]crdt.Status{crdt.StatusResolved, crdt.StatusPending}).Draw(t, "s")})
				m = crdt.NewMessage(fmt.Sprint(i), rapid.SampledFrom([]string{"a:ann", "a:bob"}).Draw(t, "by"), ident.Agent, "", string(body), ts)
				m.Internal, m.Kind = true, crdt.KindStatus
			case 2:
				body, _ := json.Marshal(crdt.InboxOp{Tag: "vip", On: rapid.Bool().Draw(t, "on")})
				m = crdt.NewMessage(fmt.Sprint(i), "a:ann", ident.Agent, "", string(body), ts)
				m.Internal, m.Kind = true, crdt.KindTag
			case 3:
				m = crdt.NewMessage(fmt.Sprint(i), "a:ann", ident.Agent, "", "a note", ts)
				m.Internal = true
			}
			msgs = append(msgs, m)
		}
		var want crdt.Inbox
		for _, m := range msgs {
			want.Fold(m)
		}
		order := rapid.Permutation(append(msgs, msgs...)).Draw(t, "order")
		var got crdt.Inbox
		for _, m := range order {
			got.Fold(m)
		}
		if !got.Equal(&want) {
			t.Fatalf("folded in another order: %+v, want %+v", got, want)
		}
		// And it survives the store's encoding.
		b, err := json.Marshal(&got)
		if err != nil {
			t.Fatal(err)
		}
		var back crdt.Inbox
		if err := json.Unmarshal(b, &back); err != nil || !back.Equal(&got) {
			t.Fatalf("JSON round trip: %v %+v", err, back)
		}
	})
}

func TestInboxMergeProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		g := genInbox()
		checkJoinLaws(t, g.Draw(t, "a"), g.Draw(t, "b"), g.Draw(t, "c"))
	})
}

func TestInboxStatus(t *testing.T) {
	t.Parallel()
	ts := func(w int64) crdt.Timestamp { return crdt.Timestamp{Wall: w, Node: "n1"} }
	var x crdt.Inbox
	if got := x.Status(0); got != crdt.StatusOpen {
		t.Fatalf("a new conversation is %s", got)
	}
	x.SetStatus(crdt.StatusSet{Status: crdt.StatusResolved, By: "a:ann", TS: ts(10)})
	cases := []struct {
		now     int64
		visitor crdt.Timestamp
		want    crdt.Status
	}{
		{20, ts(5), crdt.StatusResolved}, // the visitor wrote before it was resolved
		{20, ts(15), crdt.StatusOpen},    // and after: reopened
		{20, crdt.Timestamp{}, crdt.StatusResolved},
	}
	for _, c := range cases {
		y := x.Clone()
		y.VisitorWrote(c.visitor)
		if got := y.Status(c.now); got != c.want {
			t.Errorf("resolved at 10, visitor at %v, now %d: %s, want %s", c.visitor, c.now, got, c.want)
		}
	}
	x.VisitorWrote(ts(15))
	x.SetStatus(crdt.StatusSet{Status: crdt.StatusSnoozed, Until: 100, By: "a:bob", TS: ts(30)})
	if got := x.Status(50); got != crdt.StatusSnoozed {
		t.Fatalf("snoozed until 100, at 50: %s", got)
	}
	if got := x.Status(100); got != crdt.StatusOpen {
		t.Fatalf("snoozed until 100, at 100: %s", got)
	}
	// An older setting arriving late changes nothing.
	if x.SetStatus(crdt.StatusSet{Status: crdt.StatusPending, By: "a:ann", TS: ts(20)}) {
		t.Fatal("an older status replaced a newer one")
	}
	x.SetTag(crdt.TagSet{Tag: "vip", On: true, TS: ts(1)})
	x.SetTag(crdt.TagSet{Tag: "bug", On: true, TS: ts(1)})
	x.SetTag(crdt.TagSet{Tag: "bug", On: false, TS: ts(2)})
	if got := x.Tags(); !slices.Equal(got, []string{"vip"}) {
		t.Fatalf("tags %v", got)
	}
}
