package jread

import (
	"encoding/binary"
	"testing"
)

// TestPlain8: every byte value at every position of a plain word.
func TestPlain8(t *testing.T) {
	t.Parallel()
	for pos := range 8 {
		for c := range 256 {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			want := c >= 0x20 && c < 0x80 && c != '"' && c != '\\'
			if got := plain8(binary.LittleEndian.Uint64(b)); got != want {
				t.Errorf("byte %#x at %d: plain8 %v, want %v", c, pos, got, want)
			}
		}
	}
}
