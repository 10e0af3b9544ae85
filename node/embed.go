package node

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"parley/crdt"
	"parley/embedder"
	"parley/ident"
	"parley/node/agentapi"
	"parley/store"

	"github.com/prometheus/client_golang/prometheus"
)

// Similar conversations and suggested replies, computed on the node itself:
// no conversation text leaves it. The store's commit path marks changed
// conversations dirty in a bounded background worker, which embeds them in
// batches when they pause, on a niced thread and at most half the time, and
// stores each vector in bbolt under its workspace. An in-memory index per
// workspace answers searches; nothing is ever searched across workspaces.

// embedderOff is Config.Embedder's value that disables the feature.
const embedderOff = "off"

// Limits of what the feature reads and keeps.
const (
	// maxEmbedEvents is the most log events read to compose a
	// conversation's text: the model reads 256 tokens anyway, and the
	// first messages say what a conversation is about.
	maxEmbedEvents = 2000
	// maxEmbedChars caps the composed text before tokenising.
	maxEmbedChars = 4000
)

// embedding is the node's embedding feature: on when enc is set, else off
// for the reason in off, and chat goes on either way.
type embedding struct {
	log *slog.Logger
	st  *store.Store
	enc *embedder.Embedder
	// off says why the feature is off, in words for the agents who see it
	// (GET /v1/embeddings is public): no file path, no library error; the
	// log has those.
	off    string
	worker *embedder.Worker

	// mu orders vector writes against erasures (store then index, both
	// under mu), so the index never holds a conversation erased meanwhile.
	mu sync.Mutex

	idxMu   sync.RWMutex
	convs   map[string]*embedder.Index // workspace -> its conversations
	heads   map[embedder.Key]uint64    // the head each indexed vector is of
	replies map[string]*embedder.Index // workspace -> its saved replies
}

// tuneWorker lets a benchmark compare the worker without its niced thread
// and duty cycle; it changes nothing otherwise.
var tuneWorker = func(*embedder.WorkerConfig) {}

// newEmbedding loads the model and the stored vectors, and marks every
// conversation without an up-to-date vector for the worker. Missing assets,
// or any other failure to load the model, turn the feature off with a
// warning: a node serves chat without it.
func newEmbedding(cfg Config, st *store.Store, log *slog.Logger) *embedding {
	e := &embedding{log: log, st: st, convs: map[string]*embedder.Index{}, heads: map[embedder.Key]uint64{}, replies: map[string]*embedder.Index{}}
	if cfg.Embedder == embedderOff {
		e.off = "disabled on this node (-embedder off)"
		log.Info("embeddings off", "reason", e.off)
		return e
	}
	start := time.Now()
	enc, err := embedder.New(embedder.Config{LibraryPath: cfg.ORTLib, ModelDir: cfg.ModelDir, Threads: cfg.EmbedThreads})
	if err != nil {
		e.off = "the model failed to load on this node (its log says why)"
		if errors.Is(err, embedder.ErrUnavailable) {
			e.off = "the model is not installed on this node (make embedder-assets installs it)"
		}
		log.Warn("embeddings off: similar conversations and suggested replies are unavailable on this node; chat is not affected", "reason", err.Error())
		return e
	}
	e.enc = enc
	wcfg := embedder.WorkerConfig{
		Encoder: enc, Source: embedSource{e}, Debounce: cfg.EmbedDebounce, Logger: log, LowPriority: true,
	}
	tuneWorker(&wcfg)
	e.worker, err = embedder.NewWorker(wcfg)
	if err != nil { // only without an encoder or a source: a bug
		panic(err)
	}
	if err := e.load(); err != nil {
		log.Error("embeddings: loading stored vectors", "err", err)
	}
	log.Info("embeddings on", "model", embedder.ModelName, "dim", enc.Dim(), "threads", enc.Config().Threads,
		"vectors", len(e.heads), "pending", e.worker.Stats().Pending, "took", time.Since(start).Round(time.Millisecond))
	return e
}

// load fills the indexes from the store and queues what is missing or stale.
func (e *embedding) load() error {
	dim := e.enc.Dim()
	err := e.st.ForEachVector(func(ws, conv string, head uint64, vec []float32) error {
		if len(vec) != dim {
			return nil // of another model: recomputed below
		}
		if err := e.index(ws).Add(conv, vec); err != nil {
			return err
		}
		e.heads[embedder.Key{Workspace: ws, ID: conv}] = head
		return nil
	}, func(ws, conv string, err error) {
		e.log.Warn("embeddings: a stored vector does not decode; recomputing it", "workspace", ws, "conversation", conv, "err", err)
	})
	if err != nil {
		return fmt.Errorf("vectors: %w", err)
	}
	err = e.st.ForEachConversation(func(c store.Conversation) error {
		k := embedder.Key{Workspace: c.Workspace, ID: c.ID}
		if h, ok := e.heads[k]; c.Head > 0 && (!ok || h != c.Head) {
			e.worker.Notify(k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("conversations: %w", err)
	}
	return e.loadReplies()
}

// loadReplies indexes every saved reply, embedding those saved while the
// feature was off.
func (e *embedding) loadReplies() error {
	return e.st.ForEachWorkspace(func(ws string) error {
		rs, err := e.st.Replies(ws)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if len(r.Vector) != e.enc.Dim() {
				vecs, err := e.enc.Embed(context.Background(), []string{replyText(r)})
				if err != nil {
					return err
				}
				r.Vector = vecs[0]
				if err := e.st.PutReply(context.Background(), ws, r, 0); err != nil {
					return err
				}
			}
			if err := e.replyIndex(ws).Add(r.ID, r.Vector); err != nil {
				return err
			}
		}
		return nil
	})
}

// on reports whether the feature works on this node.
func (e *embedding) on() bool { return e != nil && e.enc != nil }

// run runs the worker until ctx ends.
func (e *embedding) run(ctx context.Context) error {
	if !e.on() {
		return nil
	}
	return e.worker.Run(ctx)
}

// close releases the model; the worker has stopped.
func (e *embedding) close() {
	if e.on() {
		e.enc.Close()
	}
}

// notify marks the conversations of message events dirty. The store calls
// it on its commit path: it takes a short lock per event and never waits.
func (e *embedding) notify(evs []store.Event) {
	if !e.on() {
		return
	}
	for _, ev := range evs {
		if ev.Kind == store.EventMessage {
			e.worker.Notify(embedder.Key{Workspace: ev.Workspace, ID: ev.Conversation})
		}
	}
}

func (e *embedding) index(ws string) *embedder.Index {
	e.idxMu.Lock()
	defer e.idxMu.Unlock()
	x := e.convs[ws]
	if x == nil {
		x = embedder.NewIndex(e.enc.Dim())
		e.convs[ws] = x
	}
	return x
}

func (e *embedding) replyIndex(ws string) *embedder.Index {
	e.idxMu.Lock()
	defer e.idxMu.Unlock()
	x := e.replies[ws]
	if x == nil {
		x = embedder.NewIndex(e.enc.Dim())
		e.replies[ws] = x
	}
	return x
}

// lookup returns a workspace's index, or nil when it has none.
func (e *embedding) lookup(m map[string]*embedder.Index, ws string) *embedder.Index {
	e.idxMu.RLock()
	defer e.idxMu.RUnlock()
	return m[ws]
}

// indexedHead is the head of the indexed vector of k, if there is one.
func (e *embedding) indexedHead(k embedder.Key) (uint64, bool) {
	e.idxMu.RLock()
	defer e.idxMu.RUnlock()
	h, ok := e.heads[k]
	return h, ok
}

// erase erases a conversation with its vector, from the store and from the
// index, and leaves its tombstone in the store even when it was not held
// (store.ErrNotFound then). It works with the feature off too.
func (e *embedding) erase(ctx context.Context, ws, conv string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	held, err := e.st.Tombstone(ctx, ws, conv)
	if err != nil {
		return err
	}
	if !held {
		return fmt.Errorf("conversation %s: %w", conv, store.ErrNotFound)
	}
	if !e.on() {
		return nil
	}
	k := embedder.Key{Workspace: ws, ID: conv}
	e.worker.Forget(k)
	if x := e.lookup(e.convs, ws); x != nil {
		x.Remove(conv)
	}
	e.idxMu.Lock()
	delete(e.heads, k)
	e.idxMu.Unlock()
	return nil
}

// dropWorkspace forgets a purged workspace's conversations and saved
// replies in the indexes and the worker's queue.
func (e *embedding) dropWorkspace(ws string) {
	if !e.on() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.idxMu.Lock()
	defer e.idxMu.Unlock()
	delete(e.convs, ws)
	delete(e.replies, ws)
	for k := range e.heads {
		if k.Workspace == ws {
			e.worker.Forget(k)
			delete(e.heads, k)
		}
	}
}

// embedSource is the worker's view of the store.
type embedSource struct{ e *embedding }

func (s embedSource) Text(k embedder.Key) (string, uint64, bool, error) {
	c, err := s.e.st.Conversation(k.Workspace, k.ID)
	if errors.Is(err, store.ErrNotFound) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, err
	}
	if h, ok := s.e.indexedHead(k); ok && h == c.Head {
		return "", 0, false, nil
	}
	msgs, err := s.e.messages(k.Workspace, k.ID)
	if err != nil {
		return "", 0, false, err
	}
	text := conversationText(msgs)
	if text == "" {
		return "", 0, false, nil
	}
	return text, c.Head, true, nil
}

func (s embedSource) Save(ctx context.Context, vecs []embedder.Vector) (int, error) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	puts := make([]store.VectorPut, len(vecs))
	for i, v := range vecs {
		puts[i] = store.VectorPut{Workspace: v.Key.Workspace, Conversation: v.Key.ID, Head: v.Version, Vector: v.Vec}
	}
	res, err := e.st.PutVectors(ctx, puts)
	if err != nil {
		return 0, err
	}
	saved := 0
	for i, v := range vecs {
		switch {
		case errors.Is(res[i], store.ErrNotFound):
			continue // erased while it was being embedded
		case errors.Is(res[i], store.ErrInvalid):
			return saved, res[i]
		case res[i] != nil:
			continue // a later vector is stored already
		}
		if err := e.index(v.Key.Workspace).Add(v.Key.ID, v.Vec); err != nil {
			return saved, err
		}
		e.idxMu.Lock()
		e.heads[v.Key] = v.Version
		e.idxMu.Unlock()
		saved++
	}
	return saved, nil
}

// messages returns the current state of a conversation's messages in the
// order they were sent, from its first maxEmbedEvents events.
func (e *embedding) messages(ws, conv string) ([]crdt.Message, error) {
	var order []string
	state := map[string]crdt.Message{}
	var after uint64
	for read := 0; read < maxEmbedEvents; {
		evs, more, err := e.st.Events(ws, conv, after, min(1000, maxEmbedEvents-read))
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			if _, ok := state[ev.Message.ID]; !ok {
				order = append(order, ev.Message.ID)
			}
			state[ev.Message.ID] = ev.Message
			after = ev.Seq
		}
		read += len(evs)
		if !more || len(evs) == 0 {
			break
		}
	}
	out := make([]crdt.Message, 0, len(order))
	for _, id := range order {
		// An inbox change (a status, a tag, the visitor's context) is no
		// text of the conversation's.
		if m := state[id]; !m.IsDeleted() && m.Kind == "" && strings.TrimSpace(m.Body) != "" {
			out = append(out, m)
		}
	}
	return out, nil
}

// conversationText is what a conversation is embedded as: the visitor's
// messages first, since they say what it is about, then the agents'; the
// model reads its first 256 tokens.
func conversationText(msgs []crdt.Message) string {
	var b strings.Builder
	for _, visitor := range []bool{true, false} {
		for _, m := range msgs {
			if (m.Role == ident.Visitor) != visitor {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(m.Body)
			if b.Len() >= maxEmbedChars {
				return truncate(b.String(), maxEmbedChars)
			}
		}
	}
	return b.String()
}

// visitorTail is the text of the visitor's last few messages.
func visitorTail(msgs []crdt.Message, n int) string {
	var tail []string
	for i := len(msgs) - 1; i >= 0 && len(tail) < n; i-- {
		if msgs[i].Role == ident.Visitor {
			tail = append(tail, msgs[i].Body)
		}
	}
	slices.Reverse(tail)
	return truncate(strings.Join(tail, "\n"), maxEmbedChars)
}

func replyText(r store.Reply) string { return r.Title + "\n" + r.Body }

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// register exports the worker's counters.
func (e *embedding) register(reg *prometheus.Registry) {
	on := 0.0
	if e.on() {
		on = 1
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_embeddings_enabled", Help: "1 when similar conversations and suggestions work on this node.",
	}, func() float64 { return on }))
	if !e.on() {
		return
	}
	stat := func(name, help string, f func(embedder.WorkerStats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return f(e.worker.Stats()) }))
	}
	stat("parley_embeddings_pending", "Conversations waiting to be embedded.", func(s embedder.WorkerStats) float64 { return float64(s.Pending) })
	// Running totals are counters, named _total.
	total := func(name, help string, f func(embedder.WorkerStats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return f(e.worker.Stats()) }))
	}
	total("parley_embeddings_embedded_total", "Conversation vectors computed since start.", func(s embedder.WorkerStats) float64 { return float64(s.Embedded) })
	total("parley_embeddings_dropped_total", "Changes not queued because the worker's queue was full.", func(s embedder.WorkerStats) float64 { return float64(s.Dropped) })
	total("parley_embeddings_failed_total", "Conversations whose embedding failed.", func(s embedder.WorkerStats) float64 { return float64(s.Failed) })
}

// embedFlags declares the embedding flags.
func embedFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Embedder, "embedder", envFor("embedder", "auto"), `similar conversations and suggested replies: "auto" (on when the model is installed) or "off"`)
	fs.StringVar(&c.ModelDir, "model-dir", "", "all-MiniLM-L6-v2 directory (default: $PARLEY_MODEL_DIR, else the `make embedder-assets` cache)")
	fs.StringVar(&c.ORTLib, "ort-lib", "", "ONNX Runtime shared library (default: $PARLEY_ORT_LIB, else the `make embedder-assets` cache)")
	fs.IntVar(&c.EmbedThreads, "embed-threads", 1, "ONNX Runtime threads per model run")
	fs.DurationVar(&c.EmbedDebounce, "embed-debounce", 2*time.Second, "quiet time before a changed conversation is embedded again")
}

func (c *Config) embedDefaults() {
	if c.Embedder == "" {
		c.Embedder = "auto"
	}
	if c.EmbedThreads == 0 {
		c.EmbedThreads = 1
	}
	if c.EmbedDebounce == 0 {
		c.EmbedDebounce = 2 * time.Second
	}
}

func (c *Config) validateEmbed() []error {
	var errs []error
	switch c.Embedder {
	case "", "auto", embedderOff:
	default:
		errs = append(errs, fmt.Errorf("embedder: %q is not auto or off", c.Embedder))
	}
	if c.EmbedThreads < 0 || c.EmbedThreads > 64 {
		errs = append(errs, fmt.Errorf("embed-threads: %d is not 1..64", c.EmbedThreads))
	}
	if c.EmbedDebounce < 0 || c.EmbedDebounce > time.Hour {
		errs = append(errs, fmt.Errorf("embed-debounce: %v is not 0..1h", c.EmbedDebounce))
	}
	return errs
}

// repliesFromPeer keeps the saved-reply index in step with replies another
// node's signal changed here: tombstones leave it, new versions are
// embedded and enter it.
func (e *embedding) repliesFromPeer(ws string, applied []store.Reply) {
	if !e.on() {
		return
	}
	for _, r := range applied {
		if r.Deleted {
			if x := e.lookup(e.replies, ws); x != nil {
				x.Remove(r.ID)
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), agentapi.EmbedTimeout)
		vecs, err := e.enc.Embed(ctx, []string{replyText(r)})
		cancel()
		if err != nil {
			e.log.Warn("saved reply from a peer not embedded; it is at the next start", "err", err)
			continue
		}
		e.replyIndex(ws).Add(r.ID, vecs[0])
	}
}

// agentEmbeddings is the embedding feature as the agents' API sees it.
type agentEmbeddings struct{ e *embedding }

func (a agentEmbeddings) Off() (string, bool) {
	switch {
	case a.e.on():
		return "", false
	case a.e != nil:
		return a.e.off, true
	}
	return "not started", true
}

func (a agentEmbeddings) Dim() int     { return a.e.enc.Dim() }
func (a agentEmbeddings) Pending() int { return a.e.worker.Stats().Pending }

func (a agentEmbeddings) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	return a.e.enc.Embed(ctx, texts)
}

func (a agentEmbeddings) Conversations(ws string) agentapi.Index {
	return orNil(a.e.lookup(a.e.convs, ws))
}

func (a agentEmbeddings) Replies(ws string) agentapi.Index {
	return orNil(a.e.lookup(a.e.replies, ws))
}

func (a agentEmbeddings) ReplyIndex(ws string) agentapi.Index { return a.e.replyIndex(ws) }

func (a agentEmbeddings) ConversationText(ws, conv string) (string, error) {
	msgs, err := a.e.messages(ws, conv)
	if err != nil {
		return "", err
	}
	return conversationText(msgs), nil
}

func (a agentEmbeddings) VisitorTail(ws, conv string, n int) (string, error) {
	msgs, err := a.e.messages(ws, conv)
	if err != nil {
		return "", err
	}
	return visitorTail(msgs, n), nil
}

func (a agentEmbeddings) ReplyText(r store.Reply) string { return replyText(r) }

// orNil is an index as an agentapi.Index: nil when there is none.
func orNil(x *embedder.Index) agentapi.Index {
	if x == nil {
		return nil
	}
	return x
}
