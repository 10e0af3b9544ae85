package embedder

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func embedOne(t *testing.T, e *Embedder, s string) []float32 {
	t.Helper()
	v, err := e.Embed(context.Background(), []string{s})
	if err != nil {
		t.Fatal(err)
	}
	return v[0]
}

func maxAbsDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// The published sentence-transformers/all-MiniLM-L6-v2 embedding of this
// sentence starts 0.0677, 0.0635, 0.0488, 0.0793, 0.0374.
func TestReferenceSentence(t *testing.T) {
	e := sharedEmbedder(t)
	if e.Dim() != 384 {
		t.Fatalf("Dim = %d, want 384", e.Dim())
	}
	v := embedOne(t, e, "This is an example sentence")
	want := []float32{0.0677, 0.0635, 0.0488, 0.0793, 0.0374}
	for i, w := range want {
		if math.Abs(float64(v[i]-w)) > 1e-3 {
			t.Errorf("v[%d] = %.5f, want %.4f ± 1e-3 (got start %v)", i, v[i], w, v[:5])
		}
	}
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	if math.Abs(n-1) > 1e-5 {
		t.Errorf("|v|² = %v, want 1", n)
	}
}

// TestGoldenVectors compares whole vectors with Python onnxruntime + numpy
// pooling (testdata/gen_golden.py), including a text truncated at 256 tokens.
func TestGoldenVectors(t *testing.T) {
	e := sharedEmbedder(t)
	var golden struct {
		Vectors []struct {
			Text   string    `json:"text"`
			Vector []float32 `json:"vector"`
		} `json:"vectors"`
	}
	readJSON(t, "vectors_golden.json", &golden)
	if len(golden.Vectors) < 5 {
		t.Fatalf("only %d golden vectors", len(golden.Vectors))
	}
	texts := make([]string, len(golden.Vectors))
	for i, g := range golden.Vectors {
		texts[i] = g.Text
	}
	got, err := e.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range golden.Vectors {
		if d := maxAbsDiff(got[i], g.Vector); d > 1e-5 {
			t.Errorf("%.40q: max |Δ| = %.2g, want ≤ 1e-5", g.Text, d)
		}
		if c := Cosine(got[i], g.Vector); c < 0.99999 {
			t.Errorf("%.40q: cosine to golden %.6f", g.Text, c)
		}
	}
}

func TestParaphrases(t *testing.T) {
	e := sharedEmbedder(t)
	v, err := e.Embed(context.Background(), []string{
		"How do I reset my password?",
		"I forgot my password, how can I change it?",
		"The weather is nice today",
		"Can you help me change the password of my account?",
	})
	if err != nil {
		t.Fatal(err)
	}
	para, unrelated, para2 := Cosine(v[0], v[1]), Cosine(v[0], v[2]), Cosine(v[0], v[3])
	t.Logf("paraphrase %.3f, paraphrase %.3f, unrelated %.3f", para, para2, unrelated)
	if para <= 0.7 || para2 <= 0.7 {
		t.Errorf("paraphrase similarity %.3f / %.3f, want > 0.7", para, para2)
	}
	if unrelated >= 0.3 {
		t.Errorf("unrelated similarity %.3f, want < 0.3", unrelated)
	}
}

func varied(n int) []string {
	base := []string{
		"hi", "Where is my order #1234?", "Can I get a refund for the blue jacket I bought last week?",
		"Thanks!", "The app crashes when I upload a photo larger than 10 MB on Android 14.",
		"¿Dónde está mi pedido?", "我的订单在哪里？", "ok 👍",
		strings.Repeat("This message is very long and keeps going. ", 30),
	}
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s (%d)", base[i%len(base)], i)
	}
	return out
}

// Batching pads texts to the batch's longest and reorders by length; each
// vector must still equal the text embedded alone.
func TestBatchEqualsSingle(t *testing.T) {
	e := newEmbedder(t, Config{MaxBatch: 8})
	texts := varied(27)
	batched, err := e.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range texts {
		if d := maxAbsDiff(batched[i], embedOne(t, e, s)); d > 2e-5 {
			t.Errorf("%.30q: batched vs single max |Δ| = %.2g", s, d)
		}
	}
}

func TestThreadsAgree(t *testing.T) {
	e1 := sharedEmbedder(t)
	e2 := newEmbedder(t, Config{Threads: 2, MaxBatch: 4})
	texts := varied(10)
	a, err := e1.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e2.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range texts {
		if d := maxAbsDiff(a[i], b[i]); d > 2e-5 {
			t.Errorf("text %d: 1 vs 2 threads max |Δ| = %.2g", i, d)
		}
	}
}

func TestConcurrentEmbed(t *testing.T) {
	e := sharedEmbedder(t)
	want := embedOne(t, e, "concurrent use")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for range 3 {
				v, err := e.Embed(context.Background(), []string{"concurrent use", "other text"})
				if err != nil {
					errs <- err
					return
				}
				if d := maxAbsDiff(v[0], want); d > 2e-5 {
					errs <- fmt.Errorf("concurrent result differs by %g", d)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestEmbedEdgeCases(t *testing.T) {
	e := sharedEmbedder(t)
	v, err := e.Embed(context.Background(), nil)
	if err != nil || len(v) != 0 {
		t.Fatalf("Embed(nil) = %v, %v", v, err)
	}
	v, err = e.Embed(context.Background(), []string{"", "   ", "\x00"})
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range v {
		if len(x) != 384 || math.IsNaN(float64(x[0])) {
			t.Errorf("vector %d: len %d, x[0] %v", i, len(x), x[0])
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Embed(ctx, []string{"cancelled"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Embed with cancelled context: %v, want context.Canceled", err)
	}
	// A deadline stops a run in flight (ONNX Runtime's terminate flag).
	long := make([]string, 32)
	for i := range long {
		long[i] = strings.Repeat("a rather long message to embed ", 40)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := e.Embed(ctx, long); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Embed past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancelled Embed took %v", d)
	}
	if _, err := e.Embed(context.Background(), []string{"still works"}); err != nil {
		t.Errorf("Embed after a cancelled run: %v", err)
	}
}

func TestClose(t *testing.T) {
	e := newEmbedder(t, Config{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := e.Embed(context.Background(), []string{"x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Embed after Close: %v, want ErrClosed", err)
	}
}

func checkUnavailable(t *testing.T, err error, mention string) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	msg := err.Error()
	t.Log(msg)
	if !strings.Contains(msg, mention) || !strings.Contains(msg, "make embedder-assets") {
		t.Fatalf("message %q should name %q and say `make embedder-assets`", msg, mention)
	}
}

// Needs no assets: a node without the library gets ErrUnavailable.
func TestUnavailableLibrary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	_, err := New(Config{LibraryPath: missing, ModelDir: t.TempDir()})
	checkUnavailable(t, err, missing)

	// Defaults come from the environment.
	t.Setenv(EnvLibrary, missing)
	_, err = New(Config{ModelDir: t.TempDir()})
	checkUnavailable(t, err, missing)
}

func TestUnavailableModel(t *testing.T) {
	lib, dir := assets(t)
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := New(Config{LibraryPath: lib, ModelDir: missing})
	checkUnavailable(t, err, missing)

	// A model without a tokenizer.
	noTok := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "model.onnx"), filepath.Join(noTok, "model.onnx")); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{LibraryPath: lib, ModelDir: noTok})
	checkUnavailable(t, err, "tokenizer")

	// A file that is no ONNX model.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "model.onnx"), []byte("not a model"), 0o644)
	if err := os.Symlink(filepath.Join(dir, "tokenizer.json"), filepath.Join(bad, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{LibraryPath: lib, ModelDir: bad})
	checkUnavailable(t, err, "model")
}

// A file that is no ONNX Runtime library: checked in a child process, since
// the parent may already have loaded the real runtime (one per process).
func TestUnavailableBadLibrary(t *testing.T) {
	if os.Getenv("EMBEDDER_TEST_BAD_LIB") == "1" {
		bad := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
		os.WriteFile(bad, []byte("not a shared library"), 0o644)
		_, err := New(Config{LibraryPath: bad, ModelDir: os.Getenv("EMBEDDER_TEST_MODEL_DIR")})
		checkUnavailable(t, err, bad)
		return
	}
	_, dir := assets(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnavailableBadLibrary$", "-test.v")
	cmd.Env = append(os.Environ(), "EMBEDDER_TEST_BAD_LIB=1", "EMBEDDER_TEST_MODEL_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
