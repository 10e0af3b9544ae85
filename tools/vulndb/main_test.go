package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Two entries in the form x/vulndb's data/osv carries them: no modified time,
// one affecting the standard library, one affecting two modules.
var testEntries = map[string]string{
	"GO-2026-6609.json": `{"schema_version":"1.3.1","id":"GO-2026-6609","modified":"0001-01-01T00:00:00Z",
 "aliases":["CVE-2026-78667"],"affected":[{"package":{"name":"stdlib","ecosystem":"Go"},
 "ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.26.9"}]}]}]}`,
	"GO-2026-0001.json": `{"schema_version":"1.3.1","id":"GO-2026-0001","modified":"2026-10-01T12:00:00Z",
 "affected":[{"package":{"name":"golang.org/x/net","ecosystem":"Go"},
 "ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"0.62.0"}]}]},
 {"package":{"name":"golang.org/x/crypto","ecosystem":"Go"}},
 {"package":{"name":"golang.org/x/net","ecosystem":"Go"}}]}`,
}

func writeEntries(t *testing.T, entries map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range entries {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestBuildWritesV1Layout(t *testing.T) {
	src := writeEntries(t, testEntries)
	out := filepath.Join(t.TempDir(), "db")
	modTime := time.Date(2026, 11, 5, 23, 49, 57, 0, time.UTC)
	n, err := Build(src, out, modTime)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("Build = %d entries, want 2", n)
	}

	for name, body := range testEntries {
		got, err := os.ReadFile(filepath.Join(out, "ID", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, []byte(body)) {
			t.Errorf("ID/%s differs from its source", name)
		}
	}

	var db struct{ Modified time.Time }
	readJSON(t, filepath.Join(out, "index", "db.json"), &db)
	if !db.Modified.Equal(modTime) {
		t.Errorf("db.json modified = %v, want the module version's time %v", db.Modified, modTime)
	}

	// Raw maps, to see every key written (a "fixed" key must not be there).
	var modules []map[string]any
	readJSON(t, filepath.Join(out, "index", "modules.json"), &modules)
	want := []struct {
		path string
		ids  []string
	}{
		{"golang.org/x/crypto", []string{"GO-2026-0001"}},
		{"golang.org/x/net", []string{"GO-2026-0001"}}, // listed once though affected twice
		{"stdlib", []string{"GO-2026-6609"}},
	}
	if len(modules) != len(want) {
		t.Fatalf("modules.json has %d modules, want %d: %v", len(modules), len(want), modules)
	}
	for i, w := range want {
		m := modules[i]
		if m["path"] != w.path {
			t.Errorf("module %d = %v, want %s", i, m["path"], w.path)
		}
		vulns, _ := m["vulns"].([]any)
		if len(vulns) != len(w.ids) {
			t.Fatalf("module %s: vulns %v, want %v", w.path, vulns, w.ids)
		}
		for j, id := range w.ids {
			v := vulns[j].(map[string]any)
			if v["id"] != id {
				t.Errorf("module %s vuln %d = %v, want %s", w.path, j, v["id"], id)
			}
			if _, ok := v["fixed"]; ok {
				t.Errorf("module %s vuln %s has a fixed version in the index: %v", w.path, id, v)
			}
		}
	}

	var vulns []vulnMeta
	readJSON(t, filepath.Join(out, "index", "vulns.json"), &vulns)
	if len(vulns) != 2 || vulns[0].ID != "GO-2026-0001" || vulns[1].ID != "GO-2026-6609" ||
		len(vulns[1].Aliases) != 1 || vulns[1].Aliases[0] != "CVE-2026-78667" {
		t.Errorf("vulns.json = %+v", vulns)
	}
}

func TestBuildDatesByNewestEntry(t *testing.T) {
	src := writeEntries(t, testEntries)
	out := filepath.Join(t.TempDir(), "db")
	if _, err := Build(src, out, time.Time{}); err != nil {
		t.Fatal(err)
	}
	var db struct{ Modified time.Time }
	readJSON(t, filepath.Join(out, "index", "db.json"), &db)
	if want := time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC); !db.Modified.Equal(want) {
		t.Errorf("db.json modified = %v, want %v", db.Modified, want)
	}
}

// A bad source never replaces a database that is in place.
func TestBuildRefusesBadSourceAndKeepsDatabase(t *testing.T) {
	out := filepath.Join(t.TempDir(), "db")
	if _, err := Build(writeEntries(t, testEntries), out, time.Time{}); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]map[string]string{
		"empty":        {},
		"name not ID":  {"GO-2026-9999.json": testEntries["GO-2026-0001.json"]},
		"not JSON":     {"GO-2026-0002.json": `{"id":`},
		"no ID at all": {"GO-2026-0003.json": `{"affected":[]}`},
	} {
		_, err := Build(writeEntries(t, src), out, time.Time{})
		if err == nil {
			t.Errorf("%s: Build succeeded", name)
		}
		if name == "empty" && !errors.Is(err, ErrNoEntries) {
			t.Errorf("empty: err = %v, want ErrNoEntries", err)
		}
		if _, err := os.Stat(filepath.Join(out, "ID", "GO-2026-6609.json")); err != nil {
			t.Errorf("%s: database in place was damaged: %v", name, err)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".db.tmp-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary directories left: %v", leftovers)
	}
}
