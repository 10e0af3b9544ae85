package embedder

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type tokenCase struct {
	Text             string  `json:"text"`
	IDs              []int64 `json:"ids"`
	PythonBertAgrees bool    `json:"python_bert_agrees"`
	PythonBertIDs    []int64 `json:"python_bert_ids"`
}

// TestTokenizerGolden compares with the IDs that Hugging Face tokenizers
// gives for the same tokenizer.json (testdata/gen_golden.py made them).
func TestTokenizerGolden(t *testing.T) {
	_, dir := assets(t)
	tok, err := LoadTokenizer(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Meta struct {
			MaxTokens int `json:"max_tokens"`
		} `json:"meta"`
		Cases []tokenCase `json:"cases"`
	}
	readJSON(t, "tokens_golden.json", &golden)
	if len(golden.Cases) < 30 {
		t.Fatalf("only %d golden cases", len(golden.Cases))
	}
	if golden.Meta.MaxTokens != tok.MaxTokens() {
		t.Fatalf("golden made with max %d tokens, tokenizer has %d", golden.Meta.MaxTokens, tok.MaxTokens())
	}
	truncated := false
	for _, c := range golden.Cases {
		got := tok.Encode(c.Text)
		if !slices.Equal(got, c.IDs) {
			t.Errorf("Encode(%q)\n got %v\nwant %v\ntokens %q", c.Text, got, c.IDs, tok.Tokens(c.Text))
		}
		if len(c.IDs) == tok.MaxTokens() {
			truncated = true
		}
	}
	if !truncated {
		t.Error("no golden case reaches the truncation length")
	}
}

func smallVocab() []string {
	return []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
		"un", "##aff", "##able", "hello", ",", "!", "world", "a", "##a", "é", "e", "##ll", "he", "中", "$"}
}

func TestTokenizerWordPiece(t *testing.T) {
	tok, err := NewTokenizer(smallVocab(), TokenizerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"unaffable", []string{"un", "##aff", "##able"}},
		{"UnAffable!", []string{"un", "##aff", "##able", "!"}},
		{"Hello,world", []string{"hello", ",", "world"}},
		{"hell", []string{"he", "##ll"}},
		{"unaffablex", []string{"[UNK]"}}, // unmatched tail: whole word unknown
		{"É", []string{"e"}},              // accent stripped
		{"中中", []string{"中", "中"}},        // CJK split into characters
		{"$a", []string{"$", "a"}},        // ASCII symbols are BERT punctuation
		{strings.Repeat("a", 100), append([]string{"a"}, slices.Repeat([]string{"##a"}, 99)...)},
		{strings.Repeat("a", 101), []string{"[UNK]"}}, // longer than 100 characters
		{" \t\n", nil},
		{"a\x00\u200bb", []string{"[UNK]"}}, // NUL and zero-width space dropped: "ab" unmatched
	} {
		if got := tok.Tokens(c.in); !slices.Equal(got, c.want) {
			t.Errorf("Tokens(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	cased, err := NewTokenizer(smallVocab(), TokenizerOptions{Cased: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := cased.Tokens("Hello é"); !slices.Equal(got, []string{"[UNK]", "é"}) {
		t.Errorf("cased Tokens = %q", got)
	}
}

func TestTokenizerTruncation(t *testing.T) {
	tok, err := NewTokenizer(smallVocab(), TokenizerOptions{MaxTokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	got := tok.Encode("hello world hello world hello")
	want := []int64{2, 8, 11, 8, 3}
	if !slices.Equal(got, want) {
		t.Fatalf("Encode = %v, want %v", got, want)
	}
	if got := tok.Encode(""); !slices.Equal(got, []int64{2, 3}) {
		t.Fatalf("Encode(\"\") = %v", got)
	}
}

func TestLoadTokenizerVocabTxt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vocab.txt"), []byte(strings.Join(smallVocab(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadTokenizer(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("Unaffable"); !slices.Equal(got, []int64{2, 5, 6, 7, 3}) {
		t.Fatalf("Encode = %v", got)
	}
	if _, err := LoadTokenizer(t.TempDir(), 0); err == nil {
		t.Fatal("LoadTokenizer of an empty dir succeeded")
	}
	if _, err := NewTokenizer([]string{"a"}, TokenizerOptions{}); err == nil {
		t.Fatal("NewTokenizer without special tokens succeeded")
	}
}

// The real vocabulary as vocab.txt gives the same IDs as tokenizer.json.
func TestTokenizerVocabTxtMatchesJSON(t *testing.T) {
	_, dir := assets(t)
	fromJSON, err := LoadTokenizer(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	vocab := make([]string, len(fromJSON.words)+len(fromJSON.conts))
	for w, id := range fromJSON.words {
		vocab[id] = w
	}
	for w, id := range fromJSON.conts {
		vocab[id] = "##" + w
	}
	tmp := t.TempDir()
	if err := os.WriteFile(filepath.Join(tmp, "vocab.txt"), []byte(strings.Join(vocab, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fromTxt, err := LoadTokenizer(tmp, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"This is an example sentence", "Café déjà vu, naïve façade!", "東京は日本の首都です"} {
		if a, b := fromJSON.Encode(s), fromTxt.Encode(s); !slices.Equal(a, b) {
			t.Errorf("%q: json %v, vocab.txt %v", s, a, b)
		}
	}
}

func BenchmarkTokenize(b *testing.B) {
	_, dir := assets(b)
	tok, err := LoadTokenizer(dir, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range benchSentences {
			tok.Encode(s)
		}
	}
	b.ReportMetric(float64(b.N*len(benchSentences))/b.Elapsed().Seconds(), "sentences/s")
}
