package bench

import (
	"bytes"
	"strings"
	"testing"

	"parley/crdt"
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
	l.Delivered(0, 0, 1, sk(0))
	l.Delivered(1, 0, 1, sk(0))
	l.Stored(0, 0, 0, 1, sk(0))
	// 1: agent 1 never got it.
	l.Acked(1, 0, 2)
	l.Delivered(0, 1, 2, sk(1))
	l.Stored(0, 1, 0, 2, sk(1))
	// 2: acknowledged, delivered, but missing from the history.
	l.Acked(2, 0, 3)
	l.Delivered(0, 2, 3, sk(2))
	l.Delivered(1, 2, 3, sk(2))
	// 3: stored twice (a resend stored again, with a ts of its own).
	l.Acked(3, 0, 4)
	l.Delivered(0, 3, 4, sk(3))
	l.Delivered(1, 3, 4, sk(3))
	l.Stored(0, 3, 0, 4, sk(3))
	l.Stored(0, 3, 0, 9, sk2(3))
	// 4: acknowledged at two different seqs.
	l.Acked(4, 0, 5)
	l.Acked(4, 0, 10)
	l.Delivered(0, 4, 5, sk(4))
	l.Delivered(1, 4, 5, sk(4))
	l.Stored(0, 4, 0, 5, sk(4))
	// 5: published before a crash at seq 6, lost with it, resent, stored at
	// the next epoch's seq: both agents saw both seqs. Delivered, two seq
	// changes, not a duplicate.
	l.Delivered(0, 5, 6, sk(5))
	l.Delivered(1, 5, 6, sk(5))
	l.Acked(5, 0, epoch1+1)
	l.Delivered(0, 5, epoch1+1, sk(5))
	l.Delivered(1, 5, epoch1+1, sk(5))
	l.Stored(0, 5, 0, epoch1+1, sk(5))
	// 6: agent 1 only saw the seq the crash lost: lost at agent 1.
	l.Delivered(0, 6, 7, sk(6))
	l.Delivered(1, 6, 7, sk(6))
	l.Acked(6, 0, epoch1+2)
	l.Delivered(0, 6, epoch1+2, sk(6))
	l.Stored(0, 6, 0, epoch1+2, sk(6))
	// 7: redelivered at the same seq after a resume: one event.
	l.Acked(7, 0, 8)
	l.Delivered(0, 7, 8, sk(7))
	l.Delivered(0, 7, 8, sk(7))
	l.Delivered(1, 7, 8, sk(7))
	l.Stored(0, 7, 0, 8, sk(7))
	// 8: sent, never acknowledged, but stored (the ack was lost).
	l.Stored(0, 8, 0, 11, sk(8))
	// 9: rejected with an error frame.
	l.Rejected(9)
	// 10: sent, nothing else. 11: never sent.
	// Out of range: ignored.
	l.Acked(99, 0, 1)
	l.Delivered(5, 0, 1, sk(0))
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
	l2.Delivered(0, 0, 1, sk(0))
	if !l2.pending(1) {
		t.Error("pending: agent 1 has not received message 0")
	}
	l2.Delivered(1, 0, 1, sk(0))
	if l2.pending(1) {
		t.Error("still pending")
	}
	// First-receipt reporting, for latency.
	if l2.Delivered(1, 0, 1, sk(0)) || l2.Acked(0, 0, 1) {
		t.Error("a repeat reported as first")
	}
}

// sk is message k's state as every node gives it; sk2 another state of it,
// as a second creation of the same id would have: another ts.
func sk(k int) MsgState {
	return MsgState{TS: crdt.Timestamp{Wall: 1000 + int64(k), Node: "n1"}, Rest: 7}
}
func sk2(k int) MsgState {
	return MsgState{TS: crdt.Timestamp{Wall: 5000 + int64(k), Node: "n2"}, Rest: 7}
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
	l.Delivered(0, 0, 5, sk(0))
	l.Delivered(1, 0, 9, sk(0))
	l.Stored(0, 0, 0, 5, sk(0))
	l.Stored(1, 0, 0, 9, sk(0))
	// 1: acked by node 1 at 3; a resend acked by node 1 again at 3 (dup),
	// and node 0's agent got it at 7: delivered.
	l.Acked(1, 1, 3)
	l.Acked(1, 1, 3)
	l.Delivered(0, 1, 7, sk(1))
	l.Delivered(1, 1, 3, sk(1))
	l.Stored(0, 1, 0, 7, sk(1))
	l.Stored(1, 1, 0, 3, sk(1))
	// 2: never reached node 1 (its agent and its history lack it): lost.
	l.Acked(2, 0, 6)
	l.Delivered(0, 2, 6, sk(2))
	l.Stored(0, 2, 0, 6, sk(2))
	// 3: node 1 holds it twice: duplicated.
	l.Acked(3, 0, 8)
	l.Delivered(0, 3, 8, sk(3))
	l.Delivered(1, 3, 10, sk(3))
	l.Stored(0, 3, 0, 8, sk(3))
	l.Stored(1, 3, 0, 10, sk(3))
	l.Stored(1, 3, 0, 11, sk2(3))
	// 4: node 0's agent got it at a seq other than the acked one: lost
	// (on the acknowledging node, the seq is the message's name).
	l.Acked(4, 0, 12)
	l.Delivered(0, 4, 11, sk(4))
	l.Delivered(1, 4, 12, sk(4))
	l.Stored(0, 4, 0, 12, sk(4))
	l.Stored(1, 4, 0, 12, sk(4))
	// 5: acked by node 1 at 2, then by node 1 at 4: two events, duplicated.
	l.Acked(5, 1, 2)
	l.Acked(5, 1, 4)
	l.Delivered(0, 5, 13, sk(5))
	l.Delivered(1, 5, 2, sk(5))
	l.Stored(0, 5, 0, 13, sk(5))
	l.Stored(1, 5, 0, 2, sk(5))
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

// TestLedgerHistoryAgreement feeds the audit synthetic histories of three
// nodes and checks that each way of disagreeing is detected: an id held
// twice (two states after merging by id), another ts on one node, another
// order of a conversation, a missing id; and that frames repeating one
// state, and agents receiving a message again, are counted apart by
// whether the state changed.
func TestLedgerHistoryAgreement(t *testing.T) {
	l := NewLedger(9, 2)
	l.SetAgentNode(0, 0)
	l.SetAgentNode(1, 1)
	conv := func(k int) int {
		if k == 3 || k == 4 {
			return 1
		}
		return 0
	}
	at := func(w int64, lg uint32, n string) MsgState {
		return MsgState{TS: crdt.Timestamp{Wall: w, Logical: lg, Node: n}, Rest: 7}
	}
	// Every message acknowledged by node 0 at seq k+1, received by agent 0
	// (node 0) there and by agent 1 (node 1) at seq 100+k, and held by the
	// three nodes in state sk(k), but where said otherwise.
	store := map[int]map[int][]MsgState{} // node → message → frames
	for k := range 9 {
		l.Sent(k)
		l.Acked(k, 0, uint64(k+1))
		l.Delivered(0, k, uint64(k+1), sk(k))
		l.Delivered(1, k, uint64(100+k), sk(k))
		for nd := range 3 {
			if store[nd] == nil {
				store[nd] = map[int][]MsgState{}
			}
			store[nd][k] = []MsgState{sk(k)}
		}
	}
	// 1: node 2 holds the id twice, the second creation with its own ts
	// (later, but still before message 2: the order is unchanged).
	store[2][1] = []MsgState{sk(1), at(1001, 5, "n3")}
	// 2: node 1 gives it another ts (same place in the order).
	store[1][2] = []MsgState{at(1002, 1, "n1")}
	// 3 and 4 (conversation 1): node 2 gives 3 a ts after 4's.
	store[2][3] = []MsgState{at(1004, 9, "n3")}
	// 5: node 1 lacks it.
	delete(store[1], 5)
	// 6: node 0 replays it in two frames of one state: one entry.
	store[0][6] = []MsgState{sk(6), sk(6)}
	// 7: agent 0 receives it again in the same state (a resume overlap),
	// agent 1 again with another ts.
	l.Delivered(0, 7, 8, sk(7))
	l.Delivered(1, 7, 200, at(1007, 3, "n2"))
	// 8: agent 1 receives it again with the same ts and another body;
	// agent 0, on the acknowledging node, again at a higher seq with
	// another ts (a second creation of the id on another node, replicated
	// here): it did receive the acknowledged seq first, delivered.
	l.Delivered(1, 8, 201, MsgState{TS: sk(8).TS, Rest: 8})
	l.Delivered(0, 8, 50, at(1008, 4, "n3"))
	for nd := range 3 {
		for k := range 9 {
			for _, st := range store[nd][k] {
				seq := uint64(k + 1)
				if nd != 0 {
					seq = uint64(100*nd + k)
				}
				l.Stored(nd, k, conv(k), seq, st)
			}
		}
	}
	l.MarkAudited(0, 1, 2)
	a := l.Account(9)
	t.Logf("%+v", a)
	type fig struct {
		name      string
		got, want int
	}
	for _, f := range []fig{
		{"acked", a.Acked, 9},
		{"delivered (0, 4, 6, 7, 8)", a.Delivered, 5},
		{"lost (5)", a.Lost, 1},
		{"lost in store (5 on node 1)", a.LostInStore, 1},
		{"duplicated (1)", a.Duplicated, 1},
		{"duplicated in store (1 on node 2)", a.DuplicatedInStore, 1},
		{"diverged (2, 3)", a.Diverged, 2},
		{"ts mismatches (1 on node 2, 2 on node 1, 3 on node 2)", a.TSMismatches, 3},
		{"order mismatches (conversation 1 on node 2)", a.OrderMismatches, 1},
		{"conversations compared", a.ConversationsCompared, 2},
		{"history frames (27 - 1 missing + 1 twice on node 2 + 1 twice on node 0)", a.HistoryFrames, 28},
		{"history repeated ids, one state (6 on node 0)", a.HistoryRepeatedIDs, 1},
		{"history max frames", a.HistoryMaxFrames, 2},
		{"agent repeats, same state (7 at agent 0)", a.AgentRepeatsSameState, 1},
		{"agent repeats, other ts (7 at agent 1, 8 at agent 0)", a.AgentRepeatsOtherTS, 2},
		{"agent repeats, other body (8 at agent 1)", a.AgentRepeatsOtherBody, 1},
		{"lost at agents", a.LostAtAgents, 0},
	} {
		if f.got != f.want {
			t.Errorf("%s: %d, want %d", f.name, f.got, f.want)
		}
	}
	if !eqInts(a.DupExamples, []int{1}) || !eqInts(a.DivergedExamples, []int{2, 3}) || !eqInts(a.LostExamples, []int{5}) {
		t.Errorf("examples: dup %v diverged %v lost %v", a.DupExamples, a.DivergedExamples, a.LostExamples)
	}
	if len(a.OrderExamples) != 1 || a.OrderExamples[0] != "conversation 1 on node 2" {
		t.Errorf("order examples %q", a.OrderExamples)
	}
	if d := strings.Join(a.Details, "\n"); !strings.Contains(d, "message 1 duplicated") || !strings.Contains(d, "(its frames in different states)") ||
		!strings.Contains(d, "message 2 diverged") || !strings.Contains(d, "ts 1002.1@n1") {
		t.Errorf("details:\n%s", d)
	}
	if v := verdict(&Result{Accounting: a}); !strings.HasPrefix(v, "LOSS: of 9 acknowledged messages, 1 lost and 1 duplicated; the nodes disagree: 3 (message, node) pairs") ||
		!strings.Contains(v, "1 of 4 conversations × nodes in another order") {
		t.Errorf("verdict %q", v)
	}

	// The same histories without the loss and the duplicate: the verdict
	// still fails, on the disagreement alone.
	l2 := NewLedger(2, 0)
	for k := range 2 {
		l2.Sent(k)
		l2.Acked(k, 0, uint64(k+1))
	}
	l2.Stored(0, 0, 0, 1, sk(0))
	l2.Stored(0, 1, 0, 2, sk(1))
	l2.Stored(1, 0, 0, 7, sk(0))
	l2.Stored(1, 1, 0, 8, at(999, 0, "n2")) // before message 0 there
	l2.MarkAudited(0, 1)
	a2 := l2.Account(2)
	if a2.Delivered != 1 || a2.Diverged != 1 || a2.TSMismatches != 1 || a2.OrderMismatches != 1 || a2.Lost+a2.Duplicated != 0 {
		t.Errorf("disagreement alone: %+v", a2)
	}
	if v := verdict(&Result{Accounting: a2}); !strings.HasPrefix(v, "DIVERGED: of 2 acknowledged messages, 1 have another ts on some node") {
		t.Errorf("verdict %q", v)
	}
	// A message every node holds in one state, one ts, but shown edited
	// (the harness never edits): a second creation merged as an edit.
	l4 := NewLedger(2, 1)
	for k := range 2 {
		l4.Sent(k)
		l4.Acked(k, 0, uint64(k+1))
		l4.Delivered(0, k, uint64(k+1), sk(k))
		for nd := range 2 {
			st := sk(k)
			if k == 1 {
				st.Altered, st.Rest = true, 9
			}
			l4.Stored(nd, k, 0, uint64(k+1), st)
		}
	}
	l4.MarkAudited(0, 1)
	a4 := l4.Account(2)
	if a4.Delivered != 1 || a4.Altered != 1 || a4.HistoryAltered != 2 || a4.NodesDisagree() || a4.Lost+a4.Duplicated+a4.Diverged != 0 || !eqInts(a4.AlteredExamples, []int{1}) {
		t.Errorf("altered: %+v", a4)
	}
	if v := verdict(&Result{Accounting: a4}); !strings.HasPrefix(v, "ALTERED: of 2 acknowledged messages, 1 are shown edited or deleted") {
		t.Errorf("verdict %q", v)
	}
	// And in agreement: OK, saying so.
	l3 := NewLedger(1, 0)
	l3.Sent(0)
	l3.Acked(0, 0, 1)
	l3.Stored(0, 0, 0, 1, sk(0))
	l3.Stored(1, 0, 0, 4, sk(0))
	l3.MarkAudited(0, 1)
	if v := verdict(&Result{Accounting: l3.Account(1)}); !strings.HasPrefix(v, "OK: 1 of 1 acknowledged messages acknowledged and stored exactly once, with one ts and one order on every node") {
		t.Errorf("verdict %q", v)
	}
}

// TestLedgerLaterEventOnTheAckingNode: a message acknowledged at seq 12 by
// node 0 whose copy another node's earlier creation then displaced has a
// later event there (seq 15); a replay writes it once, at 15, and an agent
// that resumed gets only that. Not lost. Seen or held only before the
// acknowledged seq: lost.
func TestLedgerLaterEventOnTheAckingNode(t *testing.T) {
	l := NewLedger(2, 1)
	l.SetAgentNode(0, 0)
	for k := range 2 {
		l.Sent(k)
	}
	l.Acked(0, 0, 12)
	l.Delivered(0, 0, 15, sk(0))
	l.Stored(0, 0, 0, 15, sk(0))
	l.Acked(1, 0, 20)
	l.Delivered(0, 1, 19, sk(1))
	l.Stored(0, 1, 0, 19, sk(1))
	l.MarkAudited(0)
	a := l.Account(2)
	if a.Lost != 1 || !eqInts(a.LostExamples, []int{1}) || a.LostAtAgents != 1 {
		t.Errorf("accounting %+v", a)
	}
}
