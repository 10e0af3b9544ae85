package peers

import (
	"encoding/json"

	"parley/bench/internal/jread"
)

// The subscribers' readers. A subscriber runs in the harness's process,
// on the same cores as the server it measures, so what it spends to read
// a message is CPU the server does not get. NATS's subscribers parse the
// MSG line by hand (natsParser); Parley's and Centrifugo's, by default,
// read their JSON frames by hand too, the few fields they need, exactly
// (package jread): each reader takes a frame only when it is sure
// encoding/json would read the same, and leaves any other to
// encoding/json (FuzzParleyBody, FuzzCentLine compare them).

// parleyBody returns the body of a Parley deliver frame's message, as
// encoding/json decodes it, and false when the frame does not decode.
// The body is b's bytes (valid while b is) when the frame is plain.
func parleyBody(b []byte) ([]byte, bool) {
	if body, ok := parleyBodyFast(b); ok {
		return body, true
	}
	return parleyBodyJSON(b)
}

// parleyBodyJSON decodes the frame as the subscribers always did.
func parleyBodyJSON(b []byte) ([]byte, bool) {
	var f struct {
		Message struct {
			Body string `json:"body"`
		} `json:"message"`
	}
	if json.Unmarshal(b, &f) != nil {
		return nil, false
	}
	return []byte(f.Message.Body), true
}

// parleyBodyFast reads {…,"message":{…,"body":"…",…},…}: a message object
// and its body string, each once, every other value skipped (checked
// valid).
func parleyBodyFast(b []byte) ([]byte, bool) {
	p := jread.Reader{B: b}
	p.Space()
	if !p.Eat('{') {
		return nil, false
	}
	var body []byte
	seen := false
	ok := p.Fields(true, func(key []byte) bool {
		if string(key) != "message" {
			return p.Skip(0)
		}
		if seen || !p.Eat('{') {
			return false
		}
		seen = true
		got := false
		return p.Fields(true, func(key []byte) bool {
			if string(key) != "body" {
				return p.Skip(0)
			}
			if got || p.I >= len(p.B) || p.B[p.I] != '"' {
				return false
			}
			got = true
			var ok bool
			body, ok = p.Str()
			return ok
		}) && got
	})
	p.Space()
	if !ok || !seen || p.I != len(b) {
		return nil, false
	}
	return body, true
}

// centLine reads one Centrifugo reply line (decodeCentReplies's, trimmed):
// the data of a publication on channel (nil when it is none) and whether
// it is a ping, as encoding/json and centReply tell; an error when the
// line does not decode.
func centLine(line []byte, channel string) (data []byte, ping bool, err error) {
	if data, ping, ok := centLineFast(line, channel); ok {
		return data, ping, nil
	}
	return centLineJSON(line, channel)
}

// centLineJSON decodes the line as the subscribers always did.
func centLineJSON(line []byte, channel string) ([]byte, bool, error) {
	rs, err := decodeCentReplies(line)
	if err != nil || len(rs) != 1 {
		return nil, false, err
	}
	return rs[0].publication(channel), rs[0].isPing(), nil
}

// centLineFast reads a ping ({}) or a push
// {"push":{"channel":"…","pub":{"data":…,"offset":N,…},…}}: push, channel
// and pub each once, channel a string, push and pub objects, data not
// null; anything else, another top-level key first of all, is left to
// encoding/json.
func centLineFast(line []byte, channel string) (data []byte, ping, ok bool) {
	p := jread.Reader{B: line}
	p.Space()
	if !p.Eat('{') {
		return nil, false, false
	}
	push := false
	var ch []byte
	var hasPub bool
	ok = p.Fields(true, func(key []byte) bool {
		if string(key) != "push" || push || !p.Eat('{') {
			return false
		}
		push = true
		var seenCh bool
		return p.Fields(true, func(key []byte) bool {
			switch string(key) {
			case "channel":
				if seenCh || p.I >= len(p.B) || p.B[p.I] != '"' {
					return false
				}
				seenCh = true
				var ok bool
				ch, ok = p.Str()
				return ok
			case "pub":
				if hasPub || !p.Eat('{') {
					return false
				}
				hasPub = true
				var seenData, seenOffset bool
				return p.Fields(true, func(key []byte) bool {
					switch string(key) {
					case "data":
						if seenData || p.I >= len(p.B) || p.B[p.I] == 'n' {
							return false
						}
						seenData = true
						start := p.I
						if !p.Skip(0) {
							return false
						}
						data = p.B[start:p.I]
						return true
					case "offset":
						var off uint64
						if seenOffset {
							return false
						}
						seenOffset = true
						return p.UintField(&off, 64)
					}
					return p.Skip(0)
				})
			}
			return p.Skip(0)
		})
	})
	p.Space()
	if !ok || p.I != len(line) {
		return nil, false, false
	}
	if !push {
		return nil, true, true
	}
	if !hasPub || string(ch) != channel {
		data = nil
	}
	return data, false, true
}
