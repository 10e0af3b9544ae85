package gateway

import (
	"strconv"
	"strings"
	"unicode/utf16"

	"parley/crdt"
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
//
// The strings it fills share nothing with data, which the caller may
// reuse. A known type is the protocol's constant; ref, conversation and
// id (and an unknown type) share one new string, the body has its own:
// so a frame costs at most three allocations (the body's pointer among
// them), and whatever keeps its conversation or id (a map's key) keeps
// those few bytes, not the message's body.
func decodeFlat(data []byte, f *inFrame) bool {
	// Where each string field's value is in data, quotes included, and
	// whether it holds escapes; the last of a repeated key counts, as in
	// encoding/json.
	var spans [flatFields]flatSpan
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
			var k int
			switch string(key) {
			case "type":
				k = flatType
			case "ref":
				k = flatRef
			case "conversation":
				k = flatConversation
			case "id":
				k = flatID
			case "body":
				k = flatBody
			default:
				return false
			}
			n, esc, ok := scanString(data, i)
			if !ok {
				return false
			}
			spans[k] = flatSpan{from: i, to: n, esc: esc, set: true}
			i = n
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			if skipSpace(data, i+1) != len(data) {
				return false
			}
			f.fillFlat(data, &spans)
			return true
		default:
			return false
		}
	}
}

// The string fields decodeFlat reads, by index in its spans.
const (
	flatType = iota
	flatRef
	flatConversation
	flatID
	flatBody
	flatFields
)

// flatSpan is where one string field's value is in a frame: data[from:to]
// is the JSON string, quotes included; esc says it holds an escape.
type flatSpan struct {
	from, to int
	esc, set bool
}

// fillFlat sets f's string fields from the spans decodeFlat found in data.
func (f *inFrame) fillFlat(data []byte, spans *[flatFields]flatSpan) {
	if t := spans[flatType]; t.set && !t.esc {
		if s, ok := knownType(data[t.from+1 : t.to-1]); ok {
			f.Type = s
			spans[flatType].set = false
		}
	}
	// One string for the short fields: their unescaped values are no
	// longer than their JSON.
	size := 0
	for k := flatType; k < flatBody; k++ {
		if spans[k].set {
			size += spans[k].to - spans[k].from - 2
		}
	}
	var b strings.Builder
	b.Grow(size)
	var ends [flatBody]int
	for k := flatType; k < flatBody; k++ {
		if sp := spans[k]; sp.set {
			appendUnquoted(&b, data[sp.from:sp.to], sp.esc)
		}
		ends[k] = b.Len()
	}
	all, at := b.String(), 0
	for k, dst := range [flatBody]*string{&f.Type, &f.Ref, &f.Conversation, &f.ID} {
		if spans[k].set {
			*dst = all[at:ends[k]]
		}
		at = ends[k]
	}
	if sp := spans[flatBody]; sp.set {
		var body strings.Builder
		body.Grow(sp.to - sp.from - 2)
		appendUnquoted(&body, data[sp.from:sp.to], sp.esc)
		f.Body = new(string)
		*f.Body = body.String()
	}
}

// knownType is the protocol's constant for a client frame's type written
// as raw, without an allocation.
func knownType(raw []byte) (string, bool) {
	for _, t := range clientTypes {
		if string(raw) == t {
			return t, true
		}
	}
	return "", false
}

// clientTypes are the types of the frames a client sends, the frequent
// first.
var clientTypes = [...]string{
	wire.TypeSend, wire.TypePing, wire.TypeTyping, wire.TypeRead, wire.TypeView,
	wire.TypeEdit, wire.TypeDelete, wire.TypeResume, wire.TypeStart, wire.TypeList,
	wire.TypeHello, wire.TypeForget, wire.TypeStatus, wire.TypeInbox, wire.TypeContext,
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

// scanString checks the JSON string starting at data[i] (a quote) and
// returns the index after its closing quote and whether it holds an
// escape. A string holding a control character is invalid JSON, and one
// with an escaped surrogate is left to encoding/json (which pairs them or
// writes U+FFFD): false.
func scanString(data []byte, i int) (end int, esc, ok bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, false, false
	}
	j := i + 1
	for {
		for j < len(data) && plainStringByte[data[j]] {
			j++
		}
		if j >= len(data) {
			return 0, false, false
		}
		switch data[j] {
		case '"':
			return j + 1, esc, true
		case '\\':
		default: // a control character
			return 0, false, false
		}
		esc = true
		if j+1 >= len(data) {
			return 0, false, false
		}
		switch data[j+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			j += 2
		case 'u':
			r, ok := hex4(data, j+2)
			if !ok || utf16.IsSurrogate(r) {
				return 0, false, false
			}
			j += 6
		default:
			return 0, false, false
		}
	}
}

// plainStringByte says which bytes stand for themselves inside a JSON
// string: all but the quote, the backslash and the control characters.
var plainStringByte = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '"' && c != '\\'
	}
	return t
}()

// appendUnquoted writes the value of q, a JSON string scanString took
// (quotes included), to b: as it is unless esc, else unescaped.
func appendUnquoted(b *strings.Builder, q []byte, esc bool) {
	q = q[1 : len(q)-1]
	if !esc {
		b.Write(q)
		return
	}
	for j := 0; j < len(q); {
		c := q[j]
		if c != '\\' {
			b.WriteByte(c)
			j++
			continue
		}
		switch q[j+1] {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, _ := hex4(q, j+2)
			b.WriteRune(r)
			j += 6
			continue
		default: // '"', '\\', '/'
			b.WriteByte(q[j+1])
		}
		j += 2
	}
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
		return encodeAckJSON(a)
	}
	// Room for all of it: 89 bytes of keys and punctuation, the numbers
	// at their longest (20, 20 and 10 digits) and the strings.
	size := 139 + len(a.Type) + len(a.Ref) + len(a.Conversation) + len(a.ID)
	if a.TS != nil {
		size += len(a.TS.Node)
	}
	b := make([]byte, 0, size)
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

// encodeAckJSON is encode(a) for the rare ack encodeAck cannot write,
// on copies of what a points to: handed to encode as it is, a would go
// to the heap, and the compiler would send there whatever every caller's
// ack points to (its stamp, usually on the caller's stack) for every ack.
func encodeAckJSON(a wire.Ack) []byte {
	var ts *crdt.Timestamp
	if a.TS != nil {
		ts = &crdt.Timestamp{Wall: a.TS.Wall, Logical: a.TS.Logical, Node: strings.Clone(a.TS.Node)}
	}
	return encode(wire.Ack{
		Type: strings.Clone(a.Type), Ref: strings.Clone(a.Ref), Conversation: strings.Clone(a.Conversation),
		ID: strings.Clone(a.ID), Seq: a.Seq, TS: ts, Dup: a.Dup,
	})
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
