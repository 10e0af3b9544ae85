package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// parleyctl is the operators' CLI: it speaks the admin API over HTTP and
// links none of the server. It builds on the control plane's vocabulary
// (cluster/schema) and the cluster key (cluster/clusterkey), which import
// none of these; an import of node, cluster, gateway or embedder would bring
// them all back (and 4 MB with them).
var serverOnly = []string{
	"github.com/quic-go/quic-go",
	"github.com/yalue/onnxruntime_go",
	"github.com/hashicorp/raft",
	"github.com/prometheus/client_golang",
}

func TestLinksNoServer(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	imports := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		imports[f[0]] = f[1:]
	}
	if _, ok := imports["parley/cmd/parleyctl"]; !ok {
		t.Fatalf("go list does not list parleyctl:\n%s", out)
	}
	for _, s := range serverOnly {
		var linked []string
		for pkg := range imports {
			if strings.Contains(pkg, s) {
				linked = append(linked, pkg)
			}
		}
		if len(linked) > 0 {
			slices.Sort(linked)
			t.Errorf("parleyctl links %d packages of %s: %s", len(linked), s, strings.Join(importChain(imports, "parley/cmd/parleyctl", linked[0]), " -> "))
		}
	}
}

// importChain is a shortest chain of imports from one package to another.
func importChain(imports map[string][]string, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == to {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, q := range imports[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return []string{from, "?", to}
}
