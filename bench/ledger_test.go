package bench

import (
	"bytes"
	"strings"
	"testing"
)

// TestLedgerAccounting feeds synthetic events, as the virtual clients and
// the audit would report them, and checks every message's fate.
func TestLedgerAccounting(t *testing.T) {
	const epoch1 = 1 << 32
	l := NewLedger(12, 2)
	for k := 0; k < 11; k++ {
		l.Sent(k)
	}
	// 0: the normal case.
	l.Acked(0, 0, 1)
	l.Delivered(0, 0, 1)
	l.Delivered(1, 0, 1)
	l.Stored(0, 0, 1)
	// 1: agent 1 never got it.
	l.Acked(1, 0, 2)
	l.Delivered(0, 1, 2)
	l.Stored(0, 1, 2)
	// 2: acknowledged, delivered, but missing from the history.
	l.Acked(2, 0, 3)
	l.Delivered(0, 2, 3)
	l.Delivered(1, 2, 3)
	// 3: stored twice (a resend stored again).
	l.Acked(3, 0, 4)
	l.Delivered(0, 3, 4)
	l.Delivered(1, 3, 4)
	l.Stored(0, 3, 4)
	l.Stored(0, 3, 9)
	// 4: acknowledged at two different seqs.
	l.Acked(4, 0, 5)
	l.Acked(4, 0, 10)
	l.Delivered(0, 4, 5)
	l.Delivered(1, 4, 5)
	l.Stored(0, 4, 5)
	// 5: published before a crash at seq 6, lost with it, resent, stored at
	// the next epoch's seq: both agents saw both seqs. Delivered, two seq
	// changes, not a duplicate.
	l.Delivered(0, 5, 6)
	l.Delivered(1, 5, 6)
	l.Acked(5, 0, epoch1+1)
	l.Delivered(0, 5, epoch1+1)
	l.Delivered(1, 5, epoch1+1)
	l.Stored(0, 5, epoch1+1)
	// 6: agent 1 only saw the seq the crash lost: lost at agent 1.
	l.Delivered(0, 6, 7)
	l.Delivered(1, 6, 7)
	l.Acked(6, 0, epoch1+2)
	l.Delivered(0, 6, epoch1+2)
	l.Stored(0, 6, epoch1+2)
	// 7: redelivered at the same seq after a resume: one event.
	l.Acked(7, 0, 8)
	l.Delivered(0, 7, 8)
	l.Delivered(0, 7, 8)
	l.Delivered(1, 7, 8)
	l.Stored(0, 7, 8)
	// 8: sent, never acknowledged, but stored (the ack was lost).
	l.Stored(0, 8, 11)
	// 9: rejected with an error frame.
	l.Rejected(9)
	// 10: sent, nothing else. 11: never sent.
	// Out of range: ignored.
	l.Acked(99, 0, 1)
	l.Delivered(5, 0, 1)
	l.MarkAudited(0)

	a := l.Account(12)
	want := Accounting{Issued: 12, Sent: 11, Acked: 8, Unacked: 3, Rejected: 1, Agents: 2, Audited: true,
		Delivered: 3, Lost: 3, Duplicated: 2, LostAtAgents: 2, LostInStore: 1, DuplicatedInStore: 1,
		Redelivered: 1, SeqChanges: 3, StoredUnacked: 1}
	got := a
	got.LostExamples, got.DupExamples, got.Details = nil, nil, nil
	if got.Issued != want.Issued || got.Sent != want.Sent || got.Acked != want.Acked || got.Unacked != want.Unacked ||
		got.Rejected != want.Rejected || got.Delivered != want.Delivered || got.Lost != want.Lost ||
		got.Duplicated != want.Duplicated || got.LostAtAgents != want.LostAtAgents || got.LostInStore != want.LostInStore ||
		got.DuplicatedInStore != want.DuplicatedInStore || got.Redelivered != want.Redelivered ||
		got.SeqChanges != want.SeqChanges || got.StoredUnacked != want.StoredUnacked {
		t.Errorf("accounting\n got %+v\nwant %+v", got, want)
	}
	if !eqInts(a.LostExamples, []int{1, 2, 6}) || !eqInts(a.DupExamples, []int{3, 4}) {
		t.Errorf("examples: lost %v dup %v", a.LostExamples, a.DupExamples)
	}
	if len(a.Details) != 5 || !strings.Contains(a.Details[0], "message 1 lost: acked seq 2 by node 0; agents: 0@node0=seq 2 1@node0=missing") {
		t.Errorf("details: %q", a.Details)
	}
	var csv bytes.Buffer
	if err := l.WriteCSV(&csv, 12, func(k int) string { return "c" }); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(csv.String(), "\n"); lines != 13 || !strings.HasPrefix(csv.String(), "message,conversation,state,acked_seq,agent0_seq,agent1_seq,stored,stored_seq,acked_node\n") {
		t.Errorf("csv:\n%s", csv.String())
	}
}

func TestLedgerWithoutAuditOrAgents(t *testing.T) {
	l := NewLedger(3, 0)
	l.Sent(0)
	l.Acked(0, 0, 1)
	l.Sent(1)
	if a := l.Account(3); a.Unverified != 1 || a.Delivered != 0 || a.Unacked != 1 || a.Audited {
		t.Errorf("%+v", a)
	}
	// The drain waits for message 1's ack.
	if !l.pending(2) {
		t.Error("pending: message 1 is not acknowledged")
	}
	l.Acked(1, 0, 2)
	if l.pending(2) {
		t.Error("pending after every ack")
	}
	// With agents, the drain also waits for every agent.
	l2 := NewLedger(1, 2)
	l2.Acked(0, 0, 1)
	l2.Delivered(0, 0, 1)
	if !l2.pending(1) {
		t.Error("pending: agent 1 has not received message 0")
	}
	l2.Delivered(1, 0, 1)
	if l2.pending(1) {
		t.Error("still pending")
	}
	// First-receipt reporting, for latency.
	if l2.Delivered(1, 0, 1) || l2.Acked(0, 0, 1) {
		t.Error("a repeat reported as first")
	}
}

func eqInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLedgerAcrossNodes: on a cluster each node numbers events its own way.
// The acknowledged seq is checked at the agents of the acknowledging node
// and in its history; agents elsewhere must have the message, and every
// audited node must hold it exactly once.
func TestLedgerAcrossNodes(t *testing.T) {
	l := NewLedger(6, 2)
	l.SetAgentNode(0, 0)
	l.SetAgentNode(1, 1)
	for k := range 6 {
		l.Sent(k)
	}
	// 0: acked by node 0 at 5; node 1 numbers it 9: delivered.
	l.Acked(0, 0, 5)
	l.Delivered(0, 0, 5)
	l.Delivered(1, 0, 9)
	l.Stored(0, 0, 5)
	l.Stored(1, 0, 9)
	// 1: acked by node 1 at 3; a resend acked by node 1 again at 3 (dup),
	// and node 0's agent got it at 7: delivered.
	l.Acked(1, 1, 3)
	l.Acked(1, 1, 3)
	l.Delivered(0, 1, 7)
	l.Delivered(1, 1, 3)
	l.Stored(0, 1, 7)
	l.Stored(1, 1, 3)
	// 2: never reached node 1 (its agent and its history lack it): lost.
	l.Acked(2, 0, 6)
	l.Delivered(0, 2, 6)
	l.Stored(0, 2, 6)
	// 3: node 1 holds it twice: duplicated.
	l.Acked(3, 0, 8)
	l.Delivered(0, 3, 8)
	l.Delivered(1, 3, 10)
	l.Stored(0, 3, 8)
	l.Stored(1, 3, 10)
	l.Stored(1, 3, 11)
	// 4: node 0's agent got it at a seq other than the acked one: lost
	// (on the acknowledging node, the seq is the message's name).
	l.Acked(4, 0, 12)
	l.Delivered(0, 4, 11)
	l.Delivered(1, 4, 12)
	l.Stored(0, 4, 12)
	l.Stored(1, 4, 12)
	// 5: acked by node 1 at 2, then by node 1 at 4: two events, duplicated.
	l.Acked(5, 1, 2)
	l.Acked(5, 1, 4)
	l.Delivered(0, 5, 13)
	l.Delivered(1, 5, 2)
	l.Stored(0, 5, 13)
	l.Stored(1, 5, 2)
	l.MarkAudited(0, 1)
	a := l.Account(6)
	if a.Acked != 6 || a.Delivered != 2 || a.Lost != 2 || a.Duplicated != 2 || a.LostAtAgents != 2 ||
		a.LostInStore != 1 || a.DuplicatedInStore != 1 || a.AuditedNodes != 2 {
		t.Errorf("accounting %+v", a)
	}
	if !eqInts(a.LostExamples, []int{2, 4}) || !eqInts(a.DupExamples, []int{3, 5}) {
		t.Errorf("examples: lost %v dup %v", a.LostExamples, a.DupExamples)
	}
	// Only node 1 audited (node 0 down for good): message 2 is lost there,
	// 0 and 1 are fine.
	l.MarkAudited(1)
	if a := l.Account(2); a.Delivered != 2 || a.Lost != 0 || a.AuditedNodes != 1 {
		t.Errorf("audit of node 1 only: %+v", a)
	}
	var csv bytes.Buffer
	if err := l.WriteCSV(&csv, 6, func(int) string { return "c" }); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(csv.String(), "message,conversation,state,acked_seq,agent0_seq,agent1_seq,stored,stored_seq,stored_n2,stored_seq_n2,acked_node\n") ||
		!strings.Contains(csv.String(), "\n3,c,3,8,8,10,1,8,2,10,0\n") {
		t.Errorf("csv:\n%s", csv.String())
	}
}
