package embedder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Key names one thing to embed: an item of a workspace (a conversation).
type Key struct {
	Workspace string
	ID        string
}

// Encoder turns texts into vectors; *Embedder is one.
type Encoder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// Source is where the worker reads what to embed and puts what it computed.
type Source interface {
	// Text returns the text of k to embed and the version it was read at.
	// ok false: nothing to do (k is gone, empty, or its stored vector is
	// already of this version).
	Text(k Key) (text string, version uint64, ok bool, err error)
	// Save stores a batch of vectors at once (one durable write for the
	// batch). It returns how many it stored; an item whose key is gone
	// meanwhile is not an error.
	Save(ctx context.Context, vecs []Vector) (saved int, err error)
}

// Vector is a computed embedding of a key's text at a version.
type Vector struct {
	Key     Key
	Version uint64
	Vec     []float32
}

// WorkerConfig configures NewWorker. Encoder and Source are required; every
// other zero value is a default.
type WorkerConfig struct {
	Encoder Encoder
	Source  Source
	// MaxPending bounds the keys waiting to be embedded; a Notify beyond it
	// is dropped (and counted), never waited for. Zero: 100,000.
	MaxPending int
	// Debounce is how long a key must see no new Notify before it is
	// embedded, so a conversation in full flow is embedded once it pauses,
	// not at every message. Zero: 2s.
	Debounce time.Duration
	// MaxDelay embeds a key that keeps changing at least this long after its
	// first Notify. Zero: 10 × Debounce.
	MaxDelay time.Duration
	// MaxBatch is the most texts given to the Encoder at once: a larger
	// batch runs faster per text but holds the model longer, which delays a
	// search waiting for it. Zero: 8.
	MaxBatch int
	// Duty caps the share of wall time the worker spends embedding: after a
	// batch that took d, it rests d × (1/Duty − 1). Zero: 0.5.
	Duty float64
	// Logger receives failures. Zero: slog.Default().
	Logger *slog.Logger
	// LowPriority runs the worker on an OS thread of its own at a lower
	// scheduling priority (nice 10, Linux), so that the kernel runs chat
	// first when the cores are busy. Zero: false.
	LowPriority bool
}

// WorkerStats are a worker's counters.
type WorkerStats struct {
	Pending  int    // keys waiting
	Embedded uint64 // vectors computed and saved
	Skipped  uint64 // keys the Source had nothing for
	Dropped  uint64 // Notify calls refused because MaxPending keys waited
	Failed   uint64 // keys whose text, embedding or save failed
	Batches  uint64 // Encoder calls
	Busy     bool   // a batch is being computed now
}

// Worker embeds items in the background: Notify marks a key dirty (cheap,
// never blocks), and Run embeds dirty keys in batches once they have been
// quiet for Debounce, at most Duty of the time.
type Worker struct {
	cfg  WorkerConfig
	log  *slog.Logger
	wake chan struct{}

	mu      sync.Mutex
	pending map[Key]*dirty
	stats   WorkerStats
}

type dirty struct {
	first, last time.Time
}

// ErrNoSource is returned by NewWorker without an Encoder or a Source.
var ErrNoSource = errors.New("embedder: worker needs an Encoder and a Source")

// NewWorker returns a worker; Run starts it.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Encoder == nil || cfg.Source == nil {
		return nil, ErrNoSource
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 100_000
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 2 * time.Second
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 10 * cfg.Debounce
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 8
	}
	if cfg.Duty <= 0 || cfg.Duty > 1 {
		cfg.Duty = 0.5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Worker{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), pending: map[Key]*dirty{}}, nil
}

// Notify marks k as changed. It only takes a short lock and never blocks on
// the worker, so it is safe on the chat's hot path; it returns false when
// the key was dropped because MaxPending keys are waiting.
func (w *Worker) Notify(k Key) bool {
	now := time.Now()
	w.mu.Lock()
	d, ok := w.pending[k]
	if !ok {
		if len(w.pending) >= w.cfg.MaxPending {
			w.stats.Dropped++
			w.mu.Unlock()
			return false
		}
		d = &dirty{first: now}
		w.pending[k] = d
	}
	d.last = now
	first := !ok && len(w.pending) == 1
	w.mu.Unlock()
	if first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// Forget drops k from the keys waiting (its item was erased).
func (w *Worker) Forget(k Key) {
	w.mu.Lock()
	delete(w.pending, k)
	w.mu.Unlock()
}

// Stats returns the worker's counters.
func (w *Worker) Stats() WorkerStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Pending = len(w.pending)
	return s
}

// Run embeds until ctx ends; it returns nil then. A batch in flight is
// cancelled with ctx.
func (w *Worker) Run(ctx context.Context) error {
	if w.cfg.LowPriority {
		if err := lowerThreadPriority(); err != nil {
			w.log.Warn("embedding worker: cannot lower its thread's priority", "err", err)
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		batch, wait := w.take(time.Now())
		if len(batch) > 0 {
			start := time.Now()
			w.embed(ctx, batch)
			if ctx.Err() != nil {
				return nil
			}
			// Rest in proportion to the work: the cores are chat's first.
			wait = time.Duration(float64(time.Since(start)) * (1/w.cfg.Duty - 1))
			if wait <= 0 {
				continue
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
			// A first key arrived: it is not due for Debounce.
		case <-timer.C:
		}
	}
}

// maxScan bounds the keys take looks at under the lock, so that Notify, on
// the chat's hot path, never waits behind a scan of a long backlog. Map
// iteration starts at a random place, so every due key is found in time.
const maxScan = 4096

// take removes up to MaxBatch keys that are due and says how long until the
// next one is.
func (w *Worker) take(now time.Time) ([]Key, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	next := time.Hour
	if len(w.pending) > maxScan {
		// Not all looked at: look again soon.
		next = min(w.cfg.Debounce, 100*time.Millisecond)
	}
	var out []Key
	scanned := 0
	for k, d := range w.pending {
		if scanned++; scanned > maxScan {
			break
		}
		due := d.last.Add(w.cfg.Debounce)
		if late := d.first.Add(w.cfg.MaxDelay); late.Before(due) {
			due = late
		}
		if !due.After(now) {
			if len(out) < w.cfg.MaxBatch {
				out = append(out, k)
				delete(w.pending, k)
				continue
			}
			next = 0
			continue
		}
		next = min(next, due.Sub(now))
	}
	if len(out) > 0 {
		w.stats.Busy = true
	}
	return out, next
}

// embed reads, embeds and saves one batch.
func (w *Worker) embed(ctx context.Context, keys []Key) {
	var skipped, failed, embedded uint64
	defer func() {
		w.mu.Lock()
		w.stats.Skipped += skipped
		w.stats.Failed += failed
		w.stats.Embedded += embedded
		w.stats.Busy = false
		w.mu.Unlock()
	}()
	texts := make([]string, 0, len(keys))
	ks := make([]Key, 0, len(keys))
	versions := make([]uint64, 0, len(keys))
	for _, k := range keys {
		text, v, ok, err := w.cfg.Source.Text(k)
		switch {
		case err != nil:
			failed++
			w.log.Warn("embedding worker: reading text", "workspace", k.Workspace, "id", k.ID, "err", err)
		case !ok:
			skipped++
		default:
			texts, ks, versions = append(texts, text), append(ks, k), append(versions, v)
		}
	}
	if len(texts) == 0 {
		return
	}
	w.mu.Lock()
	w.stats.Batches++
	w.mu.Unlock()
	vecs, err := w.cfg.Encoder.Embed(ctx, texts)
	if err == nil && len(vecs) != len(texts) {
		err = fmt.Errorf("encoder returned %d vectors for %d texts", len(vecs), len(texts))
	}
	if err != nil {
		if ctx.Err() == nil {
			failed += uint64(len(texts))
			w.log.Warn("embedding worker: embedding", "texts", len(texts), "err", err)
		}
		return
	}
	out := make([]Vector, len(ks))
	for i, k := range ks {
		out[i] = Vector{Key: k, Version: versions[i], Vec: vecs[i]}
	}
	saved, err := w.cfg.Source.Save(ctx, out)
	embedded += uint64(saved)
	if err != nil && ctx.Err() == nil {
		failed += uint64(len(out) - saved)
		w.log.Warn("embedding worker: saving", "vectors", len(out), "err", err)
	}
}
