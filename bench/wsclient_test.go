package bench

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"parley/gateway/client"
)

// TestRawWSRefused: a handshake the node refuses is a
// *client.HandshakeError with its status, as client.DialWS's.
func TestRawWSRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too many", http.StatusTooManyRequests)
	}))
	defer srv.Close()
	_, err := dialRawWS(context.Background(), srv.URL, nil)
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusTooManyRequests || errCode(err) != "rate_limited" {
		t.Fatalf("refused handshake: %v", err)
	}
}
