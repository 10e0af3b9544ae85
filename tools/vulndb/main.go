// Command vulndb builds the local Go vulnerability database that `make
// vulncheck` gives govulncheck (`govulncheck -db file://DIR`), because the
// public one (vuln.go.dev) is not reachable from CI.
//
// It downloads the module golang.org/x/vulndb at an exact version through the
// module proxy (`go mod download -json golang.org/x/vulndb@VERSION`, checked
// against the Go checksum database like any module) and turns the OSV
// entries the module carries in data/osv/ into the v1 layout of
// https://go.dev/security/vuln/database#api:
//
//	DIR/index/db.json       {"modified": newest entry, or the module version's time}
//	DIR/index/modules.json  per module path, the IDs of the entries affecting it
//	DIR/index/vulns.json    per entry, its ID, modified time and aliases
//	DIR/ID/<ID>.json        each OSV entry, byte for byte
//
// The index leaves out the optional "fixed" version of each module's entries:
// govulncheck skips an entry whose indexed fix is older than the version in
// use, so a wrong one would hide a vulnerability; without it govulncheck reads
// every entry of the module and matches the entry's own ranges.
//
// The database is written to a temporary directory next to DIR and renamed
// into place, so DIR is either absent or complete. A source with no entries,
// an entry that does not parse, or a file name that is not its entry's ID is
// an error: an empty database would make every check pass.
//
// Usage:
//
//	go run ./tools/vulndb -version v0.0.0-20261105234957-e22db6528018 -out DIR
//	go run ./tools/vulndb -osv DIR_OF_OSV_JSON -out DIR
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ErrNoEntries is returned when the source holds no OSV entry.
var ErrNoEntries = errors.New("no OSV entries")

func main() {
	version := flag.String("version", "", "exact version of golang.org/x/vulndb to download through the module proxy")
	osvDir := flag.String("osv", "", "directory of OSV JSON entries to use instead of downloading (tests)")
	out := flag.String("out", "", "directory to write the database to (replaced)")
	flag.Parse()
	if *out == "" || (*version == "") == (*osvDir == "") {
		fmt.Fprintln(os.Stderr, "usage: vulndb (-version VERSION | -osv DIR) -out DIR")
		os.Exit(2)
	}
	src, modTime := *osvDir, time.Time{}
	if *version != "" {
		var err error
		src, modTime, err = download(*version)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vulndb:", err)
			os.Exit(1)
		}
	}
	n, err := Build(src, *out, modTime)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulndb:", err)
		os.Exit(1)
	}
	fmt.Printf("vulndb: %d entries from %s in %s\n", n, src, *out)
}

// download fetches golang.org/x/vulndb@version into the module cache and
// returns its OSV directory and the version's commit time.
func download(version string) (string, time.Time, error) {
	cmd := exec.Command("go", "mod", "download", "-json", "golang.org/x/vulndb@"+version)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	var mod struct {
		Dir, Info, Error string
	}
	if jerr := json.Unmarshal(b, &mod); jerr == nil && mod.Error != "" {
		return "", time.Time{}, fmt.Errorf("go mod download: %s", mod.Error)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("go mod download: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(b, &mod); err != nil || mod.Dir == "" {
		return "", time.Time{}, fmt.Errorf("go mod download: unexpected output %q", b)
	}
	var info struct{ Time time.Time }
	if ib, err := os.ReadFile(mod.Info); err == nil {
		_ = json.Unmarshal(ib, &info) // the time only dates the database
	}
	return filepath.Join(mod.Dir, "data", "osv"), info.Time, nil
}

// entry is the part of an OSV entry the index needs.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
	Affected []struct {
		Package struct {
			Name      string `json:"name"`
			Ecosystem string `json:"ecosystem"`
		} `json:"package"`
	} `json:"affected"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vulnMeta struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

// Build writes the database made of the OSV entries in src (files named
// <ID>.json) to out, replacing it, and returns the number of entries.
// modTime dates the database when no entry carries a modified time (the
// entries in x/vulndb's repository carry none).
func Build(src, out string, modTime time.Time) (int, error) {
	files, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", src, err)
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("%s: %w", src, ErrNoEntries)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return 0, fmt.Errorf("create %s: %w", filepath.Dir(out), err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return 0, fmt.Errorf("create temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Mkdir(filepath.Join(tmp, "ID"), 0o755); err != nil {
		return 0, fmt.Errorf("create ID directory: %w", err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "index"), 0o755); err != nil {
		return 0, fmt.Errorf("create index directory: %w", err)
	}

	modules := map[string]*moduleMeta{}
	var vulns []vulnMeta
	dbModified := modTime
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, fmt.Errorf("read entry: %w", err)
		}
		var e entry
		if err := json.Unmarshal(b, &e); err != nil {
			return 0, fmt.Errorf("parse %s: %w", f, err)
		}
		if e.ID == "" || filepath.Base(f) != e.ID+".json" {
			return 0, fmt.Errorf("%s: file name is not its entry's ID %q", f, e.ID)
		}
		if err := os.WriteFile(filepath.Join(tmp, "ID", e.ID+".json"), b, 0o644); err != nil {
			return 0, fmt.Errorf("write entry: %w", err)
		}
		if e.Modified.After(dbModified) {
			dbModified = e.Modified
		}
		vulns = append(vulns, vulnMeta{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		seen := map[string]bool{}
		for _, a := range e.Affected {
			path := a.Package.Name
			if path == "" || seen[path] {
				continue
			}
			seen[path] = true
			m := modules[path]
			if m == nil {
				m = &moduleMeta{Path: path}
				modules[path] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified})
		}
	}

	mods := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		sort.Slice(m.Vulns, func(i, j int) bool { return m.Vulns[i].ID < m.Vulns[j].ID })
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	sort.Slice(vulns, func(i, j int) bool { return vulns[i].ID < vulns[j].ID })
	for name, v := range map[string]any{
		"db.json": struct {
			Modified time.Time `json:"modified"`
		}{dbModified.UTC()},
		"modules.json": mods,
		"vulns.json":   vulns,
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, fmt.Errorf("encode %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "index", name), b, 0o644); err != nil {
			return 0, fmt.Errorf("write %s: %w", name, err)
		}
	}

	if err := os.RemoveAll(out); err != nil {
		return 0, fmt.Errorf("replace %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return 0, fmt.Errorf("replace %s: %w", out, err)
	}
	return len(files), nil
}
