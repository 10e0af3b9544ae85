package bench

import (
	"reflect"
	"testing"
)

// Frames as the node writes them (docs/protocol.md), which the fast
// reader must take itself.
var nodeFrames = []string{
	`{"type":"ack","ref":"pb1a2b3c4d-17","conversation":"c_0123456789abcdef","id":"pb1a2b3c4d-17","seq":24,"ts":{"w":1765000000123,"l":3,"n":"n1"},"dup":false}`,
	`{"type":"ack","ref":"pb1a2b3c4d-18","conversation":"c_0123456789abcdef","id":"pb1a2b3c4d-18","seq":25,"ts":{"w":1765000000123,"l":4,"n":"n1"},"dup":true}`,
	`{"type":"deliver","conversation":"c_0123456789abcdef","seq":24,"at":"n1.24","message":{"id":"pb1a2b3c4d-17","author":"v:abc","role":"visitor","name":"bench visitor 3","body":"abcdefghijklmnopqrstuvwxyz0123456789 abc","ts":{"w":1765000000123,"l":3,"n":"n1"},"edited":null,"deleted":false}}`,
	`{"type":"deliver","conversation":"c_01","seq":9,"at":"n1.9","also":["n1.7","n1.8"],"message":{"id":"m1","author":"a:sam","role":"agent","body":"","ts":{"w":5,"l":0,"n":"n2"},"edited":{"w":6,"l":1,"n":"n2"},"deleted":true,"internal":true,"kind":"status"}}`,
	`{"type":"resumed","ref":"r3","conversation":"c_01","head":23,"more":true}`,
	`{"type":"resumed","ref":"r3","conversation":"c_01","head":23}`,
	`{"type":"error","ref":"pb1a2b3c4d-19","code":"overloaded","message":"node overloaded (the workspace's agents are behind): retry in 137 ms","retry_ms":137}`,
	`{"type":"error","ref":"r9","code":"bad_request","message":"body: must be 1..4000 characters"}`,
	`{"type":"started","ref":"s0","conversation":"c_01"}`,
	`{"type":"welcome","v":1,"workspace":"demo","role":"agent","participant":"a:x","node":"n1","heartbeat_ms":10000}`,
	`{"type":"pong","ref":"p"}`,
	`{"type":"read","conversation":"c_01","participant":"a:x","role":"agent","seq":4}`,
}

// Frames the fast reader must leave to encoding/json (and what it says of
// them must still be encoding/json's).
var oddFrames = []string{
	``, `null`, `[]`, `{}`, `{"type":5}`, `{"ref":"x","type":"ack"}`, `{"type":"ack","Seq":3}`,
	`{"type":"ack","seq":3,"seq":4}`, `{"type":"ack","seq":-1}`, `{"type":"ack","seq":1.5}`, `{"type":"ack","seq":1e3}`,
	`{"type":"ack","seq":18446744073709551616}`, `{"type":"ack","seq":"3"}`, `{"type":"ack","id":"a\"b"}`,
	`{"type":"ack","id":"\u0070b"}`, `{"type":"ack","ts":{"w":1,"l":4294967296}}`, `{"type":"ack","ts":5}`,
	`{"type":"ack","dup":1}`, `{"type":"ack"} x`, `{"type":"ack",}`, `{"type":"ack" "seq":1}`,
	`{"type":"deliver","message":null}`, `{"type":"deliver"}`, `{"type":"deliver","message":{"body":5}}`,
	`{"type":"deliver","at":5,"message":{}}`, `{"type":"deliver","also":[1],"message":{}}`,
	`{"type":"deliver","message":{"ts":{"n":"\xff"}}}`, `{"type":"deliver","message":{"edited":{"w":1},"edited":null}}`,
	`{"type":"error","code":"x","message":"m","retry_ms":"5"}`, `{"type":"error","retry_ms":-9223372036854775808}`,
	`{"type":"error","retry_ms":9223372036854775808}`, `{"type":"resumed","more":"yes"}`,
	`{"type":"x","extra":{"a":[1,2,{"b":null}],"c":"\ud800"}}`, `{"type":"x","extra":01}`, `{"type":"x","extra":"\x01"}`,
	`{"type":"x","ref":null,"code":null}`, `{"type":"x","ref":"\xff"}`, ` {"type" : "ack" , "seq" : 0 } `,
}

// TestParseFrameTakesTheNodesFrames: the frames every message costs go
// through the fast reader, and it reads them as encoding/json does.
func TestParseFrameTakesTheNodesFrames(t *testing.T) {
	t.Parallel()
	for _, s := range nodeFrames {
		var f frame
		if !fastFrame([]byte(s), &f, nil) {
			t.Errorf("the fast reader refused %s", s)
			continue
		}
		f.Raw = []byte(s)
		checkAgainstJSON(t, []byte(s))
	}
}

// TestParseFrameOddFrames: whatever the fast reader does with frames the
// node does not write, the harness reads them as encoding/json does.
func TestParseFrameOddFrames(t *testing.T) {
	t.Parallel()
	for _, s := range oddFrames {
		checkAgainstJSON(t, []byte(s))
	}
	// A few of them it must refuse (it would read them wrong).
	for _, s := range []string{`{"type":"ack","Seq":3}`, `{"type":"ack","seq":3,"seq":4}`, `{"type":"error","code":"x","message":"m","retry_ms":"5"}`} {
		var f frame
		if fastFrame([]byte(s), &f, nil) {
			t.Errorf("the fast reader took %s", s)
		}
	}
}

// checkAgainstJSON fails when parseFrame reads b otherwise than
// encoding/json does.
func checkAgainstJSON(t *testing.T, b []byte) {
	t.Helper()
	got, want := parseFrameIn(b, interner{}), slowFrame(b)
	got.Raw, want.Raw = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q:\n fast %+v\n json %+v", b, got, want)
	}
}

// FuzzParseFrame compares the harness's frame reader with encoding/json
// on the same bytes; its seeds run with every go test.
func FuzzParseFrame(f *testing.F) {
	for _, s := range nodeFrames {
		f.Add([]byte(s))
	}
	for _, s := range oddFrames {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAgainstJSON(t, b)
	})
}
