package crdt_test

import (
	"slices"
	"testing"

	"pgregory.net/rapid"

	"parley/crdt"
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
		return x
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
	if got := x.Status(0, crdt.Timestamp{}); got != crdt.StatusOpen {
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
		if got := x.Status(c.now, c.visitor); got != c.want {
			t.Errorf("resolved at 10, visitor at %v, now %d: %s, want %s", c.visitor, c.now, got, c.want)
		}
	}
	x.SetStatus(crdt.StatusSet{Status: crdt.StatusSnoozed, Until: 100, By: "a:bob", TS: ts(30)})
	if got := x.Status(50, ts(15)); got != crdt.StatusSnoozed {
		t.Fatalf("snoozed until 100, at 50: %s", got)
	}
	if got := x.Status(100, ts(15)); got != crdt.StatusOpen {
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
