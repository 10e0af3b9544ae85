package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var promDir = filepath.Join(deployDir, "prometheus")

// TestAlertRules: promtool checks the rules and runs their unit tests, and
// every alert has a test in which it fires.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "PROMTOOL", "promtool")
	run(t, promtool, "check", "rules", filepath.Join(promDir, "alerts.yaml"))
	out, _ := run(t, promtool, "test", "rules", filepath.Join(promDir, "alerts_test.yaml"))
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules: %s", out)
	}

	var rules struct {
		Groups []struct {
			Rules []struct{ Alert string }
		}
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string
				ExpAlerts []any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		}
	}
	readYAML(t, filepath.Join(promDir, "alerts.yaml"), &rules)
	readYAML(t, filepath.Join(promDir, "alerts_test.yaml"), &tests)
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if !fires[r.Alert] {
				t.Errorf("alert %s: no test in alerts_test.yaml in which it fires", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts")
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
