// Package embedder turns text into sentence embeddings on the node itself:
// all-MiniLM-L6-v2 run through ONNX Runtime (github.com/yalue/onnxruntime_go)
// behind a BERT WordPiece tokenizer, mean pooling and L2 normalisation, 384
// dimensions. It also holds an in-memory top-k Index for cosine search; when
// the runtime library or the model files are missing New returns
// ErrUnavailable, so the caller can serve chat with the feature off.
package embedder

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ErrUnavailable is wrapped by New's error when the ONNX Runtime library or
// the model files cannot be found or loaded; errors.Is(err, ErrUnavailable)
// tells "feature off on this node" from a bug. The message says what is
// missing.
var ErrUnavailable = errors.New("embeddings unavailable")

// ErrClosed is returned by Embed after Close.
var ErrClosed = errors.New("embedder closed")

// Versions of the assets that `make embedder-assets` installs
// (embedder/assets.mk); DefaultLibraryPath and DefaultModelDir point there.
const (
	// ORTVersion is the ONNX Runtime release whose C API (version 24)
	// github.com/yalue/onnxruntime_go v1.27.0 is compiled against.
	ORTVersion = "1.24.1"
	// ModelName is the directory name of the model in the asset cache.
	ModelName = "all-MiniLM-L6-v2-lc4j-1.19.0-beta29"
)

// Env names read when Config leaves a path empty.
const (
	EnvLibrary  = "PARLEY_ORT_LIB"
	EnvModelDir = "PARLEY_MODEL_DIR"
)

// AssetHint is what to do when assets are missing.
const AssetHint = "run `make embedder-assets`, or set " + EnvLibrary + " and " + EnvModelDir

// Config configures New. Every zero value has a default.
type Config struct {
	// LibraryPath is the ONNX Runtime shared library (libonnxruntime.so.1 of
	// release 1.24.x or later). Empty: $PARLEY_ORT_LIB, else
	// DefaultLibraryPath().
	LibraryPath string
	// ModelDir holds model.onnx (or onnx/model.onnx) and tokenizer.json or
	// vocab.txt. Empty: $PARLEY_MODEL_DIR, else DefaultModelDir().
	ModelDir string
	// Threads is ONNX Runtime's intra-op thread count for one model run.
	// Zero: 1, which leaves the other cores to chat traffic.
	Threads int
	// MaxBatch is the most texts given to one model run; Embed splits longer
	// inputs. Zero: 32.
	MaxBatch int
	// MaxTokens truncates each text, [CLS] and [SEP] included. Zero:
	// DefaultMaxTokens (256, the model's max_seq_length).
	MaxTokens int
}

// CacheDir is where `make embedder-assets` puts the assets by default:
// $HOME/.cache/parley/embedder.
func CacheDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		home = "."
	}
	return filepath.Join(home, ".cache", "parley", "embedder")
}

// DefaultLibraryPath is the ONNX Runtime library in CacheDir.
func DefaultLibraryPath() string {
	arch := runtime.GOARCH
	if arch == "amd64" {
		arch = "x64"
	}
	return filepath.Join(CacheDir(), "onnxruntime-"+ORTVersion+"-linux-"+arch, "libonnxruntime.so.1")
}

// DefaultModelDir is the all-MiniLM-L6-v2 directory in CacheDir.
func DefaultModelDir() string { return filepath.Join(CacheDir(), ModelName) }

func (c Config) withDefaults() Config {
	if c.LibraryPath == "" {
		c.LibraryPath = os.Getenv(EnvLibrary)
	}
	if c.LibraryPath == "" {
		c.LibraryPath = DefaultLibraryPath()
	}
	if c.ModelDir == "" {
		c.ModelDir = os.Getenv(EnvModelDir)
	}
	if c.ModelDir == "" {
		c.ModelDir = DefaultModelDir()
	}
	if c.Threads <= 0 {
		c.Threads = 1
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 32
	}
	if c.MaxTokens <= 0 {
		c.MaxTokens = DefaultMaxTokens
	}
	return c
}

// Embedder computes sentence embeddings. It is safe for concurrent use; model
// runs are serialised, so one Embedder never uses more than Config.Threads
// cores.
type Embedder struct {
	cfg       Config
	tok       *Tokenizer
	modelPath string
	inputs    []string // input_ids, attention_mask[, token_type_ids]
	output    string
	pooled    bool // output is already one vector per text
	dim       int

	mu      sync.Mutex // guards everything below and serialises runs
	session *ort.DynamicAdvancedSession
	closed  bool
	ids     []int64 // reused run buffers
	mask    []int64
	types   []int64
	out     []float32
}

// ORT's environment is one per process: it is created by the first New and
// kept for the life of the process.
var (
	ortMu   sync.Mutex
	ortPath string
)

func unavailable(format string, args ...any) error {
	return fmt.Errorf("%w: %w (%s)", ErrUnavailable, fmt.Errorf(format, args...), AssetHint)
}

func initORT(lib string) error {
	ortMu.Lock()
	defer ortMu.Unlock()
	abs, err := filepath.Abs(lib)
	if err != nil {
		abs = lib
	}
	if ort.IsInitialized() {
		if ortPath != abs {
			return fmt.Errorf("%w: ONNX Runtime already loaded from %s in this process, cannot also load %s", ErrUnavailable, ortPath, abs)
		}
		return nil
	}
	ort.SetSharedLibraryPath(abs)
	if err := ort.InitializeEnvironment(); err != nil {
		return unavailable("load ONNX Runtime %s (need release %s or later): %w", abs, ORTVersion, err)
	}
	ortPath = abs
	return nil
}

// New loads ONNX Runtime and the model. When the library or the model files
// are missing or cannot be loaded, the error wraps ErrUnavailable and says
// which file and how to get it.
func New(cfg Config) (*Embedder, error) {
	cfg = cfg.withDefaults()
	if st, err := os.Stat(cfg.LibraryPath); err != nil || st.IsDir() {
		return nil, unavailable("ONNX Runtime library %s not found", cfg.LibraryPath)
	}
	modelPath := filepath.Join(cfg.ModelDir, "model.onnx")
	if _, err := os.Stat(modelPath); err != nil {
		alt := filepath.Join(cfg.ModelDir, "onnx", "model.onnx")
		if _, err2 := os.Stat(alt); err2 != nil {
			return nil, unavailable("model file %s not found", modelPath)
		}
		modelPath = alt
	}
	tok, err := LoadTokenizer(cfg.ModelDir, cfg.MaxTokens)
	if err != nil {
		return nil, unavailable("tokenizer: %w", err)
	}
	if err := initORT(cfg.LibraryPath); err != nil {
		return nil, err
	}
	e := &Embedder{cfg: cfg, tok: tok, modelPath: modelPath}
	if err := e.inspect(); err != nil {
		return nil, unavailable("model %s: %w", modelPath, err)
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(cfg.Threads); err != nil {
		return nil, err
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, err
	}
	// Idle pool threads must not spin: the cores belong to chat traffic.
	if err := opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		return nil, err
	}
	e.session, err = ort.NewDynamicAdvancedSession(modelPath, e.inputs, []string{e.output}, opts)
	if err != nil {
		return nil, unavailable("model %s: %w", modelPath, err)
	}
	// One run now, so a model that loads but cannot run fails here.
	if _, err := e.Embed(context.Background(), []string{"warm up"}); err != nil {
		e.Close()
		return nil, unavailable("model %s: test run: %w", modelPath, err)
	}
	return e, nil
}

// inspect reads the model's input and output names and the embedding size.
func (e *Embedder) inspect() error {
	ins, outs, err := ort.GetInputOutputInfo(e.modelPath)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, in := range ins {
		have[in.Name] = true
	}
	for _, n := range []string{"input_ids", "attention_mask"} {
		if !have[n] {
			return fmt.Errorf("no input %q", n)
		}
	}
	e.inputs = []string{"input_ids", "attention_mask"}
	if have["token_type_ids"] {
		e.inputs = append(e.inputs, "token_type_ids")
	}
	if len(ins) != len(e.inputs) {
		return fmt.Errorf("unexpected inputs %v", ins)
	}
	var pick *ort.InputOutputInfo
	for _, want := range []string{"last_hidden_state", "token_embeddings", "sentence_embedding"} {
		for i := range outs {
			if outs[i].Name == want {
				pick = &outs[i]
				break
			}
		}
		if pick != nil {
			break
		}
	}
	if pick == nil && len(outs) > 0 {
		pick = &outs[0]
	}
	if pick == nil || pick.DataType != ort.TensorElementDataTypeFloat {
		return fmt.Errorf("no float32 output in %v", outs)
	}
	d := pick.Dimensions
	switch len(d) {
	case 3:
	case 2:
		e.pooled = true
	default:
		return fmt.Errorf("output %q has shape %v, want [batch, seq, dim] or [batch, dim]", pick.Name, d)
	}
	if d[len(d)-1] <= 0 {
		return fmt.Errorf("output %q has no fixed embedding size: %v", pick.Name, d)
	}
	e.output, e.dim = pick.Name, int(d[len(d)-1])
	return nil
}

// Dim is the embedding size (384 for all-MiniLM-L6-v2).
func (e *Embedder) Dim() int { return e.dim }

// Tokenizer is the embedder's tokenizer.
func (e *Embedder) Tokenizer() *Tokenizer { return e.tok }

// Config is the configuration in force, defaults filled in.
func (e *Embedder) Config() Config { return e.cfg }

// Embed returns one unit-length vector per text, in order. Texts are
// tokenised, sorted by length and run in batches of at most MaxBatch padded
// to the batch's longest text; the context is checked between batches and
// cancels a running batch.
func (e *Embedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	if len(texts) == 0 {
		return out, ctx.Err()
	}
	toks := make([][]int64, len(texts))
	order := make([]int, len(texts))
	for i, t := range texts {
		toks[i] = e.tok.Encode(t)
		order[i] = i
	}
	if len(texts) > e.cfg.MaxBatch {
		slices.SortStableFunc(order, func(a, b int) int { return len(toks[a]) - len(toks[b]) })
	}
	batch := make([][]int64, 0, e.cfg.MaxBatch)
	for start := 0; start < len(order); start += e.cfg.MaxBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		idx := order[start:min(start+e.cfg.MaxBatch, len(order))]
		batch = batch[:0]
		for _, i := range idx {
			batch = append(batch, toks[i])
		}
		vecs, err := e.run(ctx, batch)
		if err != nil {
			return nil, err
		}
		for j, i := range idx {
			out[i] = vecs[j]
		}
	}
	return out, nil
}

// run pads one batch, runs the model and pools.
func (e *Embedder) run(ctx context.Context, batch [][]int64) ([][]float32, error) {
	b, l := len(batch), 0
	for _, t := range batch {
		l = max(l, len(t))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	n := b * l
	e.ids = grow(e.ids, n)
	e.mask = grow(e.mask, n)
	e.types = grow(e.types, n)
	padBatch(batch, l, e.tok.pad, e.ids, e.mask)
	clear(e.types)
	outN := b * e.dim
	if !e.pooled {
		outN *= l
	}
	e.out = grow(e.out, outN)
	if err := e.runModel(ctx, b, l, e.ids, e.mask, e.types, e.out); err != nil {
		return nil, err
	}
	return poolBatch(e.out, e.mask, b, l, e.dim, e.pooled), nil
}

// padBatch writes batch into [len(batch), l] ids and attention mask.
func padBatch(batch [][]int64, l int, pad int64, ids, mask []int64) {
	for i, t := range batch {
		row, mrow := ids[i*l:(i+1)*l], mask[i*l:(i+1)*l]
		copy(row, t)
		for j := range row {
			if j < len(t) {
				mrow[j] = 1
			} else {
				row[j], mrow[j] = pad, 0
			}
		}
	}
}

// poolBatch turns the model output (b×l×dim token vectors, or b×dim when
// pooled) into b unit vectors: mean over the unmasked tokens, L2 normalised.
func poolBatch(out []float32, mask []int64, b, l, dim int, pooled bool) [][]float32 {
	vecs := make([][]float32, b)
	flat := make([]float32, b*dim)
	for i := range vecs {
		v := flat[i*dim : (i+1)*dim : (i+1)*dim]
		if pooled {
			copy(v, out[i*dim:])
		} else {
			meanPool(v, out[i*l*dim:(i+1)*l*dim], mask[i*l:(i+1)*l])
		}
		normalize(v)
		vecs[i] = v
	}
	return vecs
}

// runModel is one ONNX Runtime run on padded [b, l] inputs into out; the
// caller holds e.mu. ctx cancels the run in flight.
func (e *Embedder) runModel(ctx context.Context, b, l int, ids, mask, types []int64, out []float32) error {
	shape := ort.NewShape(int64(b), int64(l))
	var values []ort.Value
	defer func() {
		for _, v := range values {
			v.Destroy()
		}
	}()
	for _, data := range [][]int64{ids, mask, types}[:len(e.inputs)] {
		t, err := ort.NewTensor(shape, data)
		if err != nil {
			return err
		}
		values = append(values, t)
	}
	oshape := ort.NewShape(int64(b), int64(l), int64(e.dim))
	if e.pooled {
		oshape = ort.NewShape(int64(b), int64(e.dim))
	}
	ot, err := ort.NewTensor(oshape, out)
	if err != nil {
		return err
	}
	values = append(values, ot)
	var opts *ort.RunOptions
	if ctx.Done() != nil {
		if opts, err = ort.NewRunOptions(); err != nil {
			return err
		}
		defer opts.Destroy()
		done := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(done)
			opts.Terminate()
		})
		defer func() {
			if !stop() {
				<-done // Terminate is running: let it finish before Destroy
			}
		}()
	}
	err = e.session.RunWithOptions(values[:len(e.inputs)], values[len(e.inputs):], opts)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("onnxruntime run: %w", err)
	}
	return nil
}

// meanPool averages the rows of hidden ([l, dim]) whose mask is 1.
func meanPool(dst, hidden []float32, mask []int64) {
	dim := len(dst)
	var acc [1024]float64
	sum := acc[:0]
	if dim <= len(acc) {
		sum = acc[:dim]
	} else {
		sum = make([]float64, dim)
	}
	n := 0
	for j, m := range mask {
		if m == 0 {
			continue
		}
		n++
		row := hidden[j*dim : (j+1)*dim]
		for k, x := range row {
			sum[k] += float64(x)
		}
	}
	inv := 1 / math.Max(float64(n), 1e-9)
	for k := range dst {
		dst[k] = float32(sum[k] * inv)
	}
}

func normalize(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	inv := 1 / math.Sqrt(s)
	for i := range v {
		v[i] = float32(float64(v[i]) * inv)
	}
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// Close releases the model session. Embed returns ErrClosed afterwards. The
// process-wide ONNX Runtime environment stays loaded for later New calls.
func (e *Embedder) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.ids, e.mask, e.types, e.out = nil, nil, nil, nil
	if e.session != nil {
		return e.session.Destroy()
	}
	return nil
}
