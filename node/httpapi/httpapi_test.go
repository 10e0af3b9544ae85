package httpapi_test

import (
	"net/http/httptest"
	"testing"

	"parley/node/httpapi"
)

// Only a 401 carries the Bearer challenge.
func TestWriteJSONChallengesOnlyUnauthorized(t *testing.T) {
	for _, st := range []int{200, 400, 401, 403, 503} {
		w := httptest.NewRecorder()
		httpapi.WriteJSON(w, st, httpapi.Errorf(st, "x", "y"))
		if got := w.Header().Get("WWW-Authenticate") != ""; got != (st == 401) || w.Code != st {
			t.Errorf("status %d: challenge %v, code %d", st, got, w.Code)
		}
		if w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("status %d: headers %v", st, w.Header())
		}
	}
}
