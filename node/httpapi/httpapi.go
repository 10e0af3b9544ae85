// Package httpapi is what the node's JSON APIs share: the error body, the
// writing of a JSON answer, and the confirmations that answers carry.
package httpapi

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Error is an API error: the HTTP status it answers with, and the body
// {"code": ..., "message": ...}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// RetryAfter, when set, goes out as the Retry-After header (whole
	// seconds, rounded up): when a refused request may be tried again.
	RetryAfter time.Duration `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf makes an Error with a formatted message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WriteJSON answers with status and v as JSON, never cached. An error
// status of 401 also carries the Bearer challenge.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="parley"`)
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Confirmation is a revocation's (or an erasure's) reach: which members
// confirmed they applied it, and which could not be asked (they stop
// accepting operator credentials once their lease runs out, which the
// revocation waited for).
type Confirmation struct {
	Index       uint64   `json:"index"`
	Confirmed   []string `json:"confirmed"`
	Unconfirmed []string `json:"unconfirmed,omitempty"`
}

// PurgeConfirmation is a deletion's or a pin's reach over the stores:
// which members of the cluster confirmed they hold nothing of the
// workspace they must not, and which did not (down, cut off, or unable to
// hand it over yet: each purges when it can, on its own).
type PurgeConfirmation struct {
	Confirmed   []string `json:"confirmed"`
	Unconfirmed []string `json:"unconfirmed,omitempty"`
}

// ClientAddr is the client's IP address, as audit entries record it (the
// node made it RemoteAddr's from a trusted proxy's PROXY protocol header or
// X-Forwarded-For, edge.Trusted); "" if RemoteAddr holds none.
func ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	return a.WithZone("").Unmap().String()
}

// Mux is what an API registers its routes on: an *http.ServeMux, or
// Routes, which records them.
type Mux interface {
	Handle(pattern string, handler http.Handler)
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// Routes is an http.ServeMux that keeps the patterns registered on it, in
// order: the node's public route table, which a test compares with
// docs/openapi.yaml.
type Routes struct {
	*http.ServeMux
	patterns []string
}

// NewRoutes makes an empty route table.
func NewRoutes() *Routes { return &Routes{ServeMux: http.NewServeMux()} }

// Handle registers handler for pattern, as http.ServeMux.Handle does.
func (m *Routes) Handle(pattern string, handler http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, handler)
}

// HandleFunc registers handler for pattern, as http.ServeMux.HandleFunc
// does.
func (m *Routes) HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(handler))
}

// Patterns are the patterns registered, in order ("GET /v1/ws", …).
func (m *Routes) Patterns() []string { return append([]string(nil), m.patterns...) }
