package gateway

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"parley/crdt"
	"parley/gateway/wire"
)

var flatSeeds = []string{
	`{"type":"send","ref":"m1","conversation":"c_0123456789abcdef01234567","id":"m_12345678","body":"hello"}`,
	`{"type":"send","conversation":"c_0123456789abcdef01234567","id":"m_12345678","body":"a \"quoted\" \\ line\nand\ttab \u00e9 \u003c/script\u003e","internal":true}`,
	` { "type" : "ping" , "ref" : "p" } `,
	`{"type":"ping","ref":"p"}` + "\n",
	`{}`,
	`{"type":"send","body":"one","body":"two"}`,
	`{"type":"send","internal":false,"internal":true}`,
	`{"Type":"send"}`,
	`{"type":"send","body":null}`,
	`{"type":"send","body":"\ud83d\ude00"}`,
	`{"type":"send","body":"\ud83d"}`,
	`{"type":"send","seq":3}`,
	`{"type":"send","body":"x"}x`,
	`{"type":"send","body":"x",}`,
	`{"type":"send","body":"\x"}`,
	`{"type":"send","body":"\u12"}`,
	`{"type":"send","body":"a` + "\x01" + `"}`,
	`{"type":"hello","v":1,"workspace":"demo","role":"visitor"}`,
	`{"type":"send","context":{"url":"http://a"}}`,
	`{"typ\u0065":"send"}`,
	`{"type":"send","internal":tru}`,
}

// FuzzDecodeFlat checks decodeFrame's fast path against encoding/json on
// the same bytes: whenever it takes a frame, encoding/json takes it too,
// into the same fields.
func FuzzDecodeFlat(f *testing.F) {
	for _, s := range flatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return // decodeFrame refuses it before either
		}
		var fast inFrame
		if !decodeFlat(data, &fast) {
			return
		}
		var slow inFrame
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("%q: fast path took it, encoding/json refused it: %v", data, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", data, fast, slow)
		}
		// Nothing decoded aliases the frame's bytes, which the caller
		// may reuse.
		for i := range data {
			data[i] = '#'
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast path's %+v changed with the frame's bytes", fast)
		}
	})
}

// TestDecodeFrameAllocations: a send frame costs its decoding three
// allocations (one string for ref, conversation and id, one for the
// body, the body's pointer), a ping with a ref one, whatever escapes
// they hold; six and two when every field had its own string.
func TestDecodeFrameAllocations(t *testing.T) {
	for _, c := range []struct {
		frame string
		want  float64
	}{
		{`{"type":"send","ref":"m1","conversation":"c_0123456789abcdef01234567","id":"m_12345678","body":"hello"}`, 3},
		{`{"type":"send","ref":"m\u00e9","conversation":"c_0123456789abcdef01234567","id":"m_12345678","body":"a \"quoted\" line\n"}`, 3},
		{`{"type":"ping","ref":"p1"}`, 1},
		{`{"type":"ping"}`, 0},
	} {
		data := []byte(c.frame)
		allocs := testing.AllocsPerRun(200, func() {
			if _, werr := decodeFrame(data); werr != nil {
				t.Fatalf("%s: %v", c.frame, werr)
			}
		})
		if allocs > c.want {
			t.Errorf("%s: %.1f allocations, want at most %.0f", c.frame, allocs, c.want)
		}
	}
}

// BenchmarkDecodeFrame: a visitor's send frame of the load scenarios'
// size, decoded and validated.
func BenchmarkDecodeFrame(b *testing.B) {
	data := []byte(`{"type":"send","ref":"r-000123","conversation":"c_0123456789abcdef01234567","id":"m-0000001","body":"a message of about the size of the load scenarios' one hundred and twenty-eight bytes, typed by a visitor"}`)
	b.ReportAllocs()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		if _, werr := decodeFrame(data); werr != nil {
			b.Fatal(werr)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// TestDecodeFlatTakesTheHotFrames: the frames every message costs go
// through the fast path, not encoding/json.
func TestDecodeFlatTakesTheHotFrames(t *testing.T) {
	for _, s := range flatSeeds[:7] {
		var f inFrame
		if !decodeFlat([]byte(s), &f) {
			t.Errorf("%s: not taken", s)
		}
	}
	for _, s := range flatSeeds[7:] {
		var f inFrame
		if decodeFlat([]byte(s), &f) {
			t.Errorf("%s: taken, encoding/json's to decode", s)
		}
	}
}

// FuzzEncodeAck checks encodeAck against encoding/json on the same ack.
func FuzzEncodeAck(f *testing.F) {
	f.Add("m1", "c_0123456789abcdef01234567", "m_12345678", uint64(7), int64(1733500000000), uint32(0), "n1", false, true)
	f.Add("", "c_x", "", uint64(0), int64(-1), uint32(9), "", true, false)
	f.Add("a<b>&\"\\\n\u2028é", "c", "i", uint64(1<<63), int64(1), uint32(1), "n\x7f", false, true)
	f.Fuzz(func(t *testing.T, ref, conv, id string, seq uint64, wall int64, logical uint32, node string, dup, ts bool) {
		a := wire.Ack{Type: wire.TypeAck, Ref: ref, Conversation: conv, ID: id, Seq: seq, Dup: dup}
		if ts {
			a.TS = &crdt.Timestamp{Wall: wall, Logical: logical, Node: node}
		}
		if got, want := encodeAck(a), encode(a); string(got) != string(want) {
			t.Fatalf("encodeAck %s, encoding/json %s", got, want)
		}
	})
}

// TestEncodeAckAllocatesOnce: an ack costs its frame's buffer and nothing
// else, its stamp staying where the caller has it (on its stack here);
// handing the ack to encoding/json on the rare path sent every caller's
// stamp to the heap.
func TestEncodeAckAllocatesOnce(t *testing.T) {
	for _, c := range []struct {
		seq     uint64
		wall    int64
		logical uint32
	}{
		{7, 1733500000000, 3},
		{math.MaxUint64, math.MinInt64, math.MaxUint32}, // every number at its longest
	} {
		allocs := testing.AllocsPerRun(200, func() {
			ts := crdt.Timestamp{Wall: c.wall, Logical: c.logical, Node: "n1"}
			if b := encodeAck(wire.Ack{Type: wire.TypeAck, Ref: "m1", Conversation: "c_0123456789abcdef01234567", ID: "m_12345678", Seq: c.seq, TS: &ts}); len(b) == 0 {
				t.Fatal("no frame")
			}
		})
		if allocs != 1 {
			t.Errorf("%+v: %.1f allocations per ack, want 1", c, allocs)
		}
	}
}

// reMsgID is the documented form of a message id, the reference for
// checkMsgID (which reads the bytes without a regexp).
var reMsgID = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)

func TestCheckMsgIDIsItsRegexp(t *testing.T) {
	for _, id := range []string{"", "abcdefg", "abcdefgh", "ABC_def-9", strings.Repeat("a", 64), strings.Repeat("a", 65),
		"abcdefg!", "abcdefgé", "abcd efgh", "abcdefgh\n", "m_01J9ZX8Y2K3Q4R5S6T7U8V9W0X"} {
		if got, want := checkMsgID(id) == nil, reMsgID.MatchString(id); got != want {
			t.Errorf("%q: checkMsgID takes it %v, the regexp %v", id, got, want)
		}
	}
}

// FuzzCheckMsgID: checkMsgID takes exactly what its regexp matches.
func FuzzCheckMsgID(f *testing.F) {
	f.Add("m_12345678")
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := checkMsgID(id) == nil, reMsgID.MatchString(id); got != want {
			t.Fatalf("%q: checkMsgID takes it %v, the regexp %v", id, got, want)
		}
	})
}

// TestDecodeFlatAgreesOnGeneratedFrames: frames made of the fast path's
// keys and others, strings with every kind of escape, booleans, nulls and
// numbers, in any order, with stray bytes now and then; whatever the fast
// path takes, encoding/json takes into the same fields.
func TestDecodeFlatAgreesOnGeneratedFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"type", "ref", "conversation", "id", "body", "internal", "Type", "seq", "context", "typ\\u0065", ""}
	pieces := []string{"a", "é", "😀", `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u00e9`, `\u003c`, `\ud83d\ude00`, `\ud83d`, `\u12`, `\x`, "\x01", " ", "<&>", "\u2028"}
	values := []string{"true", "false", "null", "1", "-2.5e3", "{}", `{"a":1}`, "[]", "tru"}
	ws := []string{"", " ", "\n", "\t\r "}
	taken := 0
	for n := 0; n < 200000; n++ {
		var b strings.Builder
		b.WriteString(ws[rng.IntN(len(ws))] + "{")
		for k := rng.IntN(5); k > 0; k-- {
			b.WriteString(ws[rng.IntN(len(ws))] + `"` + keys[rng.IntN(len(keys))] + `"` + ws[rng.IntN(len(ws))] + ":" + ws[rng.IntN(len(ws))])
			if rng.IntN(4) == 0 {
				b.WriteString(values[rng.IntN(len(values))])
			} else {
				b.WriteString(`"`)
				for p := rng.IntN(4); p > 0; p-- {
					b.WriteString(pieces[rng.IntN(len(pieces))])
				}
				b.WriteString(`"`)
			}
			if k > 1 || rng.IntN(20) == 0 {
				b.WriteString(",")
			}
		}
		b.WriteString("}" + ws[rng.IntN(len(ws))])
		if rng.IntN(20) == 0 {
			b.WriteString("x")
		}
		data := []byte(b.String())
		var fast inFrame
		if !decodeFlat(data, &fast) {
			continue
		}
		taken++
		var slow inFrame
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("%q: fast path took it, encoding/json refused it: %v", data, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", data, fast, slow)
		}
	}
	t.Logf("%d of 200000 generated frames taken by the fast path", taken)
	if taken < 1000 {
		t.Fatalf("the fast path took only %d generated frames", taken)
	}
}
