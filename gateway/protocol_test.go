package gateway

import (
	"strings"
	"testing"
	"unicode/utf8"

	"parley/gateway/wire"
	"parley/ident"
)

func FuzzDecodeFrame(f *testing.F) {
	seeds := []string{
		`{"type":"hello","v":1,"workspace":"demo","role":"visitor"}`,
		`{"type":"hello","v":1,"workspace":"demo","role":"agent","token":"abc"}`,
		`{"type":"hello","v":1,"workspace":"demo","role":"visitor","visitor_id":"0123456789abcdef0123456789abcdef","visitor_sig":"` + strings.Repeat("a", 64) + `"}`,
		`{"type":"send","ref":"r1","conversation":"c_0123456789abcdef01234567","id":"m-00000001","body":"hi"}`,
		`{"type":"edit","conversation":"c_0123456789abcdef01234567","id":"m-00000001","body":"hi"}`,
		`{"type":"delete","conversation":"c_0123456789abcdef01234567","id":"m-00000001"}`,
		`{"type":"resume","conversation":"c_0123456789abcdef01234567","after":3}`,
		`{"type":"read","conversation":"c_0123456789abcdef01234567","seq":3}`,
		`{"type":"typing","conversation":"c_0123456789abcdef01234567","typing":true}`,
		`{"type":"view","conversation":"c_0123456789abcdef01234567","viewing":true}`,
		`{"type":"ping"}`, `{"type":"start"}`, `{"type":"list"}`,
		`{}`, `[]`, `null`, `{"type":1}`, "\xff", `{"type":"send","body":"\u0000"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, werr := decodeFrame(data)
		if werr != nil {
			if werr.Code == "" || werr.Message == "" {
				t.Fatalf("error without code or message: %+v", werr)
			}
			if !utf8.ValidString(werr.Message) {
				t.Fatalf("error message is not UTF-8: %q", werr.Message)
			}
			return
		}
		// Whatever passes validation must satisfy the documented limits.
		if len(data) > wire.MaxFrameBytes || !utf8.Valid(data) || len(fr.Ref) > maxRef {
			t.Fatalf("accepted an invalid frame: %q", data)
		}
		switch fr.Type {
		case "send", "edit":
			if fr.Body == nil || utf8.RuneCountInString(*fr.Body) > maxBody || *fr.Body == "" {
				t.Fatalf("accepted a bad body: %q", data)
			}
			fallthrough
		case "delete":
			if !reMsgID.MatchString(fr.ID) || !ident.ValidConversation(fr.Conversation) {
				t.Fatalf("accepted bad ids: %q", data)
			}
		case "hello":
			if fr.V != wire.ProtocolVersion || !ident.ValidID(fr.Workspace) {
				t.Fatalf("accepted a bad hello: %q", data)
			}
		case "view":
			if !ident.ValidConversation(fr.Conversation) || fr.Viewing == nil {
				t.Fatalf("accepted a bad view: %q", data)
			}
		case "resume", "read", "typing", "ping", "start", "list":
		default:
			t.Fatalf("accepted unknown type %q", fr.Type)
		}
	})
}

func TestDecodeFrameTable(t *testing.T) {
	t.Parallel()
	conv := "c_0123456789abcdef01234567"
	cases := []struct {
		frame string
		code  string
	}{
		{`{"type":"ping"}`, ""},
		{`{"type":"hello","v":1,"workspace":"Demo","role":"visitor"}`, wire.CodeBadRequest},
		{`{"type":"hello","v":1,"workspace":"demo","role":"admin"}`, wire.CodeBadRequest},
		{`{"type":"hello","v":1,"workspace":"demo","role":"agent"}`, wire.CodeBadRequest},
		{`{"type":"hello","v":1,"workspace":"demo","role":"visitor","user_id":"1"}`, wire.CodeBadRequest},
		{`{"type":"hello","v":1,"workspace":"demo","role":"visitor","name":"a\u0007b"}`, wire.CodeBadRequest},
		{`{"type":"hello","v":0,"workspace":"demo","role":"visitor"}`, wire.CodeVersionUnsupported},
		{`{"type":"read","conversation":"` + conv + `","seq":0}`, wire.CodeBadRequest},
		{`{"type":"send","conversation":"` + conv + `","id":"m-00000001"}`, wire.CodeBadRequest},
		{`{"type":"send","conversation":"` + conv + `","id":"m-00000001","body":"line\nbreak"}`, ""},
		{`{"type":"send","conversation":"` + conv + `","id":"email-0000001","body":"ann@example.com"}`, ""},
		{`{"type":"send","conversation":"` + conv + `","id":"email-0000001","body":"not an address"}`, wire.CodeBadEmail},
		{`{"type":"send","conversation":"` + conv + `","id":"email-0000001","body":"Ann <ann@example.com>"}`, wire.CodeBadEmail},
		{`{"type":"edit","conversation":"` + conv + `","id":"email-0000001","body":"ann@"}`, wire.CodeBadEmail},
		{`{"type":"ping","ref":"` + strings.Repeat("r", 65) + `"}`, wire.CodeBadRequest},
		{`{"type":"send","body":12}`, wire.CodeBadFrame},
	}
	for _, c := range cases {
		_, werr := decodeFrame([]byte(c.frame))
		got := ""
		if werr != nil {
			got = werr.Code
		}
		if got != c.code {
			t.Errorf("%s: code %q, want %q (%v)", c.frame, got, c.code, werr)
		}
	}
}
