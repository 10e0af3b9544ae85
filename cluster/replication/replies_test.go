package replication

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"parley/store"
)

// TestReplyChunksFitASignal: saved replies at their largest (2,000
// characters that JSON escapes to six bytes each) travel in signals a link
// accepts, every reply once, in order, without its vector.
func TestReplyChunksFitASignal(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		n    int
		body string
	}{
		{"none", 0, ""},
		{"small", 100, "Refunds take five days."},
		{"largest", 40, strings.Repeat("\x01", 2000)},
		{"plain large", 40, strings.Repeat("é", 2000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var rs []store.Reply
			for i := range tc.n {
				rs = append(rs, store.Reply{ID: fmt.Sprintf("r_%016x", i), Title: strings.Repeat("t", 80), Body: tc.body, Updated: int64(i), Vector: make([]float32, 384)})
			}
			var got []store.Reply
			for _, chunk := range replyChunks(rs) {
				b, err := json.Marshal(repliesSignal{Kind: signalReplies, Workspace: strings.Repeat("w", 64), Replies: chunk})
				if err != nil {
					t.Fatal(err)
				}
				if len(b) > MaxSignal {
					t.Errorf("a signal of %d bytes, more than a link carries (%d)", len(b), MaxSignal)
				}
				got = append(got, chunk...)
			}
			if len(got) != len(rs) {
				t.Fatalf("%d replies sent, %d given", len(got), len(rs))
			}
			for i := range got {
				if got[i].ID != rs[i].ID || got[i].Vector != nil {
					t.Errorf("reply %d: %s with %d vector values, want %s without", i, got[i].ID, len(got[i].Vector), rs[i].ID)
				}
			}
		})
	}
}
