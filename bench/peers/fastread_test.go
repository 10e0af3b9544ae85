package peers

import (
	"bytes"
	"testing"
)

var parleyFrames = []string{
	`{"type":"deliver","conversation":"c_01","seq":24,"at":"n1.24","message":{"id":"fo1a2b3c0","author":"v:abc","role":"visitor","name":"fanout visitor 0","body":"~pb:0000000000000001;xxxxxxxx","ts":{"w":1765000000123,"l":3,"n":"n1"},"edited":null,"deleted":false}}`,
	`{"type":"deliver","conversation":"c_01","seq":2,"message":{"body":"","id":"m"}}`,
}

var parleyOdd = []string{
	``, `{}`, `{"message":null}`, `{"message":{}}`, `{"message":{"body":null}}`, `{"message":{"body":5}}`,
	`{"message":{"body":"a\"b"}}`, `{"Message":{"body":"x"}}`, `{"message":{"Body":"x"}}`, `{"message":{"body":"x","body":"y"}}`,
	`{"message":{"body":"x"},"message":{"body":"y"}}`, `{"message":{"body":"x"}} {}`, `{"message":{"body":"\xff"}}`,
	`{"type":"deliver","x":[1,{"y":"\u00e9"}],"message":{"body":"é"}}`, `{"message":{"body":"x"},}`,
}

// TestParleyBodyReader: the subscribers' reader takes the node's deliver
// frames itself, and reads any frame as encoding/json does.
func TestParleyBodyReader(t *testing.T) {
	t.Parallel()
	for _, s := range parleyFrames {
		if _, ok := parleyBodyFast([]byte(s)); !ok {
			t.Errorf("the reader refused %s", s)
		}
	}
	for _, s := range append(append([]string(nil), parleyFrames...), parleyOdd...) {
		checkParleyBody(t, []byte(s))
	}
}

func checkParleyBody(t *testing.T, b []byte) {
	t.Helper()
	got, gotOK := parleyBody(b)
	want, wantOK := parleyBodyJSON(b)
	if gotOK != wantOK || !bytes.Equal(got, want) {
		t.Errorf("%q: reader %q %v, encoding/json %q %v", b, got, gotOK, want, wantOK)
	}
}

// FuzzParleyBody compares the Parley subscribers' reader with
// encoding/json; its seeds run with every go test.
func FuzzParleyBody(f *testing.F) {
	for _, s := range append(append([]string(nil), parleyFrames...), parleyOdd...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkParleyBody(t, b) })
}

var centReplies = []string{
	`{"push":{"channel":"room","pub":{"data":{"b":"~pb:0000000000000001;xxxx"},"offset":17}}}`,
	`{"push":{"channel":"room","pub":{"data":{"b":"x"}}}}`,
	`{"push":{"channel":"other","pub":{"data":{"b":"x"}}}}`,
	`{}`,
}

var centOdd = []string{
	`{"id":1,"connect":{"client":"c1","version":"5.4.9","ping":25,"pong":true}}`, `{"id":2,"error":{"code":103,"message":"permission denied"}}`,
	`{"push":{"channel":"room","join":{"info":{}}}}`, `{"push":null}`, `{"push":{"pub":null}}`, `{"push":{"channel":"room","pub":{"data":null}}}`,
	`{"push":{"channel":"room","pub":{}}}`, `{"push":{"channel":null,"pub":{"data":1}}}`, `{"push":{"channel":"room","pub":{"data":1,"offset":-1}}}`,
	`{"push":{"channel":"room","pub":{"data":1,"data":2}}}`, `{"Push":{"channel":"room","pub":{"data":1}}}`, `{"id":"one"}`, `{nope`,
	`{"push":{"channel":"ro\u006fm","pub":{"data":1}}}`, `{"push":{"channel":"room","pub":{"data": [1, 2 ] ,"offset":1}}}`, `{} x`,
}

// TestCentLineReader: the Centrifugo subscribers' reader takes pings and
// publications itself, and reads any reply as encoding/json does.
func TestCentLineReader(t *testing.T) {
	t.Parallel()
	for _, s := range centReplies {
		if _, _, ok := centLineFast([]byte(s), "room"); !ok {
			t.Errorf("the reader refused %s", s)
		}
	}
	for _, s := range append(append([]string(nil), centReplies...), centOdd...) {
		checkCentLine(t, []byte(s))
	}
}

func checkCentLine(t *testing.T, line []byte) {
	t.Helper()
	line = bytes.TrimSpace(line)
	if len(line) == 0 || bytes.IndexByte(line, '\n') >= 0 {
		return // not a line centLines yields
	}
	data, ping, err := centLine(line, "room")
	wdata, wping, werr := centLineJSON(line, "room")
	if (err == nil) != (werr == nil) || ping != wping || !bytes.Equal(data, wdata) || (data == nil) != (wdata == nil) {
		t.Errorf("%q: reader %q %v %v, encoding/json %q %v %v", line, data, ping, err, wdata, wping, werr)
	}
}

// FuzzCentLine compares the Centrifugo subscribers' reader with
// encoding/json; its seeds run with every go test.
func FuzzCentLine(f *testing.F) {
	for _, s := range append(append([]string(nil), centReplies...), centOdd...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkCentLine(t, b) })
}
