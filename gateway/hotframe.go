package gateway

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"parley/gateway/wire"
)

// decodeFlat is decodeFrame's fast path for the frames every message
// costs (send, and the ping every client writes): a flat JSON object
// whose keys are all among type, ref, conversation, id and body (strings)
// and internal (a boolean), each written exactly so. It fills f as
// encoding/json would from the same bytes and reports true, or reports
// false, f then unspecified, for anything else (another key, another
// spelling of one, a null, a number, a nested value, a surrogate escape,
// invalid JSON), which encoding/json then decodes, or refuses with its
// own error. data is valid UTF-8 (decodeFrame checked). FuzzDecodeFlat
// compares the two on the same bytes.
func decodeFlat(data []byte, f *inFrame) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return false
		}
		// A key without escapes: one that needs them is no key of ours
		// as written.
		j := i + 1
		for j < len(data) && data[j] != '"' && data[j] != '\\' && data[j] >= 0x20 {
			j++
		}
		if j >= len(data) || data[j] != '"' {
			return false
		}
		key := data[i+1 : j]
		i = skipSpace(data, j+1)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		if i >= len(data) {
			return false
		}
		if string(key) == "internal" {
			switch {
			case hasAt(data, i, "true"):
				f.Internal, i = true, i+4
			case hasAt(data, i, "false"):
				f.Internal, i = false, i+5
			default:
				return false
			}
		} else {
			var dst *string
			switch string(key) {
			case "type":
				dst = &f.Type
			case "ref":
				dst = &f.Ref
			case "conversation":
				dst = &f.Conversation
			case "id":
				dst = &f.ID
			case "body":
				if f.Body == nil {
					f.Body = new(string)
				}
				dst = f.Body
			default:
				return false
			}
			s, n, ok := flatString(data, i)
			if !ok {
				return false
			}
			*dst, i = s, n
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

// skipSpace returns the index of the first byte of data at or after i
// that is not JSON whitespace.
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

func hasAt(data []byte, i int, lit string) bool {
	return len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit
}

// flatString reads the JSON string starting at data[i] (a quote) and
// returns its value and the index after its closing quote. A string
// holding a control character is invalid JSON, and one with an escaped
// surrogate is left to encoding/json (which pairs them or writes U+FFFD):
// false.
func flatString(data []byte, i int) (string, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return "", 0, false
	}
	start := i + 1
	j := start
	for j < len(data) && data[j] != '"' && data[j] != '\\' {
		if data[j] < 0x20 {
			return "", 0, false
		}
		j++
	}
	if j >= len(data) {
		return "", 0, false
	}
	if data[j] == '"' {
		return string(data[start:j]), j + 1, true
	}
	// Escapes: unquote into a new buffer.
	b := make([]byte, 0, j-start+16)
	b = append(b, data[start:j]...)
	for j < len(data) {
		c := data[j]
		switch {
		case c == '"':
			return string(b), j + 1, true
		case c < 0x20:
			return "", 0, false
		case c != '\\':
			b = append(b, c)
			j++
			continue
		}
		if j+1 >= len(data) {
			return "", 0, false
		}
		switch data[j+1] {
		case '"', '\\', '/':
			b = append(b, data[j+1])
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := hex4(data, j+2)
			if !ok || utf16.IsSurrogate(r) {
				return "", 0, false
			}
			b = utf8.AppendRune(b, r)
			j += 6
			continue
		default:
			return "", 0, false
		}
		j += 2
	}
	return "", 0, false
}

// hex4 reads the four hex digits of a \u escape at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if len(data)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// encodeAck is encode(a) without reflection: the same bytes as
// encoding/json's (FuzzEncodeAck). A string with a byte encoding/json
// escapes (a quote, a backslash, a control character, <, >, &, or
// anything outside ASCII) is rare in an ack, whose conversation and id
// were validated: such an ack goes to encoding/json.
func encodeAck(a wire.Ack) []byte {
	if !plainJSON(a.Type) || !plainJSON(a.Ref) || !plainJSON(a.Conversation) || !plainJSON(a.ID) || (a.TS != nil && !plainJSON(a.TS.Node)) {
		return encode(a)
	}
	b := make([]byte, 0, 96+len(a.Ref)+len(a.Conversation)+len(a.ID))
	b = append(b, `{"type":"`...)
	b = append(b, a.Type...)
	if a.Ref != "" {
		b = append(b, `","ref":"`...)
		b = append(b, a.Ref...)
	}
	b = append(b, `","conversation":"`...)
	b = append(b, a.Conversation...)
	if a.ID != "" {
		b = append(b, `","id":"`...)
		b = append(b, a.ID...)
	}
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, a.Seq, 10)
	if a.TS != nil {
		b = append(b, `,"ts":{"w":`...)
		b = strconv.AppendInt(b, a.TS.Wall, 10)
		b = append(b, `,"l":`...)
		b = strconv.AppendUint(b, uint64(a.TS.Logical), 10)
		b = append(b, `,"n":"`...)
		b = append(b, a.TS.Node...)
		b = append(b, `"}`...)
	}
	b = append(b, `,"dup":`...)
	b = strconv.AppendBool(b, a.Dup)
	return append(b, '}')
}

// plainJSON says whether encoding/json writes s as it is, between quotes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
