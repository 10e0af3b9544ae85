package main

import (
	"errors"
	"strings"
	"testing"
)

const testConfig = `{"config":{"protocol_version":"v1.0.0","scanner_name":"govulncheck","scanner_version":"v1.9.0",
 "db":"file:///db","db_last_modified":"2026-11-05T23:49:57Z","go_version":"go1.26.10","scan_level":"symbol","scan_mode":"source"}}
{"SBOM":{"go_version":"go1.26.10","modules":[{"path":"parley"}]}}
{"progress":{"message":"Scanning your code and 120 packages across 40 dependent modules for known vulnerabilities..."}}
{"osv":{"id":"GO-2026-6609","summary":"Lack of limit on size of parsed Range headers in net/http"}}
{"osv":{"id":"GO-2026-6860","summary":"Avoid quadratic complexity when coalescing text nodes in html in golang.org/x/net"}}
`

// The findings govulncheck emits for one called standard-library
// vulnerability (module, package, then symbol level with a trace to the
// caller) and one required module it is not reached through.
const testFindings = `{"finding":{"osv":"GO-2026-6609","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8"}]}}
{"finding":{"osv":"GO-2026-6609","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http"}]}}
{"finding":{"osv":"GO-2026-6609","fixed_version":"v1.26.9","trace":[
  {"module":"stdlib","version":"v1.26.8","package":"net/http","function":"ServeHTTP","receiver":"fileHandler"},
  {"module":"parley","package":"parley/node","function":"Run","receiver":"*Node"}]}}
{"finding":{"osv":"GO-2026-6860","fixed_version":"v0.62.0","trace":[{"module":"golang.org/x/net","version":"v0.59.0"}]}}
`

func TestReportCountsEachVulnerabilityOnceAtItsNearestLevel(t *testing.T) {
	var out strings.Builder
	n, err := Report(strings.NewReader(testConfig+testFindings), &out)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("Report = %d, want 2:\n%s", n, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 lines, got:\n%s", out.String())
	}
	if !strings.Contains(lines[0], "go1.26.10") || !strings.Contains(lines[0], "file:///db") {
		t.Errorf("header does not say which Go and database: %q", lines[0])
	}
	want := []string{
		"called GO-2026-6609 stdlib@v1.26.8 (fixed: v1.26.9): net/http.fileHandler.ServeHTTP from parley/node.Node.Run — Lack of limit",
		"required GO-2026-6860 golang.org/x/net@v0.59.0 (fixed: v0.62.0) — Avoid quadratic",
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i+1], w) {
			t.Errorf("line %d = %q, want prefix %q", i+1, lines[i+1], w)
		}
	}
}

func TestReportImportedOnly(t *testing.T) {
	var out strings.Builder
	n, err := Report(strings.NewReader(testConfig+
		`{"finding":{"osv":"GO-2026-6600","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"html/template"}]}}`), &out)
	if err != nil || n != 1 {
		t.Fatalf("Report = %d, %v", n, err)
	}
	if !strings.Contains(out.String(), "imported GO-2026-6600 stdlib@v1.26.8 (fixed: v1.26.9): html/template") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestReportCleanScan(t *testing.T) {
	var out strings.Builder
	n, err := Report(strings.NewReader(testConfig), &out)
	if err != nil || n != 0 {
		t.Fatalf("Report = %d, %v; want 0, nil", n, err)
	}
}

// An empty, truncated or foreign file is an error, never a clean scan.
func TestReportRefusesWhatIsNotAScan(t *testing.T) {
	for name, in := range map[string]string{
		"empty":     "",
		"truncated": testConfig[:40],
		"no config": testFindings,
		"text mode": "=== Symbol Results ===\n\nNo vulnerabilities found.\n",
	} {
		n, err := Report(strings.NewReader(in), &strings.Builder{})
		if err == nil {
			t.Errorf("%s: Report = %d, nil error", name, n)
		}
		if name == "empty" && !errors.Is(err, ErrNoConfig) {
			t.Errorf("empty: err = %v, want ErrNoConfig", err)
		}
	}
}
