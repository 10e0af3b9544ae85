package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// readEnvelope reads only what encoding/json reads the same: whenever it
// reads an envelope, encoding/json (which DecodeCommand used alone before)
// reads the same ID, base, type and command from it. Envelopes as
// MarshalJSON writes them, and the same with bytes inserted, removed or
// replaced where it matters.
func TestReadEnvelopeAsEncodingJSON(t *testing.T) {
	t.Parallel()
	same := func(t interface{ Fatalf(string, ...any) }, b []byte) bool {
		got, ok := readEnvelope(b)
		if !ok {
			return false
		}
		var want requestJSON
		if err := decodeStrict(b, &want); err != nil {
			t.Fatalf("%q: readEnvelope reads %+v, encoding/json refuses it: %v", b, got, err)
		}
		got.Command = bytes.TrimSpace(got.Command)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%q: readEnvelope reads %+v, encoding/json %+v", b, got, want)
		}
		return true
	}
	const cmd = `{"id":"a"}`
	for _, tt := range []struct {
		b    string
		read bool
	}{
		{`{"id":"0123456789abcdef","base":7,"type":3,"command":` + cmd + "}\n", true},
		{`{"id":"0123456789abcdef","base":0,"type":3,"command": ` + cmd + " } \r\n\t", true},
		{`{"id":"0123456789abcdef","base":18446744073709551615,"type":255,"command":` + cmd + `}`, true},
		{`{"id":"0123456789abcdef","base":18446744073709551616,"type":3,"command":` + cmd + `}`, false},
		{`{"id":"0123456789abcdef","base":07,"type":3,"command":` + cmd + `}`, false},
		{`{"id":"0123456789abcdef","base":7,"type":03,"command":` + cmd + `}`, false},
		{`{"id":"0123456789abcdef","base":7,"type":256,"command":` + cmd + `}`, false},
		{`{"id":"0123456789abcdef","base":-7,"type":3,"command":` + cmd + `}`, false},
		{`{"id":"0123456789abcdef","base":7e0,"type":3,"command":` + cmd + `}`, false},
		{`{"id":"0123456789abcde\u0066","base":7,"type":3,"command":` + cmd + `}`, false},
		{`{"ID":"0123456789abcdef","base":7,"type":3,"command":` + cmd + `}`, false},
		{` {"id":"0123456789abcdef","base":7,"type":3,"command":` + cmd + `}`, false},
		{`{"id":"0123456789abcdef","base":7,"type":3,"command":` + cmd + `}}`, false},
		{`{"id":"0123456789abcdef","base":7,"type":3,"command":` + cmd + `,"x":1}`, false},
		{`{"id":"0123456789abcdef","base":7,"type":3,"command":` + cmd + cmd + `}`, false},
		{`{"id":"0123456789abcdef","base":7,"type":3,"command":}`, false},
	} {
		if got := same(t, []byte(tt.b)); got != tt.read {
			t.Errorf("%q: read %v, want %v", tt.b, got, tt.read)
		}
	}
	var fast, mutated int
	rapid.Check(t, func(t *rapid.T) {
		id := rapid.StringMatching(`[A-Za-z0-9_-]{0,40}`).Draw(t, "id")
		base := rapid.Uint64().Draw(t, "base")
		var cmd Command = &DeleteWorkspace{ID: rapid.StringMatching(`[a-z\\"é]{0,8}`).Draw(t, "ws")}
		if rapid.Bool().Draw(t, "usage") {
			cmd = &ReportUsage{NodeID: "n1", Workspace: "acme", Period: "2026-11", Messages: rapid.Int64().Draw(t, "messages"), IdempotencyKey: "k"}
		}
		b, err := Request{ID: id, Base: base, Cmd: cmd}.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, '\n') // as EncodeCommand writes it
		if _, ok := readEnvelope(b); !ok {
			t.Fatalf("%s: not read as written", b)
		}
		for range rapid.IntRange(0, 3).Draw(t, "mutations") {
			pos := rapid.IntRange(0, len(b)).Draw(t, "pos")
			c := rapid.SampledFrom([]byte(`{}[]":,019 `+"\n\t"+`-_aZe.+\u`)).Draw(t, "byte")
			switch op := rapid.IntRange(0, 2).Draw(t, "op"); {
			case op == 0:
				b = append(b[:pos:pos], append([]byte{c}, b[pos:]...)...)
			case pos < len(b) && op == 1:
				b = append(b[:pos:pos], b[pos+1:]...)
			case pos < len(b):
				b = append(b[:pos:pos], append([]byte{c}, b[pos+1:]...)...)
			}
			mutated++
		}
		if same(t, b) {
			fast++
		}
	})
	if fast == 0 || mutated == 0 {
		t.Fatalf("%d envelopes read, %d mutations: nothing compared", fast, mutated)
	}
}

// MarshalJSON and EncodeCommand write a Request into the bytes encoding/json
// wrote for it (a json.Encoder over the envelope, the command marshalled
// inside): the log's entries are spelt as they always were.
func TestRequestEncodingAsEncodingJSON(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		id := rapid.OneOf(rapid.StringMatching(`[A-Za-z0-9_-]{16,64}`), rapid.StringMatching(`[A-Za-z0-9_<>&"\\é -]{0,20}`)).Draw(t, "id")
		var cmd Command = DeleteWorkspace{ID: rapid.StringMatching(`[a-z<>&"\\é]{0,8}`).Draw(t, "ws")}
		if rapid.Bool().Draw(t, "usage") {
			cmd = ReportUsage{NodeID: "n1", Workspace: "acme", Period: "2026-11", Messages: rapid.Int64().Draw(t, "messages"), IdempotencyKey: "k"}
		}
		r := Request{ID: id, Base: rapid.Uint64().Draw(t, "base"), Cmd: cmd}
		inner, err := json.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(requestJSON{ID: r.ID, Base: r.Base, Type: cmd.Type(), Command: inner}); err != nil {
			t.Fatal(err)
		}
		got, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if got = append(got, '\n'); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("MarshalJSON:\n got %s\nwant %s", got, want.Bytes())
		}
		if r.Validate() != nil {
			return
		}
		for _, c := range []Command{r, &r} {
			data, err := EncodeCommand(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data[1:], want.Bytes()) || data[0] != byte(TypeRequest) {
				t.Fatalf("EncodeCommand(%T):\n got %q\nwant %q", c, data, want.Bytes())
			}
		}
	})
}
