package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"parley/gateway/client"
)

// historyConn plays a node's side of the audit: each resume it is written
// is answered with the deliver frames of that conversation's history
// after the given seq, then a resumed frame.
type historyConn struct {
	mu      sync.Mutex
	history map[string][]string // conversation → deliver frames, by seq from 1
	queue   [][]byte
}

func (h *historyConn) write(b []byte) error {
	var rf resumeFrame
	if err := json.Unmarshal(b, &rf); err != nil || rf.Type != "resume" {
		return fmt.Errorf("historyConn: not a resume: %s", b)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	frames := h.history[rf.Conversation]
	for i := int(rf.After); i < len(frames); i++ {
		h.queue = append(h.queue, []byte(frames[i]))
	}
	h.queue = append(h.queue, fmt.Appendf(nil, `{"type":"resumed","ref":%q,"conversation":%q,"head":%d}`, rf.Ref, rf.Conversation, len(frames)))
	return nil
}

func (h *historyConn) next() (frame, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.queue) == 0 {
		return frame{}, io.EOF
	}
	b := h.queue[0]
	h.queue = h.queue[1:]
	return parseFrame(b), nil
}

func (h *historyConn) close()    {}
func (h *historyConn) closeNow() {}

func deliverJSON(conv string, seq uint64, id string, wall int64) string {
	return fmt.Sprintf(`{"type":"deliver","conversation":%q,"seq":%d,"at":"n1.%d","message":{"id":%q,"author":"v:x","role":"visitor","name":"bench visitor 0","body":"abc","ts":{"w":%d,"l":0,"n":"n1"},"edited":null,"deleted":false}}`,
		conv, seq, seq, id, wall)
}

// TestAuditCatchesLostAndDuplicated drives the harness's own frame path,
// the node's frames as bytes through parseFrame, the virtual clients'
// handle and the audit's reading of the history, into the ledger: a
// message missing from the history and one at an agent are lost, one
// stored twice is duplicated, and the one where everything holds is
// delivered.
func TestAuditCatchesLostAndDuplicated(t *testing.T) {
	t.Parallel()
	ids := msgIDs{prefix: "pbtest-"}
	r := &run{ids: ids, nconv: 1, convs: []string{"c_a"}, convIdx: map[string]int{"c_a": 0},
		ledger: NewLedger(4, 1), rec: newRecorder()}
	visitor := &vclient{r: r, transport: "ws", inflight: map[int]struct{}{}, wake: make(chan struct{}, 1), vcurs: map[int]*client.Cursor{}}
	agent := &vclient{r: r, agent: true, transport: "ws", curs: make([]client.Cursor, 1)}
	ctx := context.Background()
	feed := func(v *vclient, s string) {
		t.Helper()
		f := parseFrame([]byte(s))
		if err := v.handle(ctx, nil, &f, time.Now()); err != nil {
			t.Fatalf("handle %s: %v", s, err)
		}
	}
	for k := range 4 {
		r.ledger.Sent(k)
		id := ids.id(k)
		seq := uint64(k + 1)
		feed(visitor, fmt.Sprintf(`{"type":"ack","ref":%q,"conversation":"c_a","id":%q,"seq":%d,"ts":{"w":%d,"l":0,"n":"n1"},"dup":false}`, id, id, seq, 100+k))
		if k != 3 { // 3: never reaches the agent
			feed(agent, deliverJSON("c_a", seq, id, int64(100+k)))
		}
	}
	// The history: 0 once; 1 missing; 2 twice, the second time with
	// another ts (a second entry); 3 once.
	h := &historyConn{history: map[string][]string{"c_a": {
		deliverJSON("c_a", 1, ids.id(0), 100),
		deliverJSON("c_a", 3, ids.id(2), 102),
		deliverJSON("c_a", 4, ids.id(3), 103),
		deliverJSON("c_a", 5, ids.id(2), 777),
	}}}
	if err := r.auditConn(ctx, h, 0); err != nil {
		t.Fatalf("audit: %v", err)
	}
	r.ledger.MarkAudited(0)
	a := r.ledger.Account(4)
	if a.Acked != 4 || a.Delivered != 1 || a.Lost != 2 || a.Duplicated != 1 || a.LostInStore != 1 || a.LostAtAgents != 1 || a.DuplicatedInStore != 1 {
		t.Fatalf("accounting: acked %d delivered %d lost %d (in store %d, at agents %d) duplicated %d (in store %d); want 4 1 2 (1, 1) 1 (1)\n%v",
			a.Acked, a.Delivered, a.Lost, a.LostInStore, a.LostAtAgents, a.Duplicated, a.DuplicatedInStore, a.Details)
	}
	if !eqInts(a.LostExamples, []int{1, 3}) || !eqInts(a.DupExamples, []int{2}) {
		t.Fatalf("examples: lost %v, duplicated %v; want [1 3], [2]", a.LostExamples, a.DupExamples)
	}
}
