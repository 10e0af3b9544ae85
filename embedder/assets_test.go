package embedder

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// assets returns the ONNX Runtime library and the model directory for tests
// that need them: $PARLEY_ORT_LIB and $PARLEY_MODEL_DIR, or when unset the
// defaults `make embedder-assets` installs. Missing assets fail the test
// (they never pass silently) unless PARLEY_SKIP_EMBEDDER=1, which skips.
func assets(tb testing.TB) (lib, modelDir string) {
	tb.Helper()
	if os.Getenv("PARLEY_SKIP_EMBEDDER") == "1" {
		tb.Skip("PARLEY_SKIP_EMBEDDER=1: skipping a test that needs the embedder assets")
	}
	lib, modelDir = os.Getenv(EnvLibrary), os.Getenv(EnvModelDir)
	if lib == "" {
		lib = DefaultLibraryPath()
	}
	if modelDir == "" {
		modelDir = DefaultModelDir()
	}
	var missing []string
	if st, err := os.Stat(lib); err != nil || st.IsDir() {
		missing = append(missing, EnvLibrary+"="+lib)
	}
	if _, err := os.Stat(filepath.Join(modelDir, "model.onnx")); err != nil {
		missing = append(missing, EnvModelDir+"="+modelDir+" (model.onnx)")
	}
	if _, err := os.Stat(filepath.Join(modelDir, "tokenizer.json")); err != nil {
		missing = append(missing, EnvModelDir+"="+modelDir+" (tokenizer.json)")
	}
	if len(missing) > 0 {
		tb.Fatalf("embedder assets missing: %v; run `make embedder-assets` (which exports "+
			"PARLEY_ORT_LIB and PARLEY_MODEL_DIR to make's recipes), or set "+
			"PARLEY_SKIP_EMBEDDER=1 to skip these tests", missing)
	}
	return lib, modelDir
}

var (
	sharedOnce sync.Once
	shared     *Embedder
	sharedErr  error
)

// sharedEmbedder is one Embedder (1 thread, default batch) for the tests that
// do not care about its configuration.
func sharedEmbedder(tb testing.TB) *Embedder {
	tb.Helper()
	lib, dir := assets(tb)
	sharedOnce.Do(func() { shared, sharedErr = New(Config{LibraryPath: lib, ModelDir: dir}) })
	if sharedErr != nil {
		tb.Fatalf("New: %v", sharedErr)
	}
	return shared
}

func newEmbedder(tb testing.TB, cfg Config) *Embedder {
	tb.Helper()
	cfg.LibraryPath, cfg.ModelDir = assets(tb)
	e, err := New(cfg)
	if err != nil {
		tb.Fatalf("New(%+v): %v", cfg, err)
	}
	tb.Cleanup(func() { e.Close() })
	return e
}

func readJSON(tb testing.TB, name string, v any) {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
}
