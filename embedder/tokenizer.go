package embedder

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// DefaultMaxTokens is the sequence length all-MiniLM-L6-v2 was trained with
// (sentence-transformers' max_seq_length), [CLS] and [SEP] included.
const DefaultMaxTokens = 256

// Tokenizer is a BERT WordPiece tokenizer: the BasicTokenizer (clean text,
// CJK characters as words, accent stripping, lowercasing, whitespace and
// punctuation splits) followed by greedy longest-match-first WordPiece with
// "##" continuations. It reproduces the token IDs of Hugging Face's
// tokenizers BertNormalizer + BertPreTokenizer + WordPiece, which is what
// sentence-transformers runs. A Tokenizer is immutable and safe for
// concurrent use.
type Tokenizer struct {
	words        map[string]int64 // pieces that start a word
	conts        map[string]int64 // continuation pieces, "##" prefix removed
	unk          int64
	cls          int64
	sep          int64
	pad          int64
	lowercase    bool
	stripAccents bool
	maxWordChars int
	maxTokens    int
}

// TokenizerOptions are the knobs of a BERT tokenizer; the zero value is BERT
// uncased (lowercase and strip accents) with DefaultMaxTokens.
type TokenizerOptions struct {
	Cased        bool // keep case and accents (BERT cased models)
	MaxTokens    int  // sequence length with [CLS] and [SEP]; 0 means DefaultMaxTokens
	MaxWordChars int  // longer words become [UNK]; 0 means 100
}

// LoadTokenizer reads the vocabulary of a model directory: tokenizer.json
// (Hugging Face format; its normalizer's lowercase and strip_accents settings
// and its WordPiece parameters are honoured) or, failing that, vocab.txt (one
// token a line, the line number is the ID, BERT uncased). maxTokens 0 means
// DefaultMaxTokens.
func LoadTokenizer(modelDir string, maxTokens int) (*Tokenizer, error) {
	tj := filepath.Join(modelDir, "tokenizer.json")
	if _, err := os.Stat(tj); err == nil {
		return loadTokenizerJSON(tj, maxTokens)
	}
	vt := filepath.Join(modelDir, "vocab.txt")
	f, err := os.Open(vt)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no tokenizer.json or vocab.txt in %s", modelDir)
		}
		return nil, err
	}
	defer f.Close()
	var vocab []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		vocab = append(vocab, strings.TrimRight(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", vt, err)
	}
	return NewTokenizer(vocab, TokenizerOptions{MaxTokens: maxTokens})
}

func loadTokenizerJSON(path string, maxTokens int) (*Tokenizer, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Normalizer *struct {
			Type         string `json:"type"`
			Lowercase    *bool  `json:"lowercase"`
			StripAccents *bool  `json:"strip_accents"`
		} `json:"normalizer"`
		Model struct {
			Type         string           `json:"type"`
			Vocab        map[string]int64 `json:"vocab"`
			UnkToken     string           `json:"unk_token"`
			Prefix       *string          `json:"continuing_subword_prefix"`
			MaxWordChars int              `json:"max_input_chars_per_word"`
		} `json:"model"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if doc.Model.Type != "WordPiece" {
		return nil, fmt.Errorf("%s: model type %q, want WordPiece", path, doc.Model.Type)
	}
	if doc.Model.Prefix != nil && *doc.Model.Prefix != "##" {
		return nil, fmt.Errorf("%s: continuing_subword_prefix %q, want ##", path, *doc.Model.Prefix)
	}
	if doc.Model.UnkToken != "" && doc.Model.UnkToken != "[UNK]" {
		return nil, fmt.Errorf("%s: unk_token %q, want [UNK]", path, doc.Model.UnkToken)
	}
	vocab := make([]string, len(doc.Model.Vocab))
	for tok, id := range doc.Model.Vocab {
		if id < 0 || id >= int64(len(vocab)) || vocab[id] != "" {
			return nil, fmt.Errorf("%s: vocabulary IDs are not 0..%d", path, len(vocab)-1)
		}
		vocab[id] = tok
	}
	t, err := NewTokenizer(vocab, TokenizerOptions{MaxTokens: maxTokens, MaxWordChars: doc.Model.MaxWordChars})
	if err != nil {
		return nil, err
	}
	if n := doc.Normalizer; n != nil && n.Type == "BertNormalizer" {
		if n.Lowercase != nil {
			t.lowercase = *n.Lowercase
		}
		// Hugging Face: strip_accents null follows lowercase.
		t.stripAccents = t.lowercase
		if n.StripAccents != nil {
			t.stripAccents = *n.StripAccents
		}
	}
	return t, nil
}

// NewTokenizer builds a tokenizer from a vocabulary in ID order; it must hold
// [UNK], [CLS], [SEP] and [PAD].
func NewTokenizer(vocab []string, opt TokenizerOptions) (*Tokenizer, error) {
	t := &Tokenizer{
		words:        make(map[string]int64, len(vocab)),
		conts:        make(map[string]int64, len(vocab)/4),
		lowercase:    !opt.Cased,
		stripAccents: !opt.Cased,
		maxWordChars: opt.MaxWordChars,
		maxTokens:    opt.MaxTokens,
	}
	if t.maxWordChars <= 0 {
		t.maxWordChars = 100
	}
	if t.maxTokens <= 0 {
		t.maxTokens = DefaultMaxTokens
	}
	if t.maxTokens < 2 {
		return nil, fmt.Errorf("MaxTokens %d leaves no room for [CLS] and [SEP]", t.maxTokens)
	}
	for i, tok := range vocab {
		if c, ok := strings.CutPrefix(tok, "##"); ok && c != "" {
			if _, dup := t.conts[c]; !dup {
				t.conts[c] = int64(i)
			}
			continue
		}
		if _, dup := t.words[tok]; !dup {
			t.words[tok] = int64(i)
		}
	}
	for _, s := range []struct {
		name string
		id   *int64
	}{{"[UNK]", &t.unk}, {"[CLS]", &t.cls}, {"[SEP]", &t.sep}, {"[PAD]", &t.pad}} {
		id, ok := t.words[s.name]
		if !ok {
			return nil, fmt.Errorf("vocabulary has no %s token", s.name)
		}
		*s.id = id
	}
	return t, nil
}

// MaxTokens is the longest sequence Encode returns, [CLS] and [SEP] included.
func (t *Tokenizer) MaxTokens() int { return t.maxTokens }

// PadID is the ID of [PAD].
func (t *Tokenizer) PadID() int64 { return t.pad }

// Encode returns the token IDs of text: [CLS], the WordPiece IDs truncated to
// MaxTokens-2, [SEP].
func (t *Tokenizer) Encode(text string) []int64 {
	ids := make([]int64, 1, 16)
	ids[0] = t.cls
	limit := t.maxTokens - 1
	t.words2pieces(t.normalize(text), func(id int64) bool {
		ids = append(ids, id)
		return len(ids) < limit
	})
	return append(ids, t.sep)
}

// Tokens returns the WordPiece tokens of text without [CLS], [SEP] or
// truncation, for debugging and tests.
func (t *Tokenizer) Tokens(text string) []string {
	byID := make(map[int64]string, len(t.words)+len(t.conts))
	for w, id := range t.words {
		byID[id] = w
	}
	for w, id := range t.conts {
		byID[id] = "##" + w
	}
	var out []string
	t.words2pieces(t.normalize(text), func(id int64) bool {
		out = append(out, byID[id])
		return true
	})
	return out
}

// normalize applies the BertNormalizer: clean text (drop NUL, U+FFFD and
// control/format/private-use characters; every whitespace becomes a space),
// put spaces around CJK ideographs, strip accents (NFD, drop Mn), lowercase.
// The order is Hugging Face's, so final sigma lowercases to σ as it does there.
func (t *Tokenizer) normalize(text string) string {
	ascii := true
	for i := 0; i < len(text); i++ {
		if text[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	var b strings.Builder
	b.Grow(len(text) + 8)
	if ascii {
		for i := 0; i < len(text); i++ {
			c := text[i]
			switch {
			case c == '\t' || c == '\n' || c == '\r' || c == ' ':
				b.WriteByte(' ')
			case c < 0x20 || c == 0x7f:
				// control: dropped
			case t.lowercase && 'A' <= c && c <= 'Z':
				b.WriteByte(c + 'a' - 'A')
			default:
				b.WriteByte(c)
			}
		}
		return b.String()
	}
	for _, r := range text {
		switch {
		case r == 0 || r == utf8.RuneError:
		case r == '\t' || r == '\n' || r == '\r':
			b.WriteByte(' ')
		case unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co): // not Cn, as in Hugging Face
		case unicode.Is(unicode.White_Space, r):
			b.WriteByte(' ')
		case isCJK(r):
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	s := b.String()
	if !t.stripAccents && !t.lowercase {
		return s
	}
	if t.stripAccents {
		s = norm.NFD.String(s)
	}
	b.Reset()
	b.Grow(len(s))
	for _, r := range s {
		if t.stripAccents && unicode.Is(unicode.Mn, r) {
			continue
		}
		if t.lowercase {
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isCJK reports whether r is in the CJK Unified Ideographs blocks that BERT
// splits into single-character words (Hangul, Hiragana and Katakana are not).
func isCJK(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) ||
		(r >= 0x3400 && r <= 0x4DBF) ||
		(r >= 0x20000 && r <= 0x2A6DF) ||
		(r >= 0x2A700 && r <= 0x2B73F) ||
		(r >= 0x2B740 && r <= 0x2B81F) ||
		(r >= 0x2B820 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) ||
		(r >= 0x2F800 && r <= 0x2FA1F)
}

// isPunct is BERT's punctuation: all ASCII non-alphanumeric printable
// characters ($, +, ^, ... included) and Unicode category P.
func isPunct(r rune) bool {
	if r < utf8.RuneSelf {
		return (r >= 33 && r <= 47) || (r >= 58 && r <= 64) || (r >= 91 && r <= 96) || (r >= 123 && r <= 126)
	}
	return unicode.IsPunct(r)
}

// words2pieces splits normalised text into words at spaces and around each
// punctuation character, and emits each word's WordPiece IDs until emit
// returns false.
func (t *Tokenizer) words2pieces(s string, emit func(int64) bool) {
	start := -1
	for i, r := range s {
		if r == ' ' || isPunct(r) {
			if start >= 0 {
				if !t.wordPiece(s[start:i], emit) {
					return
				}
				start = -1
			}
			if r != ' ' && !t.wordPiece(s[i:i+utf8.RuneLen(r)], emit) {
				return
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		t.wordPiece(s[start:], emit)
	}
}

// wordPiece emits the greedy longest-match-first pieces of one word, or
// [UNK] when the word is longer than maxWordChars or cannot be covered.
func (t *Tokenizer) wordPiece(w string, emit func(int64) bool) bool {
	if utf8.RuneCountInString(w) > t.maxWordChars {
		return emit(t.unk)
	}
	if id, ok := t.words[w]; ok { // common case: the whole word is a piece
		return emit(id)
	}
	var buf [32]int64
	pieces := buf[:0]
	dict := t.words
	for start := 0; start < len(w); {
		end := len(w)
		found := false
		for end > start {
			if id, ok := dict[w[start:end]]; ok {
				pieces = append(pieces, id)
				found = true
				break
			}
			// step back one rune
			_, size := utf8.DecodeLastRuneInString(w[start:end])
			end -= size
		}
		if !found {
			return emit(t.unk)
		}
		start = end
		dict = t.conts
	}
	for _, id := range pieces {
		if !emit(id) {
			return false
		}
	}
	return true
}
