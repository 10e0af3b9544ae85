package peers

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeCentReplies(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		n        int
		check    func(t *testing.T, rs []centReply)
		err      bool
	}{
		{name: "connect reply", in: `{"id":1,"connect":{"client":"c1","version":"5.4.9","ping":25,"pong":true}}`, n: 1, check: func(t *testing.T, rs []centReply) {
			if rs[0].ID != 1 || rs[0].Connect == nil || rs[0].isPing() {
				t.Fatalf("%+v", rs[0])
			}
		}},
		{name: "two replies in one message", in: "{\"id\":1,\"connect\":{}}\n{\"id\":2,\"subscribe\":{}}", n: 2, check: func(t *testing.T, rs []centReply) {
			if rs[1].ID != 2 || rs[1].Subscribe == nil {
				t.Fatalf("%+v", rs[1])
			}
		}},
		{name: "ping", in: `{}`, n: 1, check: func(t *testing.T, rs []centReply) {
			if !rs[0].isPing() {
				t.Fatal("not a ping")
			}
		}},
		{name: "error", in: `{"id":2,"error":{"code":103,"message":"permission denied"}}`, n: 1, check: func(t *testing.T, rs []centReply) {
			if rs[0].Error == nil || rs[0].Error.Code != 103 || !strings.Contains(rs[0].Error.Error(), "permission denied") || rs[0].isPing() {
				t.Fatalf("%+v", rs[0])
			}
		}},
		{name: "publication", in: "{\"push\":{\"channel\":\"room\",\"pub\":{\"data\":{\"b\":\"~pb:00\"},\"offset\":3}}}\n\n{\"push\":{\"channel\":\"other\",\"pub\":{\"data\":1}}}\n", n: 2, check: func(t *testing.T, rs []centReply) {
			if string(rs[0].publication("room")) != `{"b":"~pb:00"}` {
				t.Fatalf("data %s", rs[0].publication("room"))
			}
			if rs[1].publication("room") != nil {
				t.Fatal("another channel's publication taken")
			}
		}},
		{name: "join push is not a publication", in: `{"push":{"channel":"room","join":{"info":{}}}}`, n: 1, check: func(t *testing.T, rs []centReply) {
			if rs[0].publication("room") != nil || rs[0].isPing() {
				t.Fatal("join taken for a publication or a ping")
			}
		}},
		{name: "empty", in: "", n: 0},
		{name: "garbage", in: `{"id":1}` + "\n" + `{nope`, err: true},
		{name: "wrong type", in: `{"id":"one"}`, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := decodeCentReplies([]byte(tc.in))
			if tc.err {
				if err == nil {
					t.Fatalf("no error, got %+v", rs)
				}
				return
			}
			if err != nil || len(rs) != tc.n {
				t.Fatalf("got %d replies, err %v; want %d", len(rs), err, tc.n)
			}
			if tc.check != nil {
				tc.check(t, rs)
			}
		})
	}
}

func TestCentEncoders(t *testing.T) {
	b, err := centCommand(2, "subscribe", map[string]any{"channel": "room"})
	if err != nil {
		t.Fatal(err)
	}
	var cmd struct {
		ID        uint32 `json:"id"`
		Subscribe struct {
			Channel string `json:"channel"`
		} `json:"subscribe"`
	}
	if err := json.Unmarshal(b, &cmd); err != nil || cmd.ID != 2 || cmd.Subscribe.Channel != "room" {
		t.Fatalf("%s %v", b, err)
	}
	payload := fanoutPayload(nil, 77, 64)
	body := centPublishBody(nil, `ro"om`, payload)
	var pub struct {
		Channel string `json:"channel"`
		Data    struct {
			B string `json:"b"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &pub); err != nil || pub.Channel != `ro"om` || pub.Data.B != string(payload) {
		t.Fatalf("%s %v", body, err)
	}
	if k, ok := fanoutIndex(body); !ok || k != 77 {
		t.Fatalf("index %d %v", k, ok)
	}
}

// FuzzDecodeCentReplies: no input panics; what decodes has one reply per
// non-empty line.
func FuzzDecodeCentReplies(f *testing.F) {
	for _, s := range []string{`{}`, "{\"id\":1,\"connect\":{}}\n{\"push\":{\"channel\":\"r\",\"pub\":{\"data\":{}}}}", `{"error":{"code":1}}`, "\n\n", `{"push":{"pub":null}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decodeCentReplies(b)
		if err != nil {
			return
		}
		lines := 0
		for _, l := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(l) != "" {
				lines++
			}
		}
		if len(rs) != lines {
			t.Fatalf("%d replies from %d lines", len(rs), lines)
		}
		for i := range rs {
			_ = rs[i].publication("r")
			_ = rs[i].isPing()
		}
	})
}
