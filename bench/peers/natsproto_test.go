package peers

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// collect feeds chunks and returns the operations (payloads copied).
func collect(p *natsParser, chunks ...[]byte) ([]natsOp, error) {
	var ops []natsOp
	for _, c := range chunks {
		err := p.feed(c, func(op natsOp) error {
			if op.Payload != nil {
				op.Payload = bytes.Clone(op.Payload)
			}
			ops = append(ops, op)
			return nil
		})
		if err != nil {
			return ops, err
		}
	}
	return ops, nil
}

func TestNATSParser(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []natsOp
		err      string
	}{
		{name: "info", in: "INFO {\"server_id\":\"x\"}\r\n", want: []natsOp{{Kind: "INFO", Arg: `{"server_id":"x"}`}}},
		{name: "ping pong ok", in: "PING\r\nPONG\r\n+OK\r\n", want: []natsOp{{Kind: "PING"}, {Kind: "PONG"}, {Kind: "+OK"}}},
		{name: "lower case", in: "ping\r\nmsg a 1 2\r\nhi\r\n", want: []natsOp{{Kind: "PING"}, {Kind: "MSG", Subject: "a", Sid: "1", Payload: []byte("hi")}}},
		{name: "msg", in: "MSG room 1 5\r\nhello\r\n", want: []natsOp{{Kind: "MSG", Subject: "room", Sid: "1", Payload: []byte("hello")}}},
		{name: "msg with reply", in: "MSG room 9 _INBOX.x 3\r\nabc\r\n", want: []natsOp{{Kind: "MSG", Subject: "room", Sid: "9", Reply: "_INBOX.x", Payload: []byte("abc")}}},
		{name: "empty payload", in: "MSG room 1 0\r\n\r\n", want: []natsOp{{Kind: "MSG", Subject: "room", Sid: "1", Payload: []byte{}}}},
		{name: "payload holding CRLF", in: "MSG r 1 4\r\n\r\n\r\n\r\nPING\r\n", want: []natsOp{{Kind: "MSG", Subject: "r", Sid: "1", Payload: []byte("\r\n\r\n")}, {Kind: "PING"}}},
		{name: "err", in: "-ERR 'Authorization Violation'\r\n", want: []natsOp{{Kind: "-ERR", Arg: "'Authorization Violation'"}}},
		{name: "incomplete line waits", in: "PIN", want: nil},
		{name: "incomplete payload waits", in: "MSG r 1 10\r\nabc", want: nil},
		{name: "unknown op", in: "HELLO\r\n", err: "unknown operation"},
		{name: "msg bad args", in: "MSG r\r\n", err: "3 or 4 arguments"},
		{name: "msg bad size", in: "MSG r 1 x\r\n", err: "MSG size"},
		{name: "msg negative size", in: "MSG r 1 -1\r\n", err: "MSG size"},
		{name: "payload without CRLF", in: "MSG r 1 2\r\nabcd\r\n", err: "not followed by CRLF"},
		{name: "too large", in: "MSG r 1 2000000\r\n", err: "MSG size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Whole, and split at every byte: the same operations.
			splits := [][][]byte{{[]byte(tc.in)}}
			for i := 1; i < len(tc.in); i++ {
				splits = append(splits, [][]byte{[]byte(tc.in[:i]), []byte(tc.in[i:])})
			}
			for _, chunks := range splits {
				got, err := collect(&natsParser{}, chunks...)
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errNATSProto) {
						t.Fatalf("%q: err %v, want %q", chunks, err, tc.err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%q: %v", chunks, err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("%q: got %+v, want %+v", chunks, got, tc.want)
				}
			}
		})
	}
}

func TestNATSParserKeepsRestAcrossFeeds(t *testing.T) {
	p := &natsParser{}
	var msgs []string
	stream := ""
	for k := range 50 {
		stream += fmt.Sprintf("MSG room 1 %d\r\n%s\r\n", len(fmt.Sprint(k)), fmt.Sprint(k))
	}
	// Chunks of 7 bytes: operations straddle every boundary.
	for i := 0; i < len(stream); i += 7 {
		end := min(i+7, len(stream))
		if err := p.feed([]byte(stream[i:end]), func(op natsOp) error { msgs = append(msgs, string(op.Payload)); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if len(msgs) != 50 || msgs[0] != "0" || msgs[49] != "49" {
		t.Fatalf("got %d messages: %v", len(msgs), msgs)
	}
	if p.buf != nil {
		t.Fatalf("left %q", p.buf)
	}
}

func TestNATSParserStopsOnEmitError(t *testing.T) {
	boom := errors.New("boom")
	err := (&natsParser{}).feed([]byte("PING\r\nPING\r\n"), func(natsOp) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
}

func TestNATSParserLineBound(t *testing.T) {
	err := (&natsParser{}).feed(bytes.Repeat([]byte("A"), natsMaxLine+1), func(natsOp) error { return nil })
	if err == nil {
		t.Fatal("an endless line was accepted")
	}
}

func TestNATSEncoders(t *testing.T) {
	b, err := natsPub(nil, "room", []byte("hello"))
	if err != nil || string(b) != "PUB room 5\r\nhello\r\n" {
		t.Fatalf("pub %q %v", b, err)
	}
	if s, err := natsSub("room", "1"); err != nil || string(s) != "SUB room 1\r\n" {
		t.Fatalf("sub %q %v", s, err)
	}
	for _, bad := range []string{"", "a b", "a\r\nPING"} {
		if _, err := natsPub(nil, bad, nil); err == nil {
			t.Errorf("subject %q accepted", bad)
		}
		if _, err := natsSub(bad, "1"); err == nil {
			t.Errorf("sub subject %q accepted", bad)
		}
	}
	c := string(natsConnect("x"))
	if !strings.HasPrefix(c, "CONNECT {") || !strings.HasSuffix(c, "}\r\n") || !strings.Contains(c, `"echo":false`) || !strings.Contains(c, `"verbose":false`) {
		t.Fatalf("connect %q", c)
	}
	// What the publisher writes, the parser reads back as a MSG once the
	// server has rewritten PUB as MSG.
	msg := strings.Replace(string(b), "PUB room", "MSG room 1", 1)
	ops, err := collect(&natsParser{}, []byte(msg))
	if err != nil || len(ops) != 1 || string(ops[0].Payload) != "hello" {
		t.Fatalf("%+v %v", ops, err)
	}
}

// FuzzNATSParser: no input panics, and feeding a stream in two pieces
// gives what feeding it whole gives.
func FuzzNATSParser(f *testing.F) {
	for _, s := range []string{"PING\r\n", "MSG a 1 3\r\nabc\r\n", "INFO {}\r\nMSG a 1 _R 0\r\n\r\n", "MSG a 1 5\r\nab", "-ERR x\r\n+OK\r\n"} {
		f.Add([]byte(s), uint16(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		whole, errW := collect(&natsParser{MaxPayload: 1 << 16}, b)
		i := int(cut) % (len(b) + 1)
		split, errS := collect(&natsParser{MaxPayload: 1 << 16}, b[:i], b[i:])
		if (errW == nil) != (errS == nil) {
			// A line longer than the bound may be refused in one piece and
			// not yet in another; nothing else may differ.
			if len(b) <= natsMaxLine {
				t.Fatalf("whole err %v, split err %v", errW, errS)
			}
			return
		}
		if errW == nil && !reflect.DeepEqual(whole, split) {
			t.Fatalf("whole %+v, split at %d %+v", whole, i, split)
		}
	})
}

// FuzzNATSMsgLine: where the allocation-free MSG reader takes a line, it
// gives what parseNATSLine gives; the lines it leaves go to
// parseNATSLine.
func FuzzNATSMsgLine(f *testing.F) {
	for _, s := range []string{"MSG a 1 3", "MSG a.b 1 _R 0", "MSG  a\t1  12 ", "MSG a 1 +3", "MSG a 1 -3",
		"MSG a 1 2 3 4", "MSG a 1", "MSG \xc2\xa0a 1 3", "MSG a 1 0012", "MSG a 1 9999999999", "msg a 1 3", "PING"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		p := &natsParser{}
		for range 2 { // the second time through the interned strings
			op, size, ok := p.msgLine(line, 1<<16)
			if !ok {
				return
			}
			want, wantSize, err := parseNATSLine(line, 1<<16)
			if err != nil || !reflect.DeepEqual(op, want) || size != wantSize {
				t.Fatalf("%q: msgLine %+v %d, parseNATSLine %+v %d %v", line, op, size, want, wantSize, err)
			}
		}
	})
}

// TestNATSMsgLineAllocatesNothing: a subscriber's MSG lines, after the
// first, cost no allocation.
func TestNATSMsgLineAllocatesNothing(t *testing.T) {
	p := &natsParser{}
	stream := []byte("MSG room 1 5\r\nhello\r\nMSG room 1 3\r\nabc\r\n")
	emit := func(natsOp) error { return nil }
	if err := p.feed(stream, emit); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = p.feed(stream, emit) }); n != 0 {
		t.Fatalf("%v allocations per feed of two MSGs", n)
	}
}
