package embedder

import (
	"context"
	"fmt"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// benchSentences are 32 chat-like messages of mixed length (4 to 40 tokens).
var benchSentences = []string{
	"Hi, is anyone there?",
	"How do I reset my password?",
	"I was charged twice for my subscription this month, can you refund one of the payments?",
	"Where is my order?",
	"The tracking number you sent me doesn't work on the courier's website.",
	"Thanks, that fixed it!",
	"Can I change the delivery address after the order has shipped?",
	"Your app keeps logging me out every few minutes on my iPhone.",
	"Do you ship to Canada?",
	"I'd like to cancel my account and delete all my data, please.",
	"What are your opening hours on public holidays?",
	"The discount code SPRING25 says it has expired but the email says it is valid until Sunday.",
	"ok",
	"Is there a student discount?",
	"I can't find the invoice for order 48213 in my account.",
	"My package arrived damaged, the box was crushed and the mug inside is broken.",
	"Can I pay with PayPal?",
	"How long does a refund take to appear on my card?",
	"The size chart says M but the shirt fits like an S.",
	"Please call me back, my number is on file.",
	"Do you have this jacket in blue?",
	"I never received the confirmation email.",
	"Why was my card declined? It works everywhere else.",
	"Can I add a gift message to my order?",
	"The website shows an error 500 when I try to check out.",
	"Hello! I have a question about the warranty on the coffee machine I bought last year.",
	"How do I update my billing information?",
	"Is it possible to speak to a human?",
	"Great service, thank you so much.",
	"The item in my cart disappeared after I logged in.",
	"Can I return an item bought on sale?",
	"Two of the three items arrived, where is the third one?",
}

func threadCounts() []int { return []int{1, 2} }

// BenchmarkEmbed measures end-to-end Embed (tokenise, pad, run, pool,
// normalise): one sentence per call, and 32 per call in one batch.
func BenchmarkEmbed(b *testing.B) {
	for _, threads := range threadCounts() {
		for _, batch := range []int{1, 32} {
			b.Run(fmt.Sprintf("threads=%d/batch=%d", threads, batch), func(b *testing.B) {
				e := newEmbedder(b, Config{Threads: threads, MaxBatch: 32})
				ctx := context.Background()
				n := 0
				for b.Loop() {
					var texts []string
					if batch == 1 {
						texts = benchSentences[n%len(benchSentences) : n%len(benchSentences)+1]
					} else {
						texts = benchSentences
					}
					if _, err := e.Embed(ctx, texts); err != nil {
						b.Fatal(err)
					}
					n += len(texts)
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "sentences/s")
			})
		}
	}
}

// BenchmarkORTRun is the baseline: the bare ONNX Runtime session run on the
// same inputs, tokenised and padded beforehand, tensors made once. The
// difference to BenchmarkEmbed is this package's own overhead.
func BenchmarkORTRun(b *testing.B) {
	for _, threads := range threadCounts() {
		for _, batch := range []int{1, 32} {
			b.Run(fmt.Sprintf("threads=%d/batch=%d", threads, batch), func(b *testing.B) {
				e := newEmbedder(b, Config{Threads: threads, MaxBatch: 32})
				// Pre-build one input set per call: single sentences in
				// turn, or the whole padded batch.
				type run struct{ in, out []ort.Value }
				var runs []run
				groups := [][]string{benchSentences}
				if batch == 1 {
					groups = nil
					for i := range benchSentences {
						groups = append(groups, benchSentences[i:i+1])
					}
				}
				for _, g := range groups {
					toks := make([][]int64, len(g))
					l := 0
					for i, s := range g {
						toks[i] = e.tok.Encode(s)
						l = max(l, len(toks[i]))
					}
					ids, mask, types := make([]int64, len(g)*l), make([]int64, len(g)*l), make([]int64, len(g)*l)
					for i, t := range toks {
						copy(ids[i*l:], t)
						for j := range t {
							mask[i*l+j] = 1
						}
					}
					shape := ort.NewShape(int64(len(g)), int64(l))
					var r run
					for _, d := range [][]int64{ids, mask, types}[:len(e.inputs)] {
						t, err := ort.NewTensor(shape, d)
						if err != nil {
							b.Fatal(err)
						}
						r.in = append(r.in, t)
					}
					o, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(len(g)), int64(l), int64(e.dim)))
					if err != nil {
						b.Fatal(err)
					}
					r.out = []ort.Value{o}
					runs = append(runs, r)
				}
				b.Cleanup(func() {
					for _, r := range runs {
						for _, v := range append(r.in, r.out...) {
							v.Destroy()
						}
					}
				})
				n := 0
				for i := 0; b.Loop(); i++ {
					r := runs[i%len(runs)]
					if err := e.session.Run(r.in, r.out); err != nil {
						b.Fatal(err)
					}
					n += int(r.in[0].GetShape()[0])
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "sentences/s")
			})
		}
	}
}

// BenchmarkOverhead is this package's own work around one batch-32 model
// run, without the run: tokenise, pad, mean-pool and normalise (the pooling
// reads a [32, l, 384] output the size ONNX Runtime would write).
func BenchmarkOverhead(b *testing.B) {
	_, dir := assets(b)
	tok, err := LoadTokenizer(dir, 0)
	if err != nil {
		b.Fatal(err)
	}
	const dim = 384
	var ids, mask []int64
	var hidden []float32
	b.ReportAllocs()
	for b.Loop() {
		toks := make([][]int64, len(benchSentences))
		l := 0
		for i, s := range benchSentences {
			toks[i] = tok.Encode(s)
			l = max(l, len(toks[i]))
		}
		n := len(toks) * l
		ids, mask, hidden = grow(ids, n), grow(mask, n), grow(hidden, n*dim)
		padBatch(toks, l, tok.PadID(), ids, mask)
		poolBatch(hidden, mask, len(toks), l, dim, false)
	}
}
