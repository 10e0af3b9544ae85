// Package gotool finds the pinned Go programs the tests run (pebble,
// mailpit): from an environment variable the Makefile sets, else from the
// cache directory it builds them into, else built there now from the Go
// module proxy by exact version.
package gotool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Binary returns the path of program name: $env when set, else dir/name,
// built first with `go install pkg` (pkg@version) into dir when missing.
// logf says when it builds.
func Binary(env, dir, name, pkg string, logf func(format string, args ...any)) (string, error) {
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	logf("building %s into %s", pkg, dir)
	cmd := exec.Command("go", "install", pkg)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// CacheDir is ~/.cache/parley/sub.
func CacheDir(sub ...string) (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(append([]string{home, ".cache", "parley"}, sub...)...), nil
}
