// Command vulnreport is the verdict of `make vulncheck`: it reads the JSON
// stream of `govulncheck -format json` on standard input, prints one line per
// vulnerability found and exits 1 if there is any.
//
// govulncheck's own exit status fails only on vulnerabilities the code calls.
// This gate is stricter: a known vulnerability in a module that provides a
// package to the build, or in the standard library of the Go that builds,
// fails too, called or not. An advisory for golang.org/x/net that the code
// does not reach today is one refactoring away from reached, and the fix is a
// version bump. Each line says how far the code gets to the vulnerability:
//
//	called    the code calls a vulnerable function (with one call site)
//	imported  a vulnerable package is in the build, no vulnerable function called
//	required  a module of the build is at a vulnerable version
//
// For every call path: govulncheck -db file://DIR -show traces ./...
//
// Usage:
//
//	govulncheck -db file://DIR -format json ./... > FILE && go run ./tools/vulnreport < FILE
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// ErrNoConfig is returned for a stream that does not start like govulncheck's:
// an empty or truncated file must not pass as a clean scan.
var ErrNoConfig = errors.New("not a govulncheck JSON stream (no config message)")

func main() {
	n, err := Report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulnreport:", err)
		os.Exit(2)
	}
	if n > 0 {
		fmt.Printf("vulnreport: %d known vulnerabilities in the build; bump the module or the Go toolchain (go.mod) past the fixed version\n", n)
		os.Exit(1)
	}
	fmt.Println("vulnreport: no known vulnerabilities in the build")
}

// The parts of govulncheck's JSON protocol (v1.0.0) read here.
type message struct {
	Config *struct {
		ScannerVersion string `json:"scanner_version"`
		DB             string `json:"db"`
		DBLastModified string `json:"db_last_modified"`
		GoVersion      string `json:"go_version"`
		ScanLevel      string `json:"scan_level"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string  `json:"osv"`
		FixedVersion string  `json:"fixed_version"`
		Trace        []frame `json:"trace"`
	} `json:"finding"`
}

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
}

func (f frame) symbol() string {
	s := f.Package
	if f.Receiver != "" {
		s += "." + strings.TrimPrefix(f.Receiver, "*")
	}
	return s + "." + f.Function
}

// Levels of a finding, from the farthest to the nearest.
const (
	required = iota
	imported
	called
)

var levelName = [...]string{"required", "imported", "called"}

type vuln struct {
	id, module, version, fixed string
	level                      int
	detail                     string
}

// Report reads govulncheck's JSON stream from r, writes a line per
// vulnerability to w (nearest level first) and returns how many there are.
func Report(r io.Reader, w io.Writer) (int, error) {
	dec := json.NewDecoder(r)
	summaries := map[string]string{}
	vulns := map[string]*vuln{} // by OSV ID and module
	sawConfig := false
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("decode govulncheck output: %w", err)
		}
		switch {
		case m.Config != nil:
			sawConfig = true
			c := m.Config
			fmt.Fprintf(w, "govulncheck %s, %s, database %s (%s), scan level %s\n",
				c.ScannerVersion, c.GoVersion, c.DB, c.DBLastModified, c.ScanLevel)
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil && len(m.Finding.Trace) > 0:
			f := m.Finding
			top := f.Trace[0]
			v := &vuln{id: f.OSV, module: top.Module, version: top.Version, fixed: f.FixedVersion}
			switch {
			case top.Function != "":
				v.level = called
				v.detail = top.symbol()
				if len(f.Trace) > 1 {
					v.detail += " from " + f.Trace[len(f.Trace)-1].symbol()
				}
			case top.Package != "":
				v.level = imported
				v.detail = top.Package
			default:
				v.level = required
			}
			key := f.OSV + " " + top.Module
			if old, ok := vulns[key]; !ok || v.level > old.level {
				vulns[key] = v
			}
		}
	}
	if !sawConfig {
		return 0, ErrNoConfig
	}

	list := make([]*vuln, 0, len(vulns))
	for _, v := range vulns {
		list = append(list, v)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].level != list[j].level {
			return list[i].level > list[j].level
		}
		return list[i].id+list[i].module < list[j].id+list[j].module
	})
	for _, v := range list {
		fixed := v.fixed
		if fixed == "" {
			fixed = "no fix"
		}
		line := fmt.Sprintf("%s %s %s@%s (fixed: %s)", levelName[v.level], v.id, v.module, v.version, fixed)
		if v.detail != "" {
			line += ": " + v.detail
		}
		if s := summaries[v.id]; s != "" {
			line += " — " + s
		}
		fmt.Fprintln(w, line)
	}
	return len(list), nil
}
