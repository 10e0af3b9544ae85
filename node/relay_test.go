package node

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"
)

func TestForwardedTrustsOnlySignedClaims(t *testing.T) {
	t.Parallel()
	key, other := []byte("node key"), []byte("another cluster")
	// Read when each case runs: parallel cases start once the package's
	// serial tests are done, which can be longer than the allowed skew.
	now := time.Now
	cases := []struct {
		name   string
		header func() map[string]string
		want   string
		ok     bool
		public bool // arrived on the public listener, not the node link
	}{
		{"signed", func() map[string]string { return flat(relayHeader(key, "GET", "/v1/ws", "203.0.113.7", now())) }, "203.0.113.7", true, false},
		{"direct", func() map[string]string { return nil }, "", false, false},
		{"signed, on the public listener", func() map[string]string { return flat(relayHeader(key, "GET", "/v1/ws", "203.0.113.7", now())) }, "", false, true},
		{"other cluster's key", func() map[string]string { return flat(relayHeader(other, "GET", "/v1/ws", "203.0.113.7", now())) }, "", false, false},
		{"too old", func() map[string]string {
			return flat(relayHeader(key, "GET", "/v1/ws", "203.0.113.7", now().Add(-time.Minute)))
		}, "", false, false},
		{"address changed", func() map[string]string {
			h := flat(relayHeader(key, "GET", "/v1/ws", "203.0.113.7", now()))
			h[hdrRelayFor] = "198.51.100.1"
			return h
		}, "", false, false},
		{"no time", func() map[string]string {
			h := flat(relayHeader(key, "GET", "/v1/ws", "203.0.113.7", now()))
			delete(h, hdrRelayTime)
			return h
		}, "", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/v1/ws", nil)
			if !tc.public {
				r = r.WithContext(linkConnContext(context.Background(), nil))
			}
			for k, v := range tc.header() {
				r.Header.Set(k, v)
			}
			ip, ok := forwarded(key)(r)
			if ip != tc.want || ok != tc.ok {
				t.Errorf("forwarded = %q %v, want %q %v", ip, ok, tc.want, tc.ok)
			}
		})
	}
}

func flat(h map[string][]string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v[0]
	}
	return out
}
