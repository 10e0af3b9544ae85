package main

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestAPIDocCoversTheCode keeps docs/api.md and the node's admin API from
// drifting: every route registered in node/adminapi/routes.go is documented
// (as `METHOD /path`, in the route table and under its own heading), and
// every error code the admin API sends (node/adminapi/adminapi.go's statusOf and the
// codes its handlers build with apiErr) is in the error table with the
// status the code gives it.
func TestAPIDocCoversTheCode(t *testing.T) {
	doc := read(t, "../../docs/api.md")
	routes := read(t, "../../node/adminapi/routes.go")
	admin := read(t, "../../node/adminapi/adminapi.go")

	reRoute := regexp.MustCompile(`(?:a\.route\(mux, |mux\.HandleFunc\()"([A-Z]+) (/[^"]*)"`)
	found := reRoute.FindAllStringSubmatch(routes, -1)
	if len(found) < 20 {
		t.Fatalf("found %d routes in node/adminapi/routes.go: has the registration changed form?", len(found))
	}
	// The conversations API (node/agentapi, the routes handleConv serves)
	// is documented here too.
	conv := regexp.MustCompile(`mux\.Handle\("([A-Z]+) (/[^"]*)", a\.handleConv\(`).FindAllStringSubmatch(read(t, "../../node/agentapi/agentapi.go"), -1)
	if len(conv) < 6 {
		t.Fatalf("found %d routes of the conversations API in node/agentapi/agentapi.go: has the registration changed form?", len(conv))
	}
	found = append(found, conv...)
	for _, m := range found {
		route := "`" + m[1] + " " + m[2] + "`"
		if !strings.Contains(doc, "| "+route+" |") {
			t.Errorf("docs/api.md: route %s is missing from the route table", route)
		}
		if !strings.Contains(doc, "#### "+route+"\n") {
			t.Errorf("docs/api.md: route %s has no section (#### %s)", route, route)
		}
	}
	// And nothing documented that the node does not serve.
	registered := map[string]bool{}
	for _, m := range found {
		registered[m[1]+" "+m[2]] = true
	}
	for _, m := range regexp.MustCompile("(?m)^#### `([A-Z]+ /[^`]*)`$").FindAllStringSubmatch(doc, -1) {
		if !registered[m[1]] {
			t.Errorf("docs/api.md documents %s, which neither node/adminapi/routes.go nor the conversations API registers", m[1])
		}
	}

	codes := map[string]int{}
	block := admin[strings.Index(admin, "var statusOf = map[string]int{"):]
	block = block[:strings.Index(block, "\n}")]
	for _, m := range regexp.MustCompile(`"([a-z_]+)":\s+http\.(Status\w+)`).FindAllStringSubmatch(block, -1) {
		codes[m[1]] = status(t, m[2])
	}
	if len(codes) < 10 {
		t.Fatalf("found %d codes in statusOf: has it changed form?", len(codes))
	}
	for _, src := range []string{admin, routes} {
		for _, m := range regexp.MustCompile(`apiErr\(\s*(http\.Status\w+|\d+),\s*"([a-z_]+)"`).FindAllStringSubmatch(src, -1) {
			st := 0
			if n, err := strconv.Atoi(m[1]); err == nil {
				st = n
			} else {
				st = status(t, strings.TrimPrefix(m[1], "http."))
			}
			if prev, ok := codes[m[2]]; ok && prev != st {
				// The same code with two statuses: the doc must say which;
				// keep statusOf's.
				continue
			}
			codes[m[2]] = st
		}
	}
	for code, st := range codes {
		m := regexp.MustCompile("(?m)^\\| `" + code + "` \\| (\\d+) \\|").FindStringSubmatch(doc)
		if m == nil {
			t.Errorf("docs/api.md: error code %s (HTTP %d) is missing from the error table", code, st)
			continue
		}
		if m[1] != strconv.Itoa(st) {
			t.Errorf("docs/api.md: error code %s documented as HTTP %s, the node sends %d", code, m[1], st)
		}
	}
}

// TestAPIDocHasTheConversationsAPIsCodes: every code the conversations
// API answers a write with (node/agentapi's postStatus, the wire's codes)
// is in its error table, with the status it sends.
func TestAPIDocHasTheConversationsAPIsCodes(t *testing.T) {
	doc := read(t, "../../docs/api.md")
	i := strings.Index(doc, "### Errors of the conversations API")
	if i < 0 {
		t.Fatal("docs/api.md has no section: ### Errors of the conversations API")
	}
	table := doc[i:]
	table = table[:strings.Index(table, "\n\n## ")]
	wireCodes := map[string]string{}
	for _, m := range regexp.MustCompile(`(Code\w+)\s+= "([a-z_]+)"`).FindAllStringSubmatch(read(t, "../../gateway/wire/wire.go"), -1) {
		wireCodes[m[1]] = m[2]
	}
	src := read(t, "../../node/agentapi/conversations.go")
	block := src[strings.Index(src, "var postStatus = map[string]int{"):]
	block = block[:strings.Index(block, "\n}")]
	found := regexp.MustCompile(`wire\.(Code\w+):\s+http\.(Status\w+)`).FindAllStringSubmatch(block, -1)
	if len(found) < 6 {
		t.Fatalf("found %d codes in postStatus: has it changed form?", len(found))
	}
	for _, m := range found {
		code, st := wireCodes[m[1]], status(t, m[2])
		if !strings.Contains(table, fmt.Sprintf("| `%s` | %d |", code, st)) {
			t.Errorf("docs/api.md: the conversations API's code %s (HTTP %d) is missing from its error table", code, st)
		}
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// status is the value of a net/http Status constant named in the source.
func status(t *testing.T, name string) int {
	t.Helper()
	known := map[string]int{
		"StatusBadRequest":            http.StatusBadRequest,
		"StatusUnauthorized":          http.StatusUnauthorized,
		"StatusForbidden":             http.StatusForbidden,
		"StatusNotFound":              http.StatusNotFound,
		"StatusConflict":              http.StatusConflict,
		"StatusTooManyRequests":       http.StatusTooManyRequests,
		"StatusServiceUnavailable":    http.StatusServiceUnavailable,
		"StatusInternalServerError":   http.StatusInternalServerError,
		"StatusGone":                  http.StatusGone,
		"StatusPreconditionFailed":    http.StatusPreconditionFailed,
		"StatusRequestEntityTooLarge": http.StatusRequestEntityTooLarge,
		"StatusUnprocessableEntity":   http.StatusUnprocessableEntity,
		"StatusMethodNotAllowed":      http.StatusMethodNotAllowed,
		"StatusBadGateway":            http.StatusBadGateway,
		"StatusGatewayTimeout":        http.StatusGatewayTimeout,
	}
	st, ok := known[name]
	if !ok {
		t.Fatalf("http.%s: add it to the test's table of statuses", name)
	}
	return st
}
