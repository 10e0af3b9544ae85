package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// requestData encodes cmd in a Request as Apply would.
func requestData(t testing.TB, id string, base uint64, cmd Command) []byte {
	t.Helper()
	data, err := EncodeCommand(Request{ID: id, Base: base, Cmd: cmd})
	if err != nil {
		t.Fatalf("encode request: %v", err)
	}
	return data
}

// applyEntry applies data at the next index and returns what the leader's
// future would carry, without the harness's check of the index: a
// duplicate request answers its first copy's.
func (h *harness) applyEntry(data []byte) (Result, error) {
	h.t.Helper()
	h.idx++
	r, ok := h.f.Apply(&raft.Log{Index: h.idx, Term: 1, Type: raft.LogCommand, Data: data}).(*applyResult)
	if !ok {
		h.t.Fatal("Apply returned no applyResult")
	}
	return r.Result, r.Err
}

// Two copies of a request (a resend after a leader change) are applied
// once: the second changes nothing and answers exactly what the first did,
// an error included; and so after a snapshot and restore.
func TestRequestAppliedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	_, kh := NewAPIKey()
	mint := requestData(t, "mint-0000000000000001", h.idx, CreateKey{Hash: kh, Workspace: "acme", Name: "k", Created: t0})
	create := requestData(t, "create-00000000000001", h.idx, CreateWorkspace{ID: "globex", Name: "Globex", Plan: "free", Created: t0})
	taken := requestData(t, "taken-000000000000001", h.idx, CreateWorkspace{ID: "acme", Name: "Again", Plan: "free", Created: t0})

	first := map[string]Result{}
	firstErr := map[string]error{}
	for name, data := range map[string][]byte{"mint": mint, "create": create, "taken": taken} {
		first[name], firstErr[name] = h.applyEntry(data)
		if first[name].Index != h.idx || first[name].Duplicate {
			t.Fatalf("%s: first copy answered %+v at index %d", name, first[name], h.idx)
		}
	}
	if firstErr["mint"] != nil || firstErr["create"] != nil || !errors.Is(firstErr["taken"], ErrExists) {
		t.Fatalf("first copies: %v", firstErr)
	}
	h.must(SetPlan{Plan: Plan{Name: "gold", Seats: 1}}) // entries in between

	check := func(h *harness, when string) {
		t.Helper()
		for name, data := range map[string][]byte{"mint": mint, "create": create, "taken": taken} {
			res, err := h.applyEntry(data)
			if res != first[name] {
				t.Errorf("%s: copy of %s answered %+v, the first %+v", when, name, res, first[name])
			}
			if fmt.Sprint(err) != fmt.Sprint(firstErr[name]) || (err != nil && ErrorCode(err) != ErrorCode(firstErr[name])) {
				t.Errorf("%s: copy of %s answered %v, the first %v", when, name, err, firstErr[name])
			}
		}
		if keys, _ := h.state().Keys("acme"); len(keys) != 1 {
			t.Errorf("%s: %d keys, want 1", when, len(keys))
		}
		if ws, _ := h.state().Workspace("acme"); ws.Name != "Acme" {
			t.Errorf("%s: acme renamed %q", when, ws.Name)
		}
		if len(h.state().Workspaces()) != 2 {
			t.Errorf("%s: %d workspaces, want 2", when, len(h.state().Workspaces()))
		}
	}
	// A request is known by its ID, not its content: the same command
	// under another ID is another request.
	res, err := h.applyEntry(requestData(t, "taken-000000000000002", h.idx, CreateWorkspace{ID: "acme", Name: "Again", Plan: "free", Created: t0}))
	if !errors.Is(err, ErrExists) || res.Index != h.idx {
		t.Fatalf("another request of the same command: %+v %v", res, err)
	}

	snap, snapIdx := h.snapshot(), h.idx
	check(h, "before the snapshot")

	r := newHarness(t)
	if err := r.f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	r.idx = snapIdx
	if r.idx != r.state().Index() {
		t.Fatalf("restored at %d, want %d", r.state().Index(), r.idx)
	}
	check(r, "after a restore")
	// Both replicas went through the same entries: equal states.
	if a, b := h.snapshot(), r.snapshot(); !bytes.Equal(a, b) {
		t.Fatalf("replicas differ after the same entries:\n%s\n%s", a, b)
	}
}

// requestCase drives State.applyRequest at given indexes, outside the FSM,
// counting how often the command itself is applied.
type requestDriver struct {
	s       *State
	applied map[string]int
}

func newRequestDriver() *requestDriver {
	return &requestDriver{s: newState(nil), applied: map[string]int{}}
}

// copyAt applies a copy of the request at index; the command answers its
// index, or ErrExists for IDs starting with "x".
func (d *requestDriver) copyAt(index uint64, id string, base uint64) (Result, error) {
	d.s.d.Index = index
	res, copyOf, err := d.s.applyRequest(index, &Request{ID: id, Base: base, Cmd: DeleteWorkspace{ID: "a"}}, func() (Result, error) {
		d.applied[id]++
		if id[0] == 'x' {
			return Result{Index: index}, fmt.Errorf("workspace at %d: %w", index, ErrExists)
		}
		return Result{Index: index}, nil
	})
	if copyOf != 0 && copyOf != res.Index {
		// The command answers its own index: the first copy's.
		return Result{}, fmt.Errorf("copy of the request at %d answered index %d", copyOf, res.Index)
	}
	return res, err
}

// Where the window's edges are: a copy is recognised while its first copy's
// record is kept, applied only within requestWindow entries of its base,
// and refused as ErrUncertain after that.
func TestRequestWindow(t *testing.T) {
	t.Parallel()
	const W = requestWindow
	type outcome string
	const (
		applied   outcome = "applied"
		duplicate outcome = "duplicate"
		uncertain outcome = "uncertain"
		invalid   outcome = "invalid"
	)
	tests := []struct {
		name   string
		base   uint64
		copies []uint64 // indexes of the copies, in log order
		want   []outcome
	}{
		{"next entry", 10, []uint64{11, 12}, []outcome{applied, duplicate}},
		{"last index the record is kept", 10, []uint64{11, 11 + W - 1}, []outcome{applied, duplicate}},
		{"record expired, copy refused", 10, []uint64{11, 11 + W}, []outcome{applied, uncertain}},
		{"first copy at the end of its window", 10, []uint64{10 + W, 10 + 2*W - 1}, []outcome{applied, duplicate}},
		{"first copy past its window", 10, []uint64{11 + W}, []outcome{uncertain}},
		{"kept past the base's window", 10, []uint64{500, 11 + W}, []outcome{applied, duplicate}},
		{"refused, then refused again", 10, []uint64{11 + W, 12 + W}, []outcome{uncertain, uncertain}},
		{"base at the index", 20, []uint64{20}, []outcome{invalid}},
		{"base past the index", 30, []uint64{20}, []outcome{invalid}},
		{"many copies", 0, []uint64{1, 2, 3, W / 2, W - 1}, []outcome{applied, duplicate, duplicate, duplicate, duplicate}},
	}
	for _, tt := range tests {
		for _, id := range []string{"ok-0123456789abcdef", "x-0123456789abcdef"} {
			t.Run(tt.name+"/"+id[:2], func(t *testing.T) {
				t.Parallel()
				d := newRequestDriver()
				var firstRes Result
				var firstErr error
				for i, index := range tt.copies {
					res, err := d.copyAt(index, id, tt.base)
					var got outcome
					switch {
					case errors.Is(err, ErrInvalid):
						got = invalid
					case errors.Is(err, ErrUncertain):
						got = uncertain
					case d.applied[id] == 1 && firstRes == (Result{}):
						got, firstRes, firstErr = applied, res, err
					case res == firstRes && fmt.Sprint(err) == fmt.Sprint(firstErr):
						got = duplicate
					default:
						got = outcome(fmt.Sprintf("answered %+v %v", res, err))
					}
					if got != tt.want[i] {
						t.Errorf("copy %d at index %d (base %d): %s, want %s", i, index, tt.base, got, tt.want[i])
					}
					if (got == uncertain || got == invalid) && res.Index != index {
						t.Errorf("refusal at %d answered index %d", index, res.Index)
					}
				}
				if d.applied[id] > 1 {
					t.Errorf("applied %d times", d.applied[id])
				}
			})
		}
	}
}

// Random logs of requests and their copies, some made long ago, checked
// against a model that remembers every copy for ever: no request is ever
// applied twice, every copy answers what the model says, the table stays
// within the window, and a replica restored from snapshots along the way
// decides and holds exactly the same.
func TestRequestDedupModel(t *testing.T) {
	t.Parallel()
	const W = requestWindow
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			a, b := newRequestDriver(), newRequestDriver()
			type made struct {
				id   string
				base uint64
			}
			type first struct {
				index uint64
				res   Result
				err   string
			}
			var reqs []made
			firsts := map[string]first{}
			var index uint64 = 1
			var dups, refusals, restores int
			for step := 0; step < 4000; step++ {
				index += 1 + rng.Uint64N(12) // other entries between
				var r made
				if len(reqs) == 0 || rng.IntN(3) == 0 {
					// A new request; its node's view lags a little, or
					// now and then a lot.
					lag := rng.Uint64N(100)
					if rng.IntN(20) == 0 {
						lag = rng.Uint64N(2 * W)
					}
					prefix := "ok"
					if rng.IntN(4) == 0 {
						prefix = "x"
					}
					r = made{id: fmt.Sprintf("%s-%016d", prefix, step), base: index - 1 - min(lag, index-1)}
					reqs = append(reqs, r)
				} else {
					// A copy of a recent request, or of any.
					n := len(reqs)
					if rng.IntN(2) == 0 {
						r = reqs[n-1-rng.IntN(min(n, 50))]
					} else {
						r = reqs[rng.IntN(n)]
					}
				}
				resA, errA := a.copyAt(index, r.id, r.base)
				resB, errB := b.copyAt(index, r.id, r.base)
				if resA != resB || fmt.Sprint(errA) != fmt.Sprint(errB) {
					t.Fatalf("step %d: replicas answered %+v %v and %+v %v", step, resA, errA, resB, errB)
				}
				f, seen := firsts[r.id]
				switch {
				case seen && index-f.index < W:
					if resA != f.res || fmt.Sprint(errA) != f.err {
						t.Fatalf("step %d: copy of %s at %d answered %+v %v, first at %d %+v %s", step, r.id, index, resA, errA, f.index, f.res, f.err)
					}
					dups++
				case index-r.base > W:
					if !errors.Is(errA, ErrUncertain) {
						t.Fatalf("step %d: %s (base %d) at %d: %v, want uncertain", step, r.id, r.base, index, errA)
					}
					refusals++
				default:
					if seen {
						t.Fatalf("step %d: %s applied again at %d, first at %d", step, r.id, index, f.index)
					}
					firsts[r.id] = first{index: index, res: resA, err: fmt.Sprint(errA)}
				}
				if a.applied[r.id] > 1 {
					t.Fatalf("step %d: %s applied %d times", step, r.id, a.applied[r.id])
				}
				if len(a.s.d.Requests) > W || len(a.s.requestOrder) != len(a.s.d.Requests) {
					t.Fatalf("step %d: %d records, %d in order", step, len(a.s.d.Requests), len(a.s.requestOrder))
				}
				if rng.IntN(500) == 0 {
					// b restarts from its snapshot.
					snap := snapshotBytes(t, newFSM(b.s, discardLogger()))
					st := newState(nil)
					if err := newFSM(st, discardLogger()).Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
						t.Fatal(err)
					}
					b.s = st
					restores++
				}
			}
			if !reflect.DeepEqual(a.s.d.Requests, b.s.d.Requests) || !reflect.DeepEqual(a.s.requestOrder, b.s.requestOrder) {
				t.Fatal("the restored replica's table differs")
			}
			if sa, sb := snapshotBytes(t, newFSM(a.s, discardLogger())), snapshotBytes(t, newFSM(b.s, discardLogger())); !bytes.Equal(sa, sb) {
				t.Fatal("the replicas' snapshots differ")
			}
			if dups == 0 || refusals == 0 || restores == 0 {
				t.Fatalf("%d duplicates, %d refusals, %d restores: the log did not exercise the table", dups, refusals, restores)
			}
			t.Logf("%d requests, %d copies answered as duplicates, %d refused, %d restores, %d records at the end", len(reqs), dups, refusals, restores, len(a.s.d.Requests))
		})
	}
}

// A snapshot written before requests existed has no table; one written
// after carries it, and an old entry without an envelope still applies.
func TestRequestSnapshotCompatibility(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	if bytes.Contains(h.snapshot(), []byte(`"requests"`)) {
		t.Fatal("a state without requests writes a table")
	}
	h.must(CreateWorkspace{ID: "old", Name: "Old", Plan: "free", Created: t0}) // no envelope
	if _, err := h.applyEntry(requestData(t, "0123456789abcdef", 1, SetPlan{Plan: Plan{Name: "p", Seats: 1}})); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(h.snapshot(), []byte(`"requests":{"0123456789abcdef":{"index":5,"result":{"index":5}}}`)) {
		t.Fatalf("snapshot without the request's record:\n%s", h.snapshot())
	}
}

// A request applied before every node restarted from its snapshot is still
// known afterwards: the snapshot carries the table of requests.
func TestRequestKnownAfterSnapshotRestart(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 3, nil)
	ctx := testContext(t)
	leader := tc.leader()
	mustApply(t, leader, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	_, kh := NewAPIKey()
	data := requestData(t, newRequestID(), leader.raft.CommitIndex(), CreateKey{Hash: kh, Workspace: "acme", Name: "snap", Created: t0})
	reply, err := leader.HandleForward(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	first, err := decodeReply(reply)
	if err != nil {
		t.Fatal(err)
	}
	tc.waitApplied(first.Index)
	for _, c := range tc.live() {
		if err := c.Snapshot(ctx); err != nil {
			t.Fatalf("snapshot on %s: %v", c.ID(), err)
		}
	}
	for _, c := range tc.live() {
		tc.stop(c.ID())
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		tc.start(id, false)
	}
	leader = tc.leader()
	for _, c := range tc.live() {
		if c.fsm.restores.Load() == 0 {
			t.Fatalf("%s did not restore a snapshot", c.ID())
		}
	}
	reply, err = leader.HandleForward(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := decodeReply(reply)
	if err != nil || res != first {
		t.Fatalf("copy after the restart answered %+v %v, the first %+v", res, err, first)
	}
	idx, err := leader.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for id, n := range keysNamed(t, tc, idx, "snap") {
		if n != 1 {
			t.Errorf("%s holds the key %d times", id, n)
		}
	}
}

// A node far behind the leader (it was down while the log grew by more than
// requestWindow entries) makes its requests from the commit index it knows,
// too old for the state machine to vouch for: the first copy is refused,
// nothing applied, and Apply makes the request anew from the index it was
// refused at, so the write succeeds once.
func TestLaggingNodeWriteMadeAnew(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 3, nil)
	// Over 8,000 barriers on a loaded machine: more than testContext's
	// 30 s at times.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	leader := tc.leader()
	mustApply(t, leader, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	lag := tc.followers()[0]
	id := lag.ID()
	tc.stop(id)
	// Grow the log with barriers (entries the state never sees), many at
	// once so raft batches them.
	target := leader.raft.LastIndex() + requestWindow + 64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for leader.raft.LastIndex() < target && ctx.Err() == nil {
				if err := leader.raft.Barrier(10 * time.Second).Error(); err != nil {
					t.Errorf("barrier: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if leader.raft.LastIndex() < target {
		t.Fatalf("the log grew to %d of %d entries: %v", leader.raft.LastIndex(), target, ctx.Err())
	}
	c := tc.start(id, false)
	_, kh := NewAPIKey()
	res, err := c.Apply(ctx, CreateKey{Hash: kh, Workspace: "acme", Name: "from-behind", Created: t0})
	if err != nil {
		t.Fatalf("write on a node restarted more than %d entries behind: %v", requestWindow, err)
	}
	for node, n := range keysNamed(t, tc, res.Index, "from-behind") {
		if n != 1 {
			t.Errorf("%s holds the key %d times", node, n)
		}
	}
}

// wholeSnapshot is the snapshot of st as it was written when the whole
// state was encoded at once, request table included, under the lock.
func wholeSnapshot(t testing.TB, st *State) []byte {
	t.Helper()
	st.mu.RLock()
	state, err := json.Marshal(st.d)
	st.mu.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := json.Marshal(snapshotDoc{Format: snapshotFormat, State: state})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// A snapshot encodes the request table after the state's lock is released
// (Persist, beside the applies), into the bytes the whole state encoded at
// once made: the format is unchanged, with or without records, and while
// the table forgets its oldest. A snapshot taken keeps the table as it was
// then however far the applies go on meanwhile, past the window, until
// every record it holds is forgotten and the queue has moved to new arrays.
func TestSnapshotEncodesStateWhole(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.seed()
	check := func(when string) {
		t.Helper()
		if got, want := h.snapshot(), wholeSnapshot(t, h.state()); !bytes.Equal(got, want) {
			t.Fatalf("%s: snapshot differs from the whole state encoded at once:\n got %.300s\nwant %.300s", when, got, want)
		}
	}
	check("no requests")
	next := 0
	request := func() {
		next++
		var cmd Command = SetPlan{Plan: Plan{Name: "p", Seats: int64(next)}}
		if next%5 == 0 {
			cmd = DeleteWorkspace{ID: "nosuch"} // an error recorded
		}
		h.applyEntry(requestData(t, fmt.Sprintf("r%031d", next), h.idx, cmd))
	}
	for range 3 {
		request()
	}
	check("three requests")
	for range requestWindow + 100 {
		request()
	}
	check("full table")

	// A snapshot taken now, persisted while the log goes on.
	want := wholeSnapshot(t, h.state())
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2*requestWindow + 10 {
			request()
		}
	}()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	<-done
	if !bytes.Equal(sink.Bytes(), want) {
		t.Fatal("the snapshot persisted differs from the state when it was taken")
	}
	sink.Reset()
	if err := snap.Persist(sink); err != nil || !bytes.Equal(sink.Bytes(), want) {
		t.Fatalf("persisted again after the table moved on: %v, same bytes: %v", err, bytes.Equal(sink.Bytes(), want))
	}
	check("after the window went by twice")

	// And it restores to the state it was taken from.
	st := newState(nil)
	if err := newFSM(st, discardLogger()).Restore(io.NopCloser(bytes.NewReader(want))); err != nil {
		t.Fatal(err)
	}
	if got := wholeSnapshot(t, st); !bytes.Equal(got, want) {
		t.Fatal("restored state differs")
	}
}
