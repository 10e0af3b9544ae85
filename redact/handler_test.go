package redact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Personal data used in the tests; none of it may reach the output.
const (
	email     = "ada.lovelace@example.com"
	phone     = "+44 20 7946 0958"
	phoneUS   = "(555) 123-4567"
	visName   = "Ada Lovelace"
	chatBody  = "my card ends in 4242, call me"
	userID    = "u-8812"
	visitorIP = "203.0.113.77"
)

// Non-personal data that must survive.
const (
	convID   = "c_9f3a2b41c07e5d1234567890"
	listen   = "127.0.0.1:8080"
	stamp    = "2026-11-24T05:06:35Z"
	version  = "1.25.0"
	bytesStr = "1048576"
)

type contact struct {
	Name  string
	Email string
	Phone string
}

// stringer is a fmt.Stringer whose String holds personal data.
type stringer struct{ who string }

func (s stringer) String() string { return "visitor " + s.who + " <" + email + ">" }

// nilStringer panics in String on a nil receiver.
type nilStringer struct{ s string }

func (n *nilStringer) String() string { return n.s }

// valuer is a LogValuer that resolves to a group with personal data.
type valuer struct{}

func (valuer) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("email", email),
		slog.String("note", "reach me on "+phone),
		slog.String("conversation", convID),
	)
}

func TestHandler(t *testing.T) {
	t.Parallel()
	wrapped := fmt.Errorf("send to %s: %w", email, errors.New("mailbox full"))
	tests := []struct {
		name    string
		cfg     Config
		log     func(*slog.Logger)
		absent  []string // personal data
		present []string // non-personal data
	}{
		{
			name: "message and string attrs",
			log: func(l *slog.Logger) {
				l.Info("visitor "+email+" called from "+phone,
					"conversation", convID, "note", "call back on "+phoneUS)
			},
			absent:  []string{email, phone, phoneUS, "123-4567"},
			present: []string{`"msg":"visitor [email] called from [phone]"`, convID, `"note":"call back on [phone]"`},
		},
		{
			name: "a visitor's context",
			log: func(l *slog.Logger) {
				l.Info("context", "conversation", convID,
					"context", map[string]any{"url": "https://shop.example/orders/77", "attrs": map[string]string{"plan": "pro"}},
					"referrer", "https://search.example/?q=refund", "page_url", "https://shop.example/orders/77")
			},
			absent:  []string{"shop.example", "search.example", "pro"},
			present: []string{`"context":"[redacted]"`, `"referrer":"[redacted]"`, convID},
		},
		{
			name: "sensitive keys of every kind",
			log: func(l *slog.Logger) {
				l.Info("hello",
					"name", visName,
					"EMAIL", email,
					"Phone", phone,
					"user_id", 8812,
					"visitor_id", userID,
					"body", chatBody,
					"ip", visitorIP,
					"message", contact{visName, email, phone},
					"text", []string{chatBody},
					"conversation", convID,
					"count", 42,
					"elapsed", 1500*time.Millisecond,
				)
			},
			absent:  []string{visName, "Ada", email, phone, "8812", userID, chatBody, visitorIP, "4242"},
			present: []string{`"name":"[redacted]"`, `"EMAIL":"[redacted]"`, `"user_id":"[redacted]"`, `"message":"[redacted]"`, `"count":42`, `"elapsed":1500000000`, convID},
		},
		{
			name: "nested groups",
			log: func(l *slog.Logger) {
				l.Info("join", slog.Group("visitor",
					slog.String("name", visName),
					slog.Group("contact", slog.String("email", email), slog.String("note", "or "+phone)),
					slog.Group("name", slog.String("first", "Ada"), slog.String("last", "Lovelace")),
					slog.String("conversation", convID),
					slog.Int("messages", 7),
				))
			},
			absent:  []string{visName, "Ada", "Lovelace", email, phone},
			present: []string{`"visitor":{"name":"[redacted]","contact":{"email":"[redacted]","note":"or [phone]"},"name":"[redacted]","conversation":"` + convID + `","messages":7}`},
		},
		{
			name: "inline group",
			log: func(l *slog.Logger) {
				l.Info("x", slog.Group("", slog.String("email", email), slog.String("addr", listen)))
			},
			absent:  []string{email},
			present: []string{`"email":"[redacted]"`, `"addr":"` + listen + `"`},
		},
		{
			name: "WithAttrs and WithGroup",
			log: func(l *slog.Logger) {
				l = l.With("conversation", convID, "visitor_name", visName, "from", email)
				l = l.WithGroup("req").With("remote_addr", visitorIP+":51234", "listen", listen)
				l.WithGroup("").Info("got", "phone", phone, "note", "ring "+phoneUS, "bytes", 1048576)
			},
			absent:  []string{visName, email, visitorIP, phone, phoneUS},
			present: []string{convID, `"visitor_name":"[redacted]"`, `"from":"[email]"`, `"req":{"remote_addr":"[redacted]","listen":"` + listen + `","phone":"[redacted]","note":"ring [phone]","bytes":1048576}`},
		},
		{
			name: "sensitive WithGroup name",
			log: func(l *slog.Logger) {
				l.WithGroup("Visitor_Name").With("first", "Ada").Info("x", "last", "Lovelace", "n", 3,
					slog.Group("g", slog.String("k", "v")))
			},
			absent:  []string{"Ada", "Lovelace"},
			present: []string{`"Visitor_Name":{"first":"[redacted]","last":"[redacted]","n":"[redacted]","g":"[redacted]"}`},
		},
		{
			name: "errors, Stringers and strings in Any",
			log: func(l *slog.Logger) {
				l.Error("send failed",
					"err", wrapped,
					slog.Any("who", stringer{"Ada"}),
					slog.Any("raw", "reply to "+email),
					slog.Any("nilptr", (*nilStringer)(nil)),
					slog.Any("ptr", &nilStringer{"ring " + phone}),
					"id", convID,
					"deadline", time.Date(2026, 11, 24, 5, 6, 35, 0, time.UTC),
				)
			},
			absent:  []string{email, phone},
			present: []string{`"err":"send to [email]: mailbox full"`, `"who":"visitor Ada <[email]>"`, `"raw":"reply to [email]"`, `"nilptr":"<nil>"`, `"ptr":"ring [phone]"`, convID, stamp},
		},
		{
			name: "LogValuer is resolved",
			log: func(l *slog.Logger) {
				l.Info("x", "v", valuer{}, "name", valuer{})
			},
			absent:  []string{email, phone},
			present: []string{`"v":{"email":"[redacted]","note":"reach me on [phone]","conversation":"` + convID + `"}`, `"name":"[redacted]"`},
		},
		{
			name: "non-personal data survives",
			log: func(l *slog.Logger) {
				l.Info("listening on "+listen,
					"addr", listen, "at", stamp, "go", version, "bytes", bytesStr,
					"took", (1500 * time.Millisecond).String(), "conversation", convID, "seq", 24)
			},
			present: []string{`"msg":"listening on ` + listen + `"`, `"addr":"` + listen + `"`, `"at":"` + stamp + `"`,
				`"go":"` + version + `"`, `"bytes":"` + bytesStr + `"`, `"took":"1.5s"`, convID, `"seq":24`},
		},
		{
			name: "custom config",
			cfg:  Config{SensitiveKeys: []string{"Nick"}, Replacement: "***"},
			log: func(l *slog.Logger) {
				l.Info("x", "nick", "adal", "name", "Ada", "mail", email)
			},
			absent:  []string{"adal", email},
			present: []string{`"nick":"***"`, `"name":"Ada"`, `"mail":"[email]"`},
		},
		{
			name: "extended defaults",
			cfg:  Config{SensitiveKeys: append(DefaultSensitiveKeys(), "nick")},
			log: func(l *slog.Logger) {
				l.Info("x", "nick", "adal", "name", visName)
			},
			absent:  []string{"adal", visName},
			present: []string{`"nick":"[redacted]"`, `"name":"[redacted]"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			l := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil), tt.cfg))
			tt.log(l)
			out := buf.String()
			if !json.Valid(buf.Bytes()) {
				t.Fatalf("output is not JSON: %s", out)
			}
			for _, s := range tt.absent {
				if strings.Contains(out, s) {
					t.Errorf("output holds %q:\n%s", s, out)
				}
			}
			for _, s := range tt.present {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestHandlerEnabled(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := NewHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}), Config{})
	for _, tt := range []struct {
		level slog.Level
		want  bool
	}{
		{slog.LevelDebug, false},
		{slog.LevelInfo, false},
		{slog.LevelWarn, true},
		{slog.LevelError, true},
	} {
		if got := h.Enabled(context.Background(), tt.level); got != tt.want {
			t.Errorf("Enabled(%v) = %v, want %v", tt.level, got, tt.want)
		}
	}
	if h.WithGroup("") != slog.Handler(h) || h.WithAttrs(nil) != slog.Handler(h) {
		t.Error("WithGroup(\"\") or WithAttrs(nil) did not return the receiver")
	}
}

func TestHandlerKeepsRecord(t *testing.T) {
	t.Parallel()
	// Handle must not change the caller's record: another handler (or a
	// second Handle call) may see it too.
	var buf bytes.Buffer
	h := NewHandler(slog.NewJSONHandler(&buf, nil), Config{})
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "from "+email, 0)
	r.AddAttrs(slog.String("email", email), slog.String("note", phone))
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if r.Message != "from "+email {
		t.Errorf("record message changed to %q", r.Message)
	}
	var got []string
	r.Attrs(func(a slog.Attr) bool {
		got = append(got, a.Value.String())
		return true
	})
	if len(got) != 2 || got[0] != email || got[1] != phone {
		t.Errorf("record attrs changed to %q", got)
	}
	if strings.Contains(buf.String(), email) || strings.Contains(buf.String(), phone) {
		t.Errorf("output holds personal data: %s", buf.String())
	}
}

func TestHandlerConcurrent(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer // the JSON handler serialises its writes
	base := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil), Config{})).With("conversation", convID)
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			l := base.WithGroup(fmt.Sprintf("g%d", i)).With("email", email)
			for range 50 {
				l.Info("msg from "+email, "phone", phone, "n", i)
			}
		}()
	}
	for range 8 {
		<-done
	}
	out := buf.String()
	if strings.Contains(out, email) || strings.Contains(out, phone) {
		t.Errorf("output holds personal data")
	}
	if n := strings.Count(out, convID); n != 400 {
		t.Errorf("got %d records, want 400", n)
	}
}

func TestNewHandlerNil(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("NewHandler(nil, …) did not panic")
		}
	}()
	NewHandler(nil, Config{})
}
