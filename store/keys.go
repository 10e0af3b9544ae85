package store

import "encoding/binary"

// sep separates key parts. IDs are validated at the edge to never contain it.
const sep = 0x00

// key joins the parts with sep; the first part is always the workspace ID.
func key(parts ...string) []byte {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n+8)
	for i, p := range parts {
		if i > 0 {
			b = append(b, sep)
		}
		b = append(b, p...)
	}
	return b
}

// appendKey appends key(parts...) to dst.
func appendKey(dst []byte, parts ...string) []byte {
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, sep)
		}
		dst = append(dst, p...)
	}
	return dst
}

// appendSeqKey appends seqKey(ws, conv, seq) to dst.
func appendSeqKey(dst []byte, ws, conv string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(appendKey(dst, ws, conv), sep), seq)
}

// prefix is key(parts...) followed by sep, for prefix scans.
func prefix(parts ...string) []byte { return append(key(parts...), sep) }

// seqKey is the event-log key of one conversation event: seqs sort in order.
func seqKey(ws, conv string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(prefix(ws, conv), seq)
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func putU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
