package check

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// tool is the path of a tool `make deploy-check` built or found, from its
// environment variable; the test fails without it (run `make deploy-check`).
func tool(t *testing.T, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p, err := exec.LookPath(name); err == nil && env == "SYSTEMD_ANALYZE" {
		return p
	}
	t.Fatalf("%s is not set: run `make deploy-check`, which builds %s by exact version", env, name)
	return ""
}

// run runs a tool and returns its output, failing the test when it fails.
func run(t *testing.T, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), e.String()
}

// deployDir is deploy/, beside this module.
const deployDir = ".."

// settingKeys are the config file's keys, from the README's table of
// settings (node/configfile_test.go holds that table to the node's flags).
func settingKeys(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| ((?:`-[a-z0-9-]+`(?:, )?)+) \\|")
	keys := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		for _, f := range regexp.MustCompile("`-([a-z0-9-]+)`").FindAllStringSubmatch(m[1], -1) {
			keys[f[1]] = true
		}
	}
	if len(keys) < 20 {
		t.Fatalf("the README's table of settings gave %d keys", len(keys))
	}
	delete(keys, "config")
	return keys
}
