package bench

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// Ledger accounts for every message of a run by its index k, across
// reconnects and node restarts: whether it was acknowledged (and at which
// seq), which agents received it (and at which seq), and, after an audit of
// the node's history, how many times the node stored it. From these it
// tells, for every acknowledged message, whether it was delivered, lost or
// duplicated.
//
// A message is delivered to an agent when the agent received it at its
// acknowledged seq, the durable one. The node publishes events before their
// fsync, so an agent may also receive a message at a seq that a crash then
// lost; the resent message is stored at a seq of the node's next epoch,
// above every earlier one, and the agent receives it again there: a seq
// change, reported but not a duplicate (clients keep one entry per id).
// A message is duplicated when the node holds it twice: two acks with
// different seqs, or the audited history holding it twice. The same seq
// arriving twice at one agent (a resume overlapping what the connection had
// received) is a redelivery: the client sees one event.
//
// On a cluster, seqs are positions in one node's log: each node numbers
// the same events its own way. The acknowledged seq is then checked only
// where it means something, at the agents connected to the node that
// acknowledged (and in that node's history); an agent on another node must
// have received the message, and every audited node must hold it exactly
// once.
type Ledger struct {
	mu          sync.Mutex
	n           int
	agents      int
	state       []uint8  // msg* flags
	ackSeq      []uint64 // seq of the first ack; 0: none
	ackNode     []int32  // node of the first ack
	agentNode   []int    // node each agent is connected to
	seen        [][]uint64
	stored      [][]uint8 // audit, by node: times in the history (saturating)
	storedSeq   [][]uint64
	auditedOn   []int // nodes whose histories were read completely
	audited     bool
	redelivered int64
	seqChanges  int64
}

const (
	msgSent uint8 = 1 << iota
	msgAcked
	msgRejected
	msgDupSeq // acknowledged at two different seqs
)

// NewLedger tracks n messages and agents agents.
func NewLedger(n, agents int) *Ledger {
	l := &Ledger{n: n, agents: agents, state: make([]uint8, n), ackSeq: make([]uint64, n), ackNode: make([]int32, n),
		agentNode: make([]int, agents), seen: make([][]uint64, agents)}
	for a := range l.seen {
		l.seen[a] = make([]uint64, n)
	}
	return l
}

func (l *Ledger) ok(k int) bool { return k >= 0 && k < l.n }

// SetAgentNode says agent a is connected to node (default 0).
func (l *Ledger) SetAgentNode(a, node int) {
	if a < 0 || a >= l.agents {
		return
	}
	l.mu.Lock()
	l.agentNode[a] = node
	l.mu.Unlock()
}

// Sent records that message k was written to a connection. It reports
// whether this was the first write of k (later ones are resends).
func (l *Ledger) Sent(k int) bool {
	if !l.ok(k) {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.state[k]&msgSent == 0
	l.state[k] |= msgSent
	return first
}

// Acked records an ack of message k by node at seq. It reports whether
// this was the first ack of k (the one whose latency counts).
func (l *Ledger) Acked(k, node int, seq uint64) bool {
	if !l.ok(k) {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.state[k]&msgAcked == 0
	l.state[k] |= msgAcked
	switch {
	case first:
		l.ackSeq[k], l.ackNode[k] = seq, int32(node)
	case int(l.ackNode[k]) == node && l.ackSeq[k] != seq:
		l.state[k] |= msgDupSeq
	}
	return first
}

// Rejected records an error frame answering message k (not stored).
func (l *Ledger) Rejected(k int) {
	if !l.ok(k) {
		return
	}
	l.mu.Lock()
	l.state[k] |= msgRejected
	l.mu.Unlock()
}

// Delivered records that agent a received message k at seq. It reports
// whether this was the agent's first receipt of k.
func (l *Ledger) Delivered(a, k int, seq uint64) bool {
	if !l.ok(k) || a < 0 || a >= l.agents {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := seq
	switch prev := l.seen[a][k]; {
	case prev == 0:
		l.seen[a][k] = s
		return true
	case prev == s:
		l.redelivered++
	default:
		// Seen before at another seq: keep the higher (later epoch).
		l.seqChanges++
		l.seen[a][k] = max(prev, s)
	}
	return false
}

// Stored records, from the audit of a conversation's history on node,
// that message k is in the log at seq.
func (l *Ledger) Stored(node, k int, seq uint64) {
	if !l.ok(k) || node < 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.growStored(node + 1)
	if l.stored[node][k] < 255 {
		l.stored[node][k]++
	}
	if l.storedSeq[node][k] == 0 {
		l.storedSeq[node][k] = seq
	}
}

// growStored makes room for the audits of nodes nodes. Lock held.
func (l *Ledger) growStored(nodes int) {
	for len(l.stored) < nodes {
		l.stored = append(l.stored, make([]uint8, l.n))
		l.storedSeq = append(l.storedSeq, make([]uint64, l.n))
	}
}

// MarkAudited says every conversation's history was read completely on
// each of nodes (at least one).
func (l *Ledger) MarkAudited(nodes ...int) {
	if len(nodes) == 0 {
		return
	}
	l.mu.Lock()
	l.audited = true
	l.auditedOn = append([]int(nil), nodes...)
	l.growStored(slices.Max(nodes) + 1)
	l.mu.Unlock()
}

// Accounting is the fate of a run's messages.
type Accounting struct {
	Issued   int  `json:"issued"`   // due during the send phase and handed to a visitor
	Sent     int  `json:"sent"`     // written to a connection at least once
	Acked    int  `json:"acked"`    // acknowledged (durable) at least once
	Unacked  int  `json:"unacked"`  // sent but never acknowledged
	Rejected int  `json:"rejected"` // answered with an error frame and never acknowledged
	Agents   int  `json:"agents"`
	Audited  bool `json:"audited"` // the node's history was read back

	// Of the acknowledged messages:
	Delivered  int `json:"delivered"`  // every agent got it once, stored once
	Lost       int `json:"lost"`       // missing at some agent or from the history
	Duplicated int `json:"duplicated"` // at two seqs somewhere
	Unverified int `json:"unverified"` // neither agents nor an audit to check it

	LostAtAgents      int   `json:"lost_at_agents"`      // (message, agent) pairs never received
	LostInStore       int   `json:"lost_in_store"`       // (message, node) pairs: acknowledged but not in that node's history
	DuplicatedInStore int   `json:"duplicated_in_store"` // (message, node) pairs: in the history more than once
	AuditedNodes      int   `json:"audited_nodes,omitempty"`
	Redelivered       int64 `json:"redelivered"`       // same seq again at one agent (resume overlap)
	SeqChanges        int64 `json:"seq_changes"`       // received again at a new seq after a crash lost the first`
	StoredUnacked     int   `json:"stored_unacked"`    // in the history though never acknowledged
	DeliveredUnacked  int   `json:"delivered_unacked"` // received by an agent though never acknowledged

	LostExamples []int `json:"lost_examples,omitempty"` // message indices, at most 20
	DupExamples  []int `json:"dup_examples,omitempty"`
	// Details of the examples: where each was acked, seen and stored.
	Details []string `json:"details,omitempty"`
}

// detail describes message k for a report: its acked seq, which agents got
// it at which seq, and the audit's count. Lock held.
func (l *Ledger) detail(k int, why string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "message %d %s: acked seq %d by node %d; agents:", k, why, l.ackSeq[k], l.ackNode[k])
	for ag := 0; ag < l.agents; ag++ {
		if s := l.seen[ag][k]; s == 0 {
			fmt.Fprintf(&b, " %d@node%d=missing", ag, l.agentNode[ag])
		} else {
			fmt.Fprintf(&b, " %d@node%d=seq %d", ag, l.agentNode[ag], s)
		}
	}
	if l.audited {
		for _, nd := range l.auditedOn {
			fmt.Fprintf(&b, "; node %d stored it %d time(s), first at seq %d", nd, l.stored[nd][k], l.storedSeq[nd][k])
		}
	}
	return b.String()
}

// Account judges every message issued (indices 0..issued-1).
func (l *Ledger) Account(issued int) Accounting {
	l.mu.Lock()
	defer l.mu.Unlock()
	if issued > l.n {
		issued = l.n
	}
	a := Accounting{Issued: issued, Agents: l.agents, Audited: l.audited, Redelivered: l.redelivered, SeqChanges: l.seqChanges}
	if l.audited {
		a.AuditedNodes = len(l.auditedOn)
	}
	for k := 0; k < issued; k++ {
		st := l.state[k]
		if st&msgSent != 0 {
			a.Sent++
		}
		if st&msgAcked == 0 {
			if st&msgSent != 0 {
				a.Unacked++
			}
			if st&msgRejected != 0 {
				a.Rejected++
			}
			if l.audited {
				for _, nd := range l.auditedOn {
					if l.stored[nd][k] > 0 {
						a.StoredUnacked++
						break
					}
				}
			}
			for ag := 0; ag < l.agents; ag++ {
				if l.seen[ag][k] != 0 {
					a.DeliveredUnacked++
					break
				}
			}
			continue
		}
		a.Acked++
		lost, dup := false, st&msgDupSeq != 0
		ackNode := int(l.ackNode[k])
		for ag := 0; ag < l.agents; ag++ {
			seen := l.seen[ag][k]
			// On the acknowledging node: never, or only at a seq a crash
			// lost. Elsewhere seqs are that node's own: never.
			if seen == 0 || (l.agentNode[ag] == ackNode && seen != l.ackSeq[k]) {
				a.LostAtAgents++
				lost = true
			}
		}
		if l.audited {
			for _, nd := range l.auditedOn {
				switch n := l.stored[nd][k]; {
				case n == 0:
					a.LostInStore++
					lost = true
				case n > 1:
					a.DuplicatedInStore++
					dup = true
				case nd == ackNode && l.storedSeq[nd][k] != l.ackSeq[k]:
					lost = true // acknowledged at a seq the history does not have
				}
			}
		}
		switch {
		case lost || dup:
			if lost {
				a.Lost++
				if len(a.LostExamples) < 20 {
					a.LostExamples = append(a.LostExamples, k)
					a.Details = append(a.Details, l.detail(k, "lost"))
				}
			}
			if dup {
				a.Duplicated++
				if len(a.DupExamples) < 20 {
					a.DupExamples = append(a.DupExamples, k)
					a.Details = append(a.Details, l.detail(k, "duplicated"))
				}
			}
		case l.agents == 0 && !l.audited:
			a.Unverified++
		default:
			a.Delivered++
		}
	}
	return a
}

// pending reports whether any issued message still waits for its ack or
// for an agent: the drain ends when nothing does.
func (l *Ledger) pending(issued int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := 0; k < issued && k < l.n; k++ {
		st := l.state[k]
		if st&msgAcked == 0 {
			if st&msgRejected != 0 {
				continue
			}
			return true
		}
		for ag := 0; ag < l.agents; ag++ {
			if l.seen[ag][k] == 0 {
				return true
			}
		}
	}
	return false
}

// WriteCSV writes one row per message: index, acked seq, the seq at which
// each agent first received it (0: never), and the audit's count (and the
// first seq) on each audited node: stored, stored_seq for the first node,
// stored_nI, stored_seq_nI for node I (1-based) of a cluster.
func (l *Ledger) WriteCSV(w io.Writer, issued int, conv func(k int) string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	bw := bufio.NewWriter(w)
	fmt.Fprint(bw, "message,conversation,state,acked_seq")
	for ag := 0; ag < l.agents; ag++ {
		fmt.Fprintf(bw, ",agent%d_seq", ag)
	}
	nodes := max(len(l.stored), 1)
	fmt.Fprint(bw, ",stored,stored_seq")
	for nd := 1; nd < nodes; nd++ {
		fmt.Fprintf(bw, ",stored_n%d,stored_seq_n%d", nd+1, nd+1)
	}
	fmt.Fprintln(bw, ",acked_node")
	for k := 0; k < issued && k < l.n; k++ {
		fmt.Fprintf(bw, "%d,%s,%d,%d", k, conv(k), l.state[k], l.ackSeq[k])
		for ag := 0; ag < l.agents; ag++ {
			fmt.Fprintf(bw, ",%d", l.seen[ag][k])
		}
		for nd := 0; nd < nodes; nd++ {
			st, ss := 0, uint64(0)
			if nd < len(l.stored) {
				st, ss = int(l.stored[nd][k]), l.storedSeq[nd][k]
			}
			fmt.Fprintf(bw, ",%d,%d", st, ss)
		}
		fmt.Fprintf(bw, ",%d\n", l.ackNode[k])
	}
	return bw.Flush()
}
