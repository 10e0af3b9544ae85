package replication

import (
	"encoding/json"
	"strings"
	"testing"
)

// The traceparent of an events frame is optional both ways: a frame with
// one decodes with it here and, as JSON with a field it does not know, on
// a node of an older version (whose frame had no Trace, and json ignores
// unknown fields); a frame without one decodes as before; one too long,
// or on another frame type, is dropped rather than refused.
func TestFrameTraceparentIsOptional(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	b, err := encodeFrame(frame{Type: frameEvents, ID: 7, Events: []Event{ev(1)}, Trace: tp})
	if err != nil {
		t.Fatal(err)
	}
	f, err := decodeFrame(b)
	if err != nil || f.Trace != tp || f.ID != 7 || len(f.Events) != 1 {
		t.Fatalf("decoded %+v, %v", f, err)
	}
	// The frame of the version before tracing, field for field.
	var old struct {
		Type   string          `json:"t"`
		ID     uint64          `json:"id,omitempty"`
		Events []Event         `json:"ev,omitempty"`
		Error  string          `json:"err,omitempty"`
		Gaps   []Gap           `json:"gaps,omitempty"`
		Signal json.RawMessage `json:"sig,omitempty"`
	}
	if err := json.Unmarshal(b, &old); err != nil || old.Type != frameEvents || old.ID != 7 || len(old.Events) != 1 {
		t.Fatalf("an older node reads %+v, %v", old, err)
	}
	untraced, _ := encodeFrame(frame{Type: frameEvents, Events: []Event{ev(1)}})
	if strings.Contains(string(untraced), `"tp"`) {
		t.Fatalf("an untraced frame carries tp: %s", untraced)
	}
	if f, err := decodeFrame(untraced); err != nil || f.Trace != "" {
		t.Fatalf("untraced: %+v, %v", f, err)
	}
	long, _ := encodeFrame(frame{Type: frameEvents, Events: []Event{ev(1)}, Trace: strings.Repeat("0", maxTraceparent+1)})
	if f, err := decodeFrame(long); err != nil || f.Trace != "" {
		t.Fatalf("too long: %q, %v", f.Trace, err)
	}
	ack, _ := encodeFrame(frame{Type: frameAck, ID: 7, Trace: tp})
	if f, err := decodeFrame(ack); err != nil || f.Trace != "" {
		t.Fatalf("ack: %q, %v", f.Trace, err)
	}
}
