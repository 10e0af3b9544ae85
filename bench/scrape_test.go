package bench

import (
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	in := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_resident_memory_bytes 2.5e+07
parley_connections{transport="ws"} 100
parley_connections{transport="wt"} 5
parley_errors_total{code="a b}c"} 3
go_goroutines 42
`
	m, err := ParseMetrics(strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m["process_cpu_seconds_total"] != 12.5 || m["process_resident_memory_bytes"] != 25e6 || m["parley_connections"] != 105 || m["parley_errors_total"] != 3 || m["go_goroutines"] != 42 {
		t.Errorf("%v", m)
	}
	m, _ = ParseMetrics(strings.NewReader(in), map[string]bool{"go_goroutines": true})
	if len(m) != 1 {
		t.Errorf("filter: %v", m)
	}
	if _, err := ParseMetrics(strings.NewReader("x{a=\"1\" 3\n"), nil); err == nil {
		t.Error("unterminated labels accepted")
	}
}
