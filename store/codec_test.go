package store

import (
	"errors"
	"strings"
	"testing"

	"parley/crdt"
)

func TestMessageEncodingRoundTrips(t *testing.T) {
	for _, m := range []crdt.Message{
		{},
		msg("m1", "v:a", "hello", 1),
		{ID: "m-é", Author: "a:sam", Role: "agent", Name: "Sam ☕", Created: crdt.Timestamp{Wall: -5, Logical: 1<<32 - 1, Node: "n~3"},
			Body: strings.Repeat("x", 70_000), BodyTS: crdt.Timestamp{Wall: 1 << 62, Node: "n2"}, Deleted: crdt.Timestamp{Wall: 9, Logical: 2, Node: "n1"}},
		{ID: "n1", Author: "a:sam", Role: "agent", Body: "a note", Internal: true},
		{ID: "s1", Author: "a:sam", Role: "agent", Body: `{"status":"resolved"}`, Internal: true, Kind: crdt.KindStatus},
		{ID: "k1", Kind: "tag"},
	} {
		b := encodeMessage(&m)
		if len(b) > messageSize(&m) {
			t.Fatalf("encoding of %d bytes, bound %d", len(b), messageSize(&m))
		}
		got, err := decodeMessage(b)
		if err != nil || got != m {
			t.Fatalf("round trip of %+v: %+v, %v", m, got, err)
		}
		// Every truncation, and a trailing byte, is refused.
		for i := range len(b) {
			if _, err := decodeMessage(b[:i]); !errors.Is(err, errMessage) {
				t.Fatalf("%d of %d bytes decoded: %v", i, len(b), err)
			}
		}
		if _, err := decodeMessage(append(b, 0)); !errors.Is(err, errMessage) {
			t.Fatalf("a trailing byte decoded: %v", err)
		}
	}
	if _, err := decodeMessage([]byte(`{"id":"m1"}`)); !errors.Is(err, errMessage) {
		t.Fatalf("JSON decoded as a binary message: %v", err)
	}
}
