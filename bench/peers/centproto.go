package peers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
)

// Centrifugo's client protocol (v2, JSON) as the fan-out driver speaks it:
// commands {"id":N,"connect":{…}} and {"id":N,"subscribe":{"channel":…}};
// replies with the same id, pushes ({"push":{"channel":…,"pub":{"data":…}}})
// and pings ({}), which a client answers with {}. The server may put
// several replies in one WebSocket message, one per line.

// centReply is one reply, push or ping.
type centReply struct {
	ID        uint32          `json:"id"`
	Error     *centError      `json:"error"`
	Connect   json.RawMessage `json:"connect"`
	Subscribe json.RawMessage `json:"subscribe"`
	Push      *centPush       `json:"push"`
}

type centError struct {
	Code    uint32 `json:"code"`
	Message string `json:"message"`
}

func (e *centError) Error() string { return fmt.Sprintf("centrifugo error %d: %s", e.Code, e.Message) }

type centPush struct {
	Channel string `json:"channel"`
	Pub     *struct {
		Data   json.RawMessage `json:"data"`
		Offset uint64          `json:"offset"`
	} `json:"pub"`
}

// isPing: the server's ping is an empty object.
func (r *centReply) isPing() bool {
	return r.ID == 0 && r.Error == nil && r.Connect == nil && r.Subscribe == nil && r.Push == nil
}

// publication returns the data of a publication push on channel, or nil.
func (r *centReply) publication(channel string) []byte {
	if r.Push == nil || r.Push.Pub == nil || r.Push.Channel != channel {
		return nil
	}
	return r.Push.Pub.Data
}

// decodeCentReplies decodes one WebSocket message: replies separated by
// newlines (empty lines are skipped).
func decodeCentReplies(b []byte) ([]centReply, error) {
	var out []centReply
	for line := range centLines(b) {
		var r centReply
		if err := json.Unmarshal(line, &r); err != nil {
			return out, fmt.Errorf("centrifugo reply %.120q: %w", line, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// centLines yields the replies of one WebSocket message: its lines,
// trimmed, empty ones skipped.
func centLines(b []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			line := b
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				line, b = b[:i], b[i+1:]
			} else {
				b = nil
			}
			line = bytes.TrimSpace(line)
			if len(line) > 0 && !yield(line) {
				return
			}
		}
	}
}

// centCommand encodes a command with its id.
func centCommand(id uint32, method string, params any) ([]byte, error) {
	return json.Marshal(map[string]any{"id": id, method: params})
}

// centPong answers a ping.
var centPong = []byte("{}")

// centPublishBody is the body of a POST to the server API's /api/publish:
// the payload goes in data as {"b": payload}, which must need no JSON
// escaping (the fan-out payloads are ASCII letters, digits and ~:;).
func centPublishBody(buf []byte, channel string, payload []byte) []byte {
	buf = append(buf[:0], `{"channel":`...)
	ch, _ := json.Marshal(channel)
	buf = append(buf, ch...)
	buf = append(buf, `,"data":{"b":"`...)
	buf = append(buf, payload...)
	return append(buf, `"}}`...)
}
