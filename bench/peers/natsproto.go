package peers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The NATS client protocol (text lines ending in CRLF; a MSG or PUB line is
// followed by its payload and CRLF), as the fan-out driver speaks it over
// nats-server's WebSocket listener. Over WebSocket the protocol is a byte
// stream: one WebSocket message may hold several operations or part of one,
// so the parser keeps what it has not finished.

// natsOp is one operation from the server.
type natsOp struct {
	Kind    string // INFO, MSG, PING, PONG, +OK, -ERR
	Subject string // MSG
	Sid     string // MSG
	Reply   string // MSG, optional
	Payload []byte // MSG: valid only during the callback
	Arg     string // INFO: the JSON; -ERR: the message
}

// natsMaxLine bounds a control line (INFO with many cluster URLs is the
// longest the server sends).
const natsMaxLine = 64 << 10

// natsParser turns the server's byte stream into operations.
type natsParser struct {
	// MaxPayload refuses larger MSG payloads. Zero: 1 MiB (the server's
	// default max_payload).
	MaxPayload int
	buf        []byte

	subject, sid, reply string // the last MSG's (msgLine)
}

var errNATSProto = errors.New("nats protocol")

// feed parses b after what earlier calls left, calling emit for each
// complete operation; an incomplete one waits for the next call. An error
// (from the stream or from emit) leaves the parser unusable.
func (p *natsParser) feed(b []byte, emit func(natsOp) error) error {
	maxPayload := p.MaxPayload
	if maxPayload <= 0 {
		maxPayload = 1 << 20
	}
	data := b
	if len(p.buf) > 0 {
		p.buf = append(p.buf, b...)
		data = p.buf
	}
	for len(data) > 0 {
		eol := bytes.Index(data, []byte("\r\n"))
		if eol < 0 {
			if len(data) > natsMaxLine {
				return fmt.Errorf("%w: control line longer than %d bytes", errNATSProto, natsMaxLine)
			}
			break
		}
		line := data[:eol]
		n := eol + 2
		op, size, ok := p.msgLine(line, maxPayload)
		if !ok {
			var err error
			if op, size, err = parseNATSLine(line, maxPayload); err != nil {
				return err
			}
		}
		if op.Kind == "MSG" {
			if len(data) < n+size+2 {
				n = -1 // the payload is not all here yet
			} else if data[n+size] != '\r' || data[n+size+1] != '\n' {
				return fmt.Errorf("%w: MSG payload not followed by CRLF", errNATSProto)
			} else {
				op.Payload = data[n : n+size : n+size]
				n += size + 2
			}
		}
		if n < 0 {
			break
		}
		if err := emit(op); err != nil {
			return err
		}
		data = data[n:]
	}
	// Keep the unfinished rest (copied: data may alias b or p.buf).
	p.buf = append(p.buf[:0:0], data...)
	if len(p.buf) == 0 {
		p.buf = nil
	}
	return nil
}

// parseNATSLine parses a control line (without its CRLF); for MSG, size
// is the payload's length.
func parseNATSLine(line []byte, maxPayload int) (op natsOp, size int, err error) {
	name, arg, _ := strings.Cut(string(line), " ")
	arg = strings.TrimLeft(arg, " \t")
	op = natsOp{Kind: strings.ToUpper(name)}
	switch op.Kind {
	case "PING", "PONG", "+OK":
	case "INFO", "-ERR":
		op.Arg = arg
	case "MSG":
		f := strings.Fields(arg)
		if len(f) != 3 && len(f) != 4 {
			return op, 0, fmt.Errorf("%w: MSG wants 3 or 4 arguments, got %q", errNATSProto, arg)
		}
		size, err = strconv.Atoi(f[len(f)-1])
		if err != nil || size < 0 || size > maxPayload {
			return op, 0, fmt.Errorf("%w: MSG size %q", errNATSProto, f[len(f)-1])
		}
		op.Subject, op.Sid = f[0], f[1]
		if len(f) == 4 {
			op.Reply = f[2]
		}
	default:
		return op, 0, fmt.Errorf("%w: unknown operation %.40q", errNATSProto, name)
	}
	return op, size, nil
}

// msgLine is parseNATSLine for the line a subscriber reads a million
// times a run, "MSG <subject> <sid> [reply] <size>" in ASCII with a size
// of plain digits, without allocating: the subject, sid and reply are the
// strings of the last MSG when their bytes are the same (they are, for a
// subscriber's one subscription). Anything else (another operation, a
// byte past ASCII, a size with a sign or out of range, a bad field count)
// is not ok, and goes to parseNATSLine, which gives the same operation or
// the error. FuzzNATSMsgLine compares the two.
func (p *natsParser) msgLine(line []byte, maxPayload int) (natsOp, int, bool) {
	if len(line) < 4 || string(line[:4]) != "MSG " {
		return natsOp{}, 0, false
	}
	var f [4][]byte
	k := 0
	for i := 4; i < len(line); {
		c := line[i]
		if c >= 0x80 {
			return natsOp{}, 0, false
		}
		if asciiSpace(c) {
			i++
			continue
		}
		j := i
		for j < len(line) && !asciiSpace(line[j]) {
			if line[j] >= 0x80 {
				return natsOp{}, 0, false
			}
			j++
		}
		if k == len(f) {
			return natsOp{}, 0, false
		}
		f[k] = line[i:j]
		k++
		i = j
	}
	if k != 3 && k != 4 {
		return natsOp{}, 0, false
	}
	digits := f[k-1]
	if len(digits) == 0 || len(digits) > 9 {
		return natsOp{}, 0, false
	}
	size := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return natsOp{}, 0, false
		}
		size = size*10 + int(c-'0')
	}
	if size > maxPayload {
		return natsOp{}, 0, false
	}
	p.subject = p.intern(p.subject, f[0])
	p.sid = p.intern(p.sid, f[1])
	op := natsOp{Kind: "MSG", Subject: p.subject, Sid: p.sid}
	if k == 4 {
		p.reply = p.intern(p.reply, f[2])
		op.Reply = p.reply
	}
	return op, size, true
}

// intern is last when b spells it, else b as a new string.
func (p *natsParser) intern(last string, b []byte) string {
	if string(b) == last {
		return last
	}
	return string(b)
}

// asciiSpace is strings.Fields's white space among ASCII bytes.
func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// natsConnect is the CONNECT line: no echo of the connection's own
// publishes, no +OK after every operation.
func natsConnect(name string) []byte {
	opts, _ := json.Marshal(map[string]any{"verbose": false, "pedantic": false, "protocol": 1, "echo": false,
		"name": name, "lang": "go", "version": "parley-bench", "headers": false})
	return append(append([]byte("CONNECT "), opts...), "\r\n"...)
}

// natsSubject checks a subject or sid: not empty, no whitespace.
func natsSubject(s string) error {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("nats subject %q: empty or with whitespace", s)
	}
	return nil
}

// natsSub is a SUB line.
func natsSub(subject, sid string) ([]byte, error) {
	if err := errors.Join(natsSubject(subject), natsSubject(sid)); err != nil {
		return nil, err
	}
	return []byte("SUB " + subject + " " + sid + "\r\n"), nil
}

// natsPub appends a PUB operation to buf.
func natsPub(buf []byte, subject string, payload []byte) ([]byte, error) {
	if err := natsSubject(subject); err != nil {
		return nil, err
	}
	buf = append(buf, "PUB "...)
	buf = append(buf, subject...)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, int64(len(payload)), 10)
	buf = append(buf, "\r\n"...)
	buf = append(buf, payload...)
	return append(buf, "\r\n"...), nil
}

var (
	natsPing = []byte("PING\r\n")
	natsPong = []byte("PONG\r\n")
)
