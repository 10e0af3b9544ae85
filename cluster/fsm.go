package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// snapshotFormat versions the snapshot document. Bump it when the encoding
// of stateData changes in a way an older binary would misread; Restore
// refuses a format newer than its own rather than guess.
const snapshotFormat = 1

type snapshotDoc struct {
	Format int             `json:"format"`
	State  json.RawMessage `json:"state"`
}

// fsm applies committed log entries to a State. Raft calls Apply, Snapshot
// and Restore from one goroutine; reads go to the State concurrently.
type fsm struct {
	state *State
	log   *slog.Logger
	// restores counts Restore calls: at start-up from the local snapshot, and
	// whenever the leader installs one because this node fell too far behind.
	restores atomic.Uint64
}

func newFSM(state *State, log *slog.Logger) *fsm {
	return &fsm{state: state, log: log}
}

// applyResult is what Apply hands back to raft, which passes it to the
// leader's ApplyFuture (followers drop it).
type applyResult struct {
	Result Result
	Err    error
}

// Apply implements raft.FSM. A command that is malformed, refused by the
// state, or of an unknown type marked skippable gives an error result, and
// the entry still counts as applied, identically on every node. A command
// of an unknown type not marked skippable panics: the node stops applying
// the log there (see CommandType) instead of diverging.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	res, err := f.apply(l)
	if res.Index == 0 {
		// An entry refused whole (undecodable, a panic) still answers
		// with its index.
		res.Index = l.Index
	}
	return &applyResult{Result: res, Err: err}
}

func (f *fsm) apply(l *raft.Log) (res Result, err error) {
	cmd, decodeErr := DecodeCommand(l.Data)
	var unknown *UnknownCommandError
	if errors.As(decodeErr, &unknown) && !unknown.Skippable {
		// A newer version wrote a command this node does not know and
		// that it may not skip: applying the rest of the log without it
		// would make this node's state quietly differ from the others'.
		// Stop here, loudly, every time, until the node is upgraded.
		f.log.Error("cluster: unknown command type in the log: this node must be upgraded; stopping its state machine",
			"index", l.Index, "type", uint8(unknown.Type))
		panic(fmt.Sprintf("cluster: log entry %d has command type %d, unknown to this version: upgrade this node", l.Index, uint8(unknown.Type)))
	}
	s := f.state
	s.mu.Lock()
	defer func() {
		// A bug that panics here would panic identically on every node and
		// again at every restart as the entry is replayed: the whole control
		// plane would crash-loop. An error result keeps it up, loudly.
		if r := recover(); r != nil {
			f.log.Error("cluster: BUG: panic applying command", "index", l.Index, "type", cmdType(l.Data), "panic", r)
			res, err = Result{}, fmt.Errorf("%w: command at index %d: %v", ErrInternal, l.Index, r)
		}
		s.d.Index = l.Index
		close(s.applied)
		s.applied = make(chan struct{})
		s.mu.Unlock()
	}()
	// The leader's time of the entry, the same on every node: the time
	// of the control plane's webhook events.
	s.entryTime = l.AppendedAt.UTC()
	if unknown != nil {
		// Marked skippable by the newer version that wrote it.
		f.log.Warn("cluster: skipping a log entry of a newer version", "index", l.Index, "type", uint8(unknown.Type))
		return Result{}, decodeErr
	}
	if decodeErr != nil {
		// Validation before proposing keeps invalid commands out of the log,
		// so this is a version skew (a newer leader wrote fields this binary
		// does not know) or a bug: upgrade this node.
		f.log.Error("cluster: refusing log entry", "index", l.Index, "type", cmdType(l.Data), "err", decodeErr)
		return Result{}, decodeErr
	}
	if r, ok := cmd.(*Request); ok {
		res, copyOf, err := s.applyRequest(l.Index, r, func() (Result, error) { return f.applyCommand(l.Index, r.Cmd) })
		if copyOf != 0 {
			// A node sent the request again (its leader was replaced
			// before it answered) and the first copy had been applied.
			f.log.Info("cluster: request applied before, answered as then", "request", r.ID, "index", l.Index, "first", copyOf, "type", r.Cmd.Type())
		}
		return res, err
	}
	return f.applyCommand(l.Index, cmd)
}

// applyCommand applies one command at index: its Result carries index,
// unless it is a duplicate of an idempotency key's (then the original's).
// Callers hold the state's lock.
func (f *fsm) applyCommand(index uint64, cmd Command) (Result, error) {
	res, err := f.dispatch(index, cmd)
	if !res.Duplicate {
		res.Index = index
	}
	return res, err
}

func (f *fsm) dispatch(index uint64, cmd Command) (Result, error) {
	s := f.state
	switch c := cmd.(type) {
	case *CreateWorkspace:
		return s.applyCreateWorkspace(c)
	case *UpdateWorkspace:
		return s.applyUpdateWorkspace(index, c)
	case *DeleteWorkspace:
		return s.applyDeleteWorkspace(index, c)
	case *CreateOperator:
		return s.applyCreateOperator(c)
	case *UpdateOperator:
		return s.applyUpdateOperator(c)
	case *RehashPassword:
		return s.applyRehashPassword(c)
	case *DeleteOperator:
		return s.applyDeleteOperator(c)
	case *CreateSession:
		return s.applyCreateSession(c)
	case *RevokeSession:
		return s.applyRevokeSession(c)
	case *CreateKey:
		return s.applyCreateKey(c)
	case *RevokeKey:
		return s.applyRevokeKey(index, c)
	case *SetSecret:
		return s.applySetSecret(c)
	case *RotateSecret:
		return s.applyRotateSecret(c)
	case *SetPlan:
		return s.applySetPlan(c)
	case *ReportUsage:
		return s.applyReportUsage(index, c)
	case *RecordBillingEvent:
		return s.applyRecordBillingEvent(index, c)
	case *Prune:
		return s.applyPrune(c)
	case *Assign:
		return s.applyAssign(index, c)
	case *RegisterNode:
		return s.applyRegisterNode(c)
	case *EraseConversation:
		return s.applyEraseConversation(index, c)
	case *Audited:
		return f.applyAudited(index, c)
	case *RecordAudit:
		return s.applyRecordAudit(index, c)
	case *PruneAudit:
		return s.applyPruneAudit(c)
	case *EraseVisitor:
		return s.applyEraseVisitor(index, c)
	case *SetRetention:
		return s.applySetRetention(c)
	case *SetVisitorDeletion:
		return s.applySetVisitorDeletion(c)
	case *RequestDeletion:
		return s.applyRequestDeletion(c)
	case *CreateWebhook:
		return s.applyCreateWebhook(c)
	case *RotateWebhookSecret:
		return s.applyRotateWebhookSecret(c)
	case *DeleteWebhook:
		return s.applyDeleteWebhook(c)
	case *AddDeadLetters:
		return s.applyAddDeadLetters(c)
	case *RedeliverWebhook:
		return s.applyRedeliverWebhook(c)
	case *ResolveDeadLetters:
		return s.applyResolveDeadLetters(c)
	case *AckWebhookOutbox:
		return s.applyAckWebhookOutbox(c)
	case *SetEmailSettings:
		return s.applySetEmailSettings(c)
	case *DeleteEmailSettings:
		return s.applyDeleteEmailSettings(c)
	case *RecordMail:
		return s.applyRecordMail(c)
	case interface{ NoEffect() }:
		// A command that changes no state: only the upgrade probe of
		// test builds (schema/probe_upgradetest.go).
		return Result{}, nil
	}
	// schema.NewCommand knows a type this switch does not: a bug, caught by the
	// test that applies every type.
	f.log.Error("cluster: BUG: no apply for command", "index", index, "type", cmd.Type())
	return Result{}, fmt.Errorf("%w: no apply for command type %d", ErrInternal, cmd.Type())
}

func cmdType(data []byte) int {
	if len(data) == 0 {
		return -1
	}
	return int(data[0])
}

// Snapshot implements raft.FSM. Raft calls it on the goroutine that
// applies entries, then Persist on another while applies go on. The state
// is small (control-plane records, not conversations), so it is encoded
// right here under the read lock, into bytes Persist can write while the
// state moves on. The request table is the exception: up to requestWindow
// records, most of the work when it is full (milliseconds, see
// BenchmarkSnapshot). Its entries are taken without a copy
// (requestsSnapshot: they are never written again) and Persist encodes
// them, so the applies do not wait for that.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	s := f.state
	s.mu.RLock()
	d := *s.d
	d.Requests = nil
	state, err := json.Marshal(&d)
	requests := s.requestsSnapshot()
	s.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	return &fsmSnapshot{state: state, requests: requests}, nil
}

// fsmSnapshot is a snapshot taken, to be encoded and written by Persist.
type fsmSnapshot struct {
	// state is the JSON of the state without its request records.
	state []byte
	// requests are the state's request records, oldest first.
	requests []requestEntry
}

// encode returns the snapshot document: the state with its request records
// in the bytes json.Marshal writes for a whole stateData (Requests is its
// last field, a map whose keys it sorts, left out when empty), so the
// format is the one it was when all of it was encoded at once.
// TestSnapshotEncodesStateWhole holds it to that.
func (sn *fsmSnapshot) encode() ([]byte, error) {
	state := sn.state
	if len(sn.requests) > 0 {
		m := make(map[string]requestRecord, len(sn.requests))
		for _, e := range sn.requests {
			m[e.id] = e.rec
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encode requests: %w", err)
		}
		if len(state) < 2 || state[len(state)-1] != '}' {
			return nil, fmt.Errorf("%w: state encoded as %.20q", ErrInternal, state)
		}
		state = slices.Concat(state[:len(state)-1], []byte(`,"requests":`), b, []byte("}"))
	}
	doc, err := json.Marshal(snapshotDoc{Format: snapshotFormat, State: state})
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	return doc, nil
}

func (sn *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	doc, err := sn.encode()
	if err == nil {
		_, err = sink.Write(doc)
		if err != nil {
			err = fmt.Errorf("write snapshot: %w", err)
		}
	}
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (*fsmSnapshot) Release() {}

// Restore implements raft.FSM: it replaces the state with a snapshot's,
// refusing one that is corrupt or of a newer format, in which case the
// current state is left as it was.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	d, err := decodeSnapshot(rc)
	if err != nil {
		f.log.Error("cluster: refusing snapshot", "err", err)
		return err
	}
	// Counted before waiters wake: one that saw the index move sees the
	// restore that moved it.
	f.restores.Add(1)
	s := f.state
	s.mu.Lock()
	s.reset(d)
	close(s.applied)
	s.applied = make(chan struct{})
	s.mu.Unlock()
	f.log.Info("cluster: restored snapshot", "index", d.Index)
	return nil
}

func decodeSnapshot(r io.Reader) (*stateData, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	var doc snapshotDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("snapshot: %w: %v", ErrInvalid, err)
	}
	switch {
	case doc.Format > snapshotFormat:
		return nil, fmt.Errorf("snapshot format %d is newer than this binary's %d: upgrade this node: %w", doc.Format, snapshotFormat, ErrInvalid)
	case doc.Format < 1:
		return nil, fmt.Errorf("snapshot: %w: format %d", ErrInvalid, doc.Format)
	}
	if len(doc.State) == 0 || bytes.Equal(doc.State, []byte("null")) {
		return nil, fmt.Errorf("snapshot: %w: no state", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(doc.State))
	dec.DisallowUnknownFields()
	d := new(stateData)
	if err := dec.Decode(d); err != nil {
		return nil, fmt.Errorf("snapshot state: %w: %v", ErrInvalid, err)
	}
	d.fill()
	if err := d.check(); err != nil {
		return nil, fmt.Errorf("snapshot state: %w: %v", ErrInvalid, err)
	}
	return d, nil
}
