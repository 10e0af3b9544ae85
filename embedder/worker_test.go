package embedder

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"parley/internal/eventually"
)

// fakeEncoder records its batches; block, when set, holds every call until
// the context ends.
type fakeEncoder struct {
	mu      sync.Mutex
	batches [][]string
	block   bool
	entered chan struct{}
}

func (f *fakeEncoder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	f.mu.Lock()
	f.batches = append(f.batches, append([]string(nil), texts...))
	block := f.block
	f.mu.Unlock()
	if block {
		if f.entered != nil {
			select {
			case f.entered <- struct{}{}:
			default:
			}
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		out[i] = []float32{float32(len(t)), 1}
	}
	return out, nil
}

func (f *fakeEncoder) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for _, b := range f.batches {
		out = append(out, len(b))
	}
	return out
}

// memSource serves texts from a map and records saves.
type memSource struct {
	mu    sync.Mutex
	texts map[Key]string
	vers  map[Key]uint64
	saved map[Key][]uint64
}

func newMemSource() *memSource {
	return &memSource{texts: map[Key]string{}, vers: map[Key]uint64{}, saved: map[Key][]uint64{}}
}

func (m *memSource) set(k Key, text string) {
	m.mu.Lock()
	m.texts[k] = text
	m.vers[k]++
	m.mu.Unlock()
}

func (m *memSource) Text(k Key) (string, uint64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.texts[k]
	return t, m.vers[k], ok, nil
}

func (m *memSource) Save(_ context.Context, vecs []Vector) (int, error) {
	m.mu.Lock()
	for _, v := range vecs {
		m.saved[v.Key] = append(m.saved[v.Key], v.Version)
	}
	m.mu.Unlock()
	return len(vecs), nil
}

func (m *memSource) savedOf(k Key) []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]uint64(nil), m.saved[k]...)
}

func startWorker(t *testing.T, cfg WorkerConfig) (*Worker, context.CancelFunc, chan error) {
	t.Helper()
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w, cancel, done
}

// embedded holds once w has embedded n conversations.
func embedded(w *Worker, n uint64) func() error {
	return func() error {
		if s := w.Stats(); s.Embedded != n {
			return fmt.Errorf("stats %+v, want %d embedded", s, n)
		}
		return nil
	}
}

func TestWorkerBatches(t *testing.T) {
	t.Parallel()
	enc, src := &fakeEncoder{}, newMemSource()
	w, _, _ := startWorker(t, WorkerConfig{Encoder: enc, Source: src, Debounce: 20 * time.Millisecond, MaxBatch: 8, Duty: 1})
	for i := range 20 {
		k := Key{"ws", fmt.Sprint(i)}
		src.set(k, fmt.Sprint("text ", i))
		if !w.Notify(k) {
			t.Fatal("Notify refused under the bound")
		}
	}
	eventually.Holds(t, 10*time.Second, "20 vectors", embedded(w, 20))
	total := 0
	for _, n := range enc.sizes() {
		if n > 8 {
			t.Fatalf("a batch of %d texts, MaxBatch is 8: %v", n, enc.sizes())
		}
		total += n
	}
	if total != 20 || len(enc.sizes()) < 3 {
		t.Fatalf("batches %v: want 20 texts in at least 3 batches", enc.sizes())
	}
	if s := w.Stats(); s.Pending != 0 || s.Failed != 0 || s.Batches != uint64(len(enc.sizes())) {
		t.Fatalf("stats %+v", s)
	}
}

// TestWorkerDebounces: a conversation in full flow is embedded once, after
// it pauses, at the version it paused at.
func TestWorkerDebounces(t *testing.T) {
	t.Parallel()
	enc, src := &fakeEncoder{}, newMemSource()
	w, _, _ := startWorker(t, WorkerConfig{Encoder: enc, Source: src, Debounce: 80 * time.Millisecond, MaxDelay: time.Minute, Duty: 1})
	k := Key{"ws", "c1"}
	for range 20 {
		src.set(k, "more text")
		w.Notify(k)
		time.Sleep(10 * time.Millisecond)
	}
	if got := src.savedOf(k); len(got) != 0 {
		t.Fatalf("embedded while the conversation was still changing: %v", got)
	}
	eventually.Holds(t, 10*time.Second, "the vector after the pause", func() error {
		if got := src.savedOf(k); len(got) != 1 {
			return fmt.Errorf("saved versions %v", got)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	if got := src.savedOf(k); len(got) != 1 || got[0] != 20 {
		t.Fatalf("saved versions %v, want exactly [20]", got)
	}
}

// TestWorkerMaxDelay: a conversation that never pauses is still embedded.
func TestWorkerMaxDelay(t *testing.T) {
	t.Parallel()
	enc, src := &fakeEncoder{}, newMemSource()
	w, _, _ := startWorker(t, WorkerConfig{Encoder: enc, Source: src, Debounce: 200 * time.Millisecond, MaxDelay: 50 * time.Millisecond, Duty: 1})
	k := Key{"ws", "c1"}
	stop := time.Now().Add(600 * time.Millisecond)
	for time.Now().Before(stop) {
		src.set(k, "x")
		w.Notify(k)
		time.Sleep(5 * time.Millisecond)
	}
	if got := src.savedOf(k); len(got) < 2 {
		t.Fatalf("saved %v while changing every 5ms for 600ms with MaxDelay 50ms: want several", got)
	}
}

// TestWorkerBoundAndNonBlocking: with the encoder stuck, Notify still
// returns at once, and beyond MaxPending it drops and counts.
func TestWorkerBoundAndNonBlocking(t *testing.T) {
	t.Parallel()
	enc := &fakeEncoder{block: true, entered: make(chan struct{}, 1)}
	src := newMemSource()
	w, _, _ := startWorker(t, WorkerConfig{Encoder: enc, Source: src, Debounce: time.Millisecond, MaxBatch: 1, MaxPending: 5, Duty: 1})
	first := Key{"ws", "first"}
	src.set(first, "x")
	w.Notify(first)
	<-enc.entered // the worker is now stuck in Embed
	start := time.Now()
	accepted := 0
	for i := range 10 {
		if w.Notify(Key{"ws", fmt.Sprint(i)}) {
			accepted++
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("10 Notify calls took %v while the worker was busy", d)
	}
	if s := w.Stats(); accepted != 5 || s.Dropped != 5 || s.Pending != 5 || !s.Busy {
		t.Fatalf("accepted %d, stats %+v; want 5 accepted, 5 dropped, busy", accepted, s)
	}
	// A key already waiting is not a new one: it is never dropped.
	if !w.Notify(Key{"ws", "0"}) {
		t.Fatal("a waiting key was refused")
	}
}

// TestWorkerShutdown: Run returns promptly when its context ends, cancelling
// the batch in flight, and saves nothing afterwards.
func TestWorkerShutdown(t *testing.T) {
	t.Parallel()
	enc := &fakeEncoder{block: true, entered: make(chan struct{}, 1)}
	src := newMemSource()
	w, cancel, done := startWorker(t, WorkerConfig{Encoder: enc, Source: src, Debounce: time.Millisecond})
	k := Key{"ws", "c1"}
	src.set(k, "x")
	w.Notify(k)
	<-enc.entered
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got := src.savedOf(k); len(got) != 0 {
		t.Fatalf("saved %v after shutdown", got)
	}
	if s := w.Stats(); s.Failed != 0 || s.Busy {
		t.Fatalf("a cancelled batch is not a failure: %+v", s)
	}
}

// TestWorkerSkipsAndForgets: keys the source has nothing for are skipped
// without a model run; a forgotten key is not embedded.
func TestWorkerSkipsAndForgets(t *testing.T) {
	t.Parallel()
	enc, src := &fakeEncoder{}, newMemSource()
	w, _, _ := startWorker(t, WorkerConfig{Encoder: enc, Source: src, Debounce: 50 * time.Millisecond, Duty: 1})
	gone, erased := Key{"ws", "gone"}, Key{"ws", "erased"}
	src.set(erased, "secret")
	w.Notify(gone)
	w.Notify(erased)
	w.Forget(erased)
	eventually.Holds(t, 10*time.Second, "the skip", func() error {
		if s := w.Stats(); s.Skipped != 1 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	if s := w.Stats(); s.Embedded != 0 || s.Batches != 0 || len(enc.sizes()) != 0 {
		t.Fatalf("stats %+v, batches %v: want no model run", s, enc.sizes())
	}
}

func TestWorkerDutyCycle(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	enc := &slowEncoder{d: 20 * time.Millisecond}
	w, _, _ := startWorker(t, WorkerConfig{Encoder: enc, Source: src, Debounce: time.Millisecond, MaxBatch: 1, Duty: 0.25})
	for i := range 6 {
		k := Key{"ws", fmt.Sprint(i)}
		src.set(k, "x")
		w.Notify(k)
	}
	start := time.Now()
	eventually.Holds(t, 10*time.Second, "6 vectors", embedded(w, 6))
	// 6 batches of 20ms at a duty of 1/4 rest 60ms after each: at least 5
	// rests (the last one may still be running) of 60ms.
	if d := time.Since(start); d < 5*60*time.Millisecond+6*20*time.Millisecond {
		t.Fatalf("6 batches of 20ms at duty 0.25 took only %v", d)
	}
}

type slowEncoder struct{ d time.Duration }

func (s *slowEncoder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	time.Sleep(s.d)
	out := make([][]float32, len(texts))
	for i := range out {
		out[i] = []float32{1}
	}
	return out, nil
}

func TestNewWorkerNeedsParts(t *testing.T) {
	t.Parallel()
	if _, err := NewWorker(WorkerConfig{Source: newMemSource()}); err == nil {
		t.Fatal("no encoder accepted")
	}
	if _, err := NewWorker(WorkerConfig{Encoder: &fakeEncoder{}}); err == nil {
		t.Fatal("no source accepted")
	}
}

// TestWorkerLongBacklog: with more keys waiting than one take looks at,
// every key is still embedded.
func TestWorkerLongBacklog(t *testing.T) {
	t.Parallel()
	enc, src := &fakeEncoder{}, newMemSource()
	w, _, _ := startWorker(t, WorkerConfig{Encoder: enc, Source: src, Debounce: time.Millisecond, MaxBatch: 64, Duty: 1})
	n := maxScan + 500
	for i := range n {
		k := Key{"ws", fmt.Sprint(i)}
		src.set(k, "x")
		w.Notify(k)
	}
	eventually.Holds(t, 10*time.Second, "every key of a long backlog", embedded(w, uint64(n)))
}

// BenchmarkWorkerNotify is the cost the store's commit path pays per
// message event: a short lock and a map write, with a 10,000-key backlog.
func BenchmarkWorkerNotify(b *testing.B) {
	w, err := NewWorker(WorkerConfig{Encoder: &fakeEncoder{}, Source: newMemSource()})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]Key, 10_000)
	for i := range keys {
		keys[i] = Key{"ws", fmt.Sprint(i)}
		w.Notify(keys[i])
	}
	for i := 0; b.Loop(); i++ {
		w.Notify(keys[i%len(keys)])
	}
}
