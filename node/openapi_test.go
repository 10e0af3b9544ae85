package node

import (
	"context"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// specPath is a route's path as the test compares them: each wildcard
// ({name}, {name...}) is {}, a ServeMux subtree ("/static/") ends in {}
// (its spec path names the rest, "/static/{file}"), and "{$}" is dropped.
func specPath(p string) string {
	p = strings.TrimSuffix(p, "{$}")
	if strings.HasSuffix(p, "/") && p != "/" && !strings.HasSuffix(p, "pprof/") {
		p += "{}"
	}
	return reWildcard.ReplaceAllString(p, "{}")
}

var reWildcard = regexp.MustCompile(`\{[^}]*\}`)

// loadOpenAPI loads and validates docs/openapi.yaml as OpenAPI 3.1.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() || !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("docs/openapi.yaml is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("docs/openapi.yaml does not validate: %v", err)
	}
	return doc
}

// TestOpenAPIDescribesEveryRoute: docs/openapi.yaml is a valid OpenAPI
// 3.1 description, and it describes exactly the routes the node's public
// listener serves: every pattern registered on the node's route table
// (publicMux, recorded as it is registered) has its operation in the
// spec, and every operation of the spec is registered.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	r := runNode(t, Config{DataDir: t.TempDir(), AgentToken: "0123456789abcdef-token"})
	patterns := r.n.publicMux().Patterns()
	if len(patterns) < 60 {
		t.Fatalf("the node registered %d routes: has the route table changed form?", len(patterns))
	}
	registered := map[string]bool{}
	for _, p := range patterns {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			t.Errorf("route %q has no method: the spec names an operation per method", p)
			continue
		}
		registered[method+" "+specPath(path)] = true
	}
	described := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			described[method+" "+specPath(path)] = true
		}
	}
	for _, k := range slices.Sorted(maps.Keys(registered)) {
		if !described[k] {
			t.Errorf("docs/openapi.yaml does not describe %s, which the node serves", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(described)) {
		if !registered[k] {
			t.Errorf("docs/openapi.yaml describes %s, which the node does not serve", k)
		}
	}
}
