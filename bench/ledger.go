package bench

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"parley/crdt"
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
//
// Exactly once is judged by id after merging the states of one message:
// a node's history may bring one id in several deliver frames (every
// event of a message is replayed in its final state); they are one entry
// when they show the same state (ts, body, edited, deleted), and that
// count of frames is reported. Frames of one id in different states on
// one node are two entries: duplicated. The harness never edits: a message
// shown edited or deleted was altered by a node (two creations of one id
// merged as an edit). Across nodes, every node must give a message the
// same ts, and so every conversation the same order of messages by
// (ts, id): a node that disagrees has diverged. Agents that receive a
// message more than once are counted apart by whether the repeats showed
// the same state or another ts.
type Ledger struct {
	// mu guards what the audit records (Stored, MarkAudited) and the
	// agents' nodes; msgMu[k%ledgerStripes] guards message k's state,
	// acks and receipts (Sent, Acked, Rejected, Delivered), so that the
	// clients' readers and writers, on every core, do not all take one
	// lock per message. Whole-ledger readers take every lock (lockAll).
	mu          sync.Mutex
	msgMu       [ledgerStripes]paddedMutex
	n           int
	agents      int
	state       []uint8    // msg* flags
	ackSeq      []uint64   // seq of the first ack; 0: none
	ackNode     []int32    // node of the first ack
	agentNode   []int      // node each agent is connected to
	seen        [][]uint64 // the highest seq each agent received each message at
	seenFirst   [][]uint64 // the first
	seenState   [][]uint64 // hashes of the first state received: ts (high 32 bits), the rest (low 32)
	seenRepeat  [][]uint8  // agentRepeat* flags
	stored      [][]uint8  // audit, by node: deliver frames in the history (saturating)
	storedSeq   [][]uint64
	storedTS    [][]tsKey  // audit, by node: the message's ts there (the latest of its frames)
	storedRest  [][]uint64 // audit, by node: the rest of the first frame's state
	storedMixed [][]bool   // audit, by node: frames of the id in different states
	storedAlt   [][]bool   // audit, by node: a frame shows it edited or deleted
	conv        []int32    // conversation of each message, from the audit; -1 unknown
	nodeNames   map[string]uint32
	names       []string // by interned id - 1
	auditedOn   []int    // nodes whose histories were read completely
	audited     bool
	redelivered atomic.Int64
	seqChanges  atomic.Int64
}

// ledgerStripes is how many locks share the ledger's messages.
const ledgerStripes = 64

// paddedMutex is a mutex alone on its cache line.
type paddedMutex struct {
	sync.Mutex
	_ [56]byte
}

// lockMsg locks message k's stripe and returns it.
func (l *Ledger) lockMsg(k int) *sync.Mutex {
	m := &l.msgMu[k%ledgerStripes].Mutex
	m.Lock()
	return m
}

// lockAll takes every lock of the ledger; unlockAll releases them.
func (l *Ledger) lockAll() {
	l.mu.Lock()
	for i := range l.msgMu {
		l.msgMu[i].Lock()
	}
}

func (l *Ledger) unlockAll() {
	for i := range l.msgMu {
		l.msgMu[i].Unlock()
	}
	l.mu.Unlock()
}

// tsKey is a message stamp (crdt.Timestamp) with its node name interned (Ledger.nodeNames, from 1):
// comparable, and small enough to keep one per message and node.
type tsKey struct {
	w int64
	l uint32
	n uint32
}

// Flags of seenRepeat: an agent received the message again, with the same
// state, or with another ts, or with the same ts and another body, edited
// stamp or deletion.
const (
	agentRepeat uint8 = 1 << iota
	agentRepeatTS
	agentRepeatRest
)

const (
	msgSent uint8 = 1 << iota
	msgAcked
	msgRejected
	msgDupSeq // acknowledged at two different seqs
)

// NewLedger tracks n messages and agents agents.
func NewLedger(n, agents int) *Ledger {
	l := &Ledger{n: n, agents: agents, state: make([]uint8, n), ackSeq: make([]uint64, n), ackNode: make([]int32, n),
		agentNode: make([]int, agents), seen: make([][]uint64, agents), seenFirst: make([][]uint64, agents), seenState: make([][]uint64, agents),
		seenRepeat: make([][]uint8, agents), conv: make([]int32, n), nodeNames: map[string]uint32{}}
	for a := range l.seen {
		l.seen[a] = make([]uint64, n)
		l.seenFirst[a] = make([]uint64, n)
		l.seenState[a] = make([]uint64, n)
		l.seenRepeat[a] = make([]uint8, n)
	}
	for k := range l.conv {
		l.conv[k] = -1
	}
	return l
}

// key interns ts's node name. Lock held.
func (l *Ledger) key(ts crdt.Timestamp) tsKey {
	id, ok := l.nodeNames[ts.Node]
	if !ok {
		id = uint32(len(l.nodeNames) + 1)
		l.nodeNames[ts.Node] = id
		l.names = append(l.names, ts.Node)
	}
	return tsKey{w: ts.Wall, l: ts.Logical, n: id}
}

// hlc turns a key back into the stamp. Lock held.
func (l *Ledger) hlc(k tsKey) crdt.Timestamp {
	if k.n == 0 || int(k.n) > len(l.names) {
		return crdt.Timestamp{Wall: k.w, Logical: k.l}
	}
	return crdt.Timestamp{Wall: k.w, Logical: k.l, Node: l.names[k.n-1]}
}

// compareKeys orders two interned stamps as crdt.Timestamp.Compare does. Lock held.
func (l *Ledger) compareKeys(a, b tsKey) int {
	if c := cmp.Compare(a.w, b.w); c != 0 {
		return c
	}
	if c := cmp.Compare(a.l, b.l); c != 0 {
		return c
	}
	if a.n == b.n {
		return 0
	}
	return strings.Compare(l.hlc(a).Node, l.hlc(b).Node)
}

// stateHash packs a hash of a state's ts (high 32 bits) and of the rest
// (low 32 bits) for an agent's receipts.
func stateHash(st MsgState) uint64 {
	h := fnv.New32a()
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(st.TS.Wall))
	binary.LittleEndian.PutUint32(b[8:], st.TS.Logical)
	h.Write(b[:])
	h.Write([]byte(st.TS.Node))
	return uint64(h.Sum32())<<32 | uint64(uint32(st.Rest)^uint32(st.Rest>>32))
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
	defer l.lockMsg(k).Unlock()
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
	defer l.lockMsg(k).Unlock()
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
	m := l.lockMsg(k)
	l.state[k] |= msgRejected
	m.Unlock()
}

// Delivered records that agent a received message k at seq, in state st.
// It reports whether this was the agent's first receipt of k.
func (l *Ledger) Delivered(a, k int, seq uint64, st MsgState) bool {
	if !l.ok(k) || a < 0 || a >= l.agents {
		return false
	}
	defer l.lockMsg(k).Unlock()
	s := seq
	prev := l.seen[a][k]
	if prev == 0 {
		l.seen[a][k], l.seenFirst[a][k] = s, s
		l.seenState[a][k] = stateHash(st)
		return true
	}
	// Received again: the same state, or another?
	h, first := stateHash(st), l.seenState[a][k]
	l.seenRepeat[a][k] |= agentRepeat
	switch {
	case h>>32 != first>>32:
		l.seenRepeat[a][k] |= agentRepeatTS
	case h != first:
		l.seenRepeat[a][k] |= agentRepeatRest
	}
	if prev == s {
		l.redelivered.Add(1)
	} else {
		// Seen before at another seq: keep the higher (later epoch).
		l.seqChanges.Add(1)
		l.seen[a][k] = max(prev, s)
	}
	return false
}

// Stored records, from the audit of a conversation's history on node,
// that message k of conversation conv is in the log at seq, in state st
// (one deliver frame of the replay).
func (l *Ledger) Stored(node, k, conv int, seq uint64, st MsgState) {
	if !l.ok(k) || node < 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.growStored(node + 1)
	l.conv[k] = int32(conv)
	ts := l.key(st.TS)
	if l.stored[node][k] == 0 {
		l.storedSeq[node][k], l.storedTS[node][k], l.storedRest[node][k] = seq, ts, st.Rest
	} else {
		if ts != l.storedTS[node][k] || st.Rest != l.storedRest[node][k] {
			l.storedMixed[node][k] = true
		}
		if l.compareKeys(ts, l.storedTS[node][k]) > 0 {
			l.storedTS[node][k] = ts // the later stamp wins, as a client merges
		}
	}
	if st.Altered {
		l.storedAlt[node][k] = true
	}
	if l.stored[node][k] < 255 {
		l.stored[node][k]++
	}
}

// growStored makes room for the audits of nodes nodes. Lock held.
func (l *Ledger) growStored(nodes int) {
	for len(l.stored) < nodes {
		l.stored = append(l.stored, make([]uint8, l.n))
		l.storedSeq = append(l.storedSeq, make([]uint64, l.n))
		l.storedTS = append(l.storedTS, make([]tsKey, l.n))
		l.storedRest = append(l.storedRest, make([]uint64, l.n))
		l.storedMixed = append(l.storedMixed, make([]bool, l.n))
		l.storedAlt = append(l.storedAlt, make([]bool, l.n))
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

	Diverged int `json:"diverged"` // the nodes give it different ts (and it is neither lost nor duplicated)
	Altered  int `json:"altered"`  // some node shows it edited or deleted, which nobody did (and none of the above)

	LostAtAgents      int `json:"lost_at_agents"`      // (message, agent) pairs never received
	LostInStore       int `json:"lost_in_store"`       // (message, node) pairs: acknowledged but not in that node's history
	DuplicatedInStore int `json:"duplicated_in_store"` // (message, node) pairs: in the history as more than one entry (frames of the id in different states)
	AuditedNodes      int `json:"audited_nodes,omitempty"`

	// The audit's replay of every conversation from seq 0 on every node:
	// deliver frames of the run's messages, summed over nodes; (message,
	// node) pairs that came in more than one frame, all in one state (not
	// a duplicate: one entry after merging by id); the most frames one
	// message had on one node.
	HistoryFrames      int `json:"history_frames"`
	HistoryRepeatedIDs int `json:"history_repeated_ids"`
	HistoryMaxFrames   int `json:"history_max_frames"`
	// Agreement between the nodes: (message, node) pairs where the node
	// gives the message another ts than the first audited node holding it;
	// (conversation, node) pairs where the node's order of the messages
	// every node holds, by (ts, id), differs from the first audited node's;
	// and how many conversations were compared.
	// (message, node) pairs where the node shows the message edited or
	// deleted: the harness never edits or deletes, so a node merged
	// something (a second creation of the id) as a change.
	HistoryAltered        int `json:"history_altered"`
	TSMismatches          int `json:"ts_mismatches"`
	OrderMismatches       int `json:"order_mismatches"`
	ConversationsCompared int `json:"conversations_compared"`
	// Agents that received an acknowledged message more than once
	// ((message, agent) pairs): every time in the same state; at least once
	// with another ts; with the same ts but another body, edit or deletion.
	AgentRepeatsSameState int   `json:"agent_repeats_same_state"`
	AgentRepeatsOtherTS   int   `json:"agent_repeats_other_ts"`
	AgentRepeatsOtherBody int   `json:"agent_repeats_other_body"`
	Redelivered           int64 `json:"redelivered"`       // same seq again at one agent (resume overlap)
	SeqChanges            int64 `json:"seq_changes"`       // received again at a new seq after a crash lost the first`
	StoredUnacked         int   `json:"stored_unacked"`    // in the history though never acknowledged
	DeliveredUnacked      int   `json:"delivered_unacked"` // received by an agent though never acknowledged

	LostExamples     []int `json:"lost_examples,omitempty"` // message indices, at most 20
	DupExamples      []int `json:"dup_examples,omitempty"`
	DivergedExamples []int `json:"diverged_examples,omitempty"`
	AlteredExamples  []int `json:"altered_examples,omitempty"`
	// OrderExamples name conversations in another order on some node, at
	// most 20: "conversation 3 on node 1".
	OrderExamples []string `json:"order_examples,omitempty"`
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
			if l.stored[nd][k] > 0 {
				fmt.Fprintf(&b, ", ts %s", l.hlc(l.storedTS[nd][k]))
				if l.storedMixed[nd][k] {
					b.WriteString(" (its frames in different states)")
				}
				if l.storedAlt[nd][k] {
					b.WriteString(" (shown edited or deleted)")
				}
			}
		}
	}
	return b.String()
}

// NodesDisagree reports whether the audited nodes disagree on a message's
// ts or on a conversation's order.
func (a Accounting) NodesDisagree() bool { return a.TSMismatches > 0 || a.OrderMismatches > 0 }

// Account judges every message issued (indices 0..issued-1).
func (l *Ledger) Account(issued int) Accounting {
	l.lockAll()
	defer l.unlockAll()
	if issued > l.n {
		issued = l.n
	}
	a := Accounting{Issued: issued, Agents: l.agents, Audited: l.audited, Redelivered: l.redelivered.Load(), SeqChanges: l.seqChanges.Load()}
	if l.audited {
		a.AuditedNodes = len(l.auditedOn)
		l.auditFrames(issued, &a)
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
		lost, dup, diverged, altered := false, st&msgDupSeq != 0, false, false
		ackNode := int(l.ackNode[k])
		for ag := 0; ag < l.agents; ag++ {
			seen := l.seen[ag][k]
			// On the acknowledging node: never, or only at a seq before
			// the acknowledged one (a crash lost that event). A later seq
			// is the message's later event (a second creation of the id
			// elsewhere merged in): a replay writes a message once, at its
			// last event. Elsewhere seqs are that node's own: never.
			if seen == 0 || (l.agentNode[ag] == ackNode && seen < l.ackSeq[k] && l.seenFirst[ag][k] != l.ackSeq[k]) {
				a.LostAtAgents++
				lost = true
			}
			switch r := l.seenRepeat[ag][k]; {
			case r&agentRepeatTS != 0:
				a.AgentRepeatsOtherTS++
			case r&agentRepeatRest != 0:
				a.AgentRepeatsOtherBody++
			case r != 0:
				a.AgentRepeatsSameState++
			}
		}
		if l.audited {
			ref := -1 // the first audited node holding it: its ts is the reference
			for _, nd := range l.auditedOn {
				switch n := l.stored[nd][k]; {
				case n == 0:
					a.LostInStore++
					lost = true
					continue
				case l.storedMixed[nd][k]:
					a.DuplicatedInStore++
					dup = true
				case nd == ackNode && l.storedSeq[nd][k] < l.ackSeq[k]:
					// Acknowledged at a seq after the history's: the
					// acknowledged event is not there. (At a later seq the
					// history gives the message's last event.)
					lost = true
				}
				if l.storedAlt[nd][k] {
					altered = true
				}
				if ref < 0 {
					ref = nd
				} else if l.storedTS[nd][k] != l.storedTS[ref][k] {
					diverged = true
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
		case diverged:
			a.Diverged++
			if len(a.DivergedExamples) < 20 {
				a.DivergedExamples = append(a.DivergedExamples, k)
				a.Details = append(a.Details, l.detail(k, "diverged (another ts on some node)"))
			}
		case altered:
			a.Altered++
			if len(a.AlteredExamples) < 20 {
				a.AlteredExamples = append(a.AlteredExamples, k)
				a.Details = append(a.Details, l.detail(k, "altered (shown edited or deleted on some node)"))
			}
		case l.agents == 0 && !l.audited:
			a.Unverified++
		default:
			a.Delivered++
		}
	}
	return a
}

// auditFrames fills what the audit alone tells: the deliver frames per
// message, whether every node gives every message it holds the same ts,
// and whether every conversation has the same order on every node. Every
// message the run issued counts, acknowledged or not: what the nodes hold
// must agree. Lock held.
func (l *Ledger) auditFrames(issued int, a *Accounting) {
	nodes := l.auditedOn
	everywhere := make([]bool, issued) // held by every audited node
	nconv := 0
	for k := 0; k < issued; k++ {
		ref, all := -1, true
		for _, nd := range nodes {
			n := int(l.stored[nd][k])
			if n == 0 {
				all = false
				continue
			}
			a.HistoryFrames += n
			a.HistoryMaxFrames = max(a.HistoryMaxFrames, n)
			if n > 1 && !l.storedMixed[nd][k] {
				a.HistoryRepeatedIDs++
			}
			if l.storedAlt[nd][k] {
				a.HistoryAltered++
			}
			if ref < 0 {
				ref = nd
			} else if l.storedTS[nd][k] != l.storedTS[ref][k] {
				a.TSMismatches++
			}
		}
		everywhere[k] = all && l.conv[k] >= 0
		if everywhere[k] {
			nconv = max(nconv, int(l.conv[k])+1)
		}
	}
	if len(nodes) < 2 || nconv == 0 {
		return
	}
	// Per conversation, the messages every node holds, in each node's
	// order: (ts, id). Ids are the run's prefix and the decimal index
	// (msgIDs), so their order is that of the decimal strings.
	byConv := make([][]int, nconv)
	for k := 0; k < issued; k++ {
		if everywhere[k] {
			byConv[l.conv[k]] = append(byConv[l.conv[k]], k)
		}
	}
	order := func(nd int, ks []int) []int {
		out := slices.Clone(ks)
		slices.SortFunc(out, func(x, y int) int {
			if c := l.compareKeys(l.storedTS[nd][x], l.storedTS[nd][y]); c != 0 {
				return c
			}
			return strings.Compare(strconv.Itoa(x), strconv.Itoa(y))
		})
		return out
	}
	for ci, ks := range byConv {
		if len(ks) == 0 {
			continue
		}
		a.ConversationsCompared++
		want := order(nodes[0], ks)
		for _, nd := range nodes[1:] {
			if !slices.Equal(order(nd, ks), want) {
				a.OrderMismatches++
				if len(a.OrderExamples) < 20 {
					a.OrderExamples = append(a.OrderExamples, fmt.Sprintf("conversation %d on node %d", ci, nd))
				}
			}
		}
	}
}

// pending reports whether any issued message still waits for its ack or
// for an agent: the drain ends when nothing does.
func (l *Ledger) pending(issued int) bool {
	l.lockAll()
	defer l.unlockAll()
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
	l.lockAll()
	defer l.unlockAll()
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
