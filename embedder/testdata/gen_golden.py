#!/usr/bin/env python3
"""Generates the golden files of package embedder's tests, once.

Not a run-time or test-time dependency: the Go tests only read the JSON files
this writes. Run it again only when the sentences or the model change:

    python3 -m venv /tmp/golden-venv
    /tmp/golden-venv/bin/pip install tokenizers==0.23.3 transformers==5.23.0 \
        onnxruntime==1.32.0 numpy==2.4.6
    make embedder-assets   # model.onnx + tokenizer.json into PARLEY_MODEL_DIR
    PARLEY_MODEL_DIR=... /tmp/golden-venv/bin/python embedder/testdata/gen_golden.py

Writes, beside this script:

tokens_golden.json   token IDs of each sentence from Hugging Face `tokenizers`
                     (the Rust tokenizer sentence-transformers uses) loaded from
                     the model's tokenizer.json, truncated to 256 tokens; each
                     entry also records whether `transformers`' pure-Python
                     BertTokenizerLegacy (BasicTokenizer + WordpieceTokenizer,
                     the original BERT uncased algorithm, built from the same
                     vocabulary) agrees, and its IDs when not.
vectors_golden.json  all-MiniLM-L6-v2 sentence embeddings computed with the
                     Python onnxruntime package and numpy: mean pooling under
                     the attention mask, then L2 normalisation.
"""

import json
import os
import sys
import tempfile

import numpy as np
import onnxruntime as ort
import transformers
from tokenizers import Tokenizer
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

MAX_TOKENS = 256
HERE = os.path.dirname(os.path.abspath(__file__))

SENTENCES = [
    "This is an example sentence",
    "Each sentence is converted",
    "Hello, world!",
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
    "The weather is nice today",
    "Café déjà vu: naïve façade, résumé, Ångström, Straße",
    "ÀÉÎÕÜ àéîõü ÇÑ çñ Øresund Łódź",
    "Don't stop\u2014it's 3:45pm\u2026 (really!) [ok] {yes} <no> \"quoted\" 'single'",
    "Prices: $1,299.99, \u20ac45, \u00a33.50, \u00a51000, 50% off!!!",
    "I love this \U0001F600\U0001F389\U0001F44D so much!!",
    "hello\U0001F600world",
    "我爱自然语言处理。",
    "東京は日本の首都です",
    "한국어 텍스트도 있습니다",
    "Привет, как дела? Ελληνικά κείμενα",
    "مرحبا بالعالم",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 101 + " " + "b" * 100 + " end",
    "Numbers 1234567890 3.14159 1e-10 0x1F 2026-11-24 +1 (555) 123-4567",
    "MiXeD CaSe WoRdS and ALLCAPS TEXT",
    "  leading and trailing whitespace\t\twith tabs\nand newlines\r\n  ",
    "control\u0000chars\u0007and\ufffdreplacement\u200bzero\u00adwidth",
    "email@example.com https://example.com/path?q=1&r=2#frag",
    "C++ and C# are languages; so is Go (golang).",
    "\u0130stanbul \ufb01nance \u01c4 \u01c5 \u01c6 \u03a3\u0391\u03a3 \u2126hm \u212bngstr\u00f6m",
    "",
    "   ",
    "The quick brown fox jumps over the lazy dog. " * 40,
    "unaffable unbelievably tokenization WordPiece subword",
    "Non-breaking\u00a0space, em\u2003space, ideographic\u3000space",
    "Mn marks: e\u0301 a\u0308 n\u0303 (combining) vs \u00e9 \u00e4 \u00f1",
    "Thai: สวัสดีครับ, Hindi: नमस्ते दुनिया",
    "@user #hashtag ~tilde ^caret |pipe| `backtick` _under_score_",
    "edge: a\U0001F970b \ue000 \u0378 x\u2028y \u0085 \u000b\u000c ß ẞ \U0001F1FA\U0001F1F8 Ⅻ ① x\u0f39y \U000E0001",
    "Unaffable, un-affable; UNAFFABLE!",
]

# Sentences whose full vectors are committed (indexes into SENTENCES).
VECTOR_SENTENCES = [0, 1, 3, 4, 5, 6, 10, 12, 28]


def main():
    model_dir = os.environ.get("PARLEY_MODEL_DIR") or (sys.argv[1] if len(sys.argv) > 1 else "")
    if not model_dir:
        sys.exit("set PARLEY_MODEL_DIR (run make embedder-assets) or pass the model dir")
    tok_path = os.path.join(model_dir, "tokenizer.json")

    fast = Tokenizer.from_file(tok_path)
    fast.no_padding()
    fast.enable_truncation(max_length=MAX_TOKENS)

    with open(tok_path, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    with tempfile.TemporaryDirectory() as tmp:
        vocab_txt = os.path.join(tmp, "vocab.txt")
        with open(vocab_txt, "w", encoding="utf-8") as f:
            for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
                f.write(tok + "\n")
        slow = BertTokenizerLegacy(vocab_txt, do_lower_case=True, tokenize_chinese_chars=True)

    cases = []
    for s in SENTENCES:
        ids = fast.encode(s).ids
        slow_ids = slow(s, truncation=True, max_length=MAX_TOKENS)["input_ids"]
        case = {"text": s, "ids": ids, "python_bert_agrees": slow_ids == ids}
        if slow_ids != ids:
            case["python_bert_ids"] = slow_ids
            print("python BertTokenizer differs on %r:\n  fast %s\n  slow %s" % (s, ids, slow_ids), file=sys.stderr)
        cases.append(case)

    sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), providers=["CPUExecutionProvider"])
    vectors = []
    for i in VECTOR_SENTENCES:
        s = SENTENCES[i]
        ids = np.array([fast.encode(s).ids], dtype=np.int64)
        mask = np.ones_like(ids)
        out = sess.run(["last_hidden_state"], {
            "input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        m = mask[..., None].astype(np.float32)
        v = (out * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        vectors.append({"text": s, "vector": [round(float(x), 7) for x in v[0]]})

    meta = {
        "generator": "embedder/testdata/gen_golden.py",
        "tokenizers": __import__("tokenizers").__version__,
        "transformers": transformers.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "max_tokens": MAX_TOKENS,
    }
    with open(os.path.join(HERE, "tokens_golden.json"), "w", encoding="utf-8") as f:
        # One case a line, so a diff shows which sentence changed.
        f.write('{"meta": %s,\n "cases": [\n' % json.dumps(meta, ensure_ascii=False))
        f.write(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n ]}\n")
    with open(os.path.join(HERE, "vectors_golden.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "vectors": vectors}, f, ensure_ascii=False)
        f.write("\n")
    print("wrote %d token cases, %d vectors" % (len(cases), len(vectors)))


if __name__ == "__main__":
    main()
