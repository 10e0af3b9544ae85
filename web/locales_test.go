package web

import (
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestWidgetLocalesComplete: every language of the widget's table has every
// key English has, no other, and keeps each {field} of the English string:
// a missing key would show English in the middle of a German panel, a lost
// {name} a sentence without its name.
func TestWidgetLocalesComplete(t *testing.T) {
	b, err := fs.ReadFile(FS(), "widget.js")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	start := strings.Index(src, "const LOCALES = {\n")
	end := strings.Index(src[start:], "\n  };\n")
	if start < 0 || end < 0 {
		t.Fatal("widget.js has no LOCALES table")
	}
	table := src[start : start+end]
	lang := regexp.MustCompile(`^    ([a-z]{2}): \{$`)
	entry := regexp.MustCompile(`^      (\w+): '((?:[^'\\]|\\.)*)',$`)
	field := regexp.MustCompile(`\{\w+\}`)
	locales := map[string]map[string]string{}
	var order []string
	var cur string
	for _, line := range strings.Split(table, "\n")[1:] {
		switch {
		case lang.MatchString(line):
			cur = lang.FindStringSubmatch(line)[1]
			locales[cur] = map[string]string{}
			order = append(order, cur)
		case entry.MatchString(line):
			m := entry.FindStringSubmatch(line)
			if _, dup := locales[cur][m[1]]; dup {
				t.Errorf("%s: %s twice", cur, m[1])
			}
			locales[cur][m[1]] = m[2]
		case strings.TrimSpace(line) == "}," || strings.TrimSpace(line) == "":
		default:
			t.Errorf("unexpected line in LOCALES (one key a line): %q", line)
		}
	}
	if want := []string{"en", "de", "fr", "es", "ar"}; !slices.Equal(order, want) {
		t.Fatalf("languages %v, want %v", order, want)
	}
	en := locales["en"]
	if len(en) < 30 {
		t.Fatalf("English has %d strings: the table was not read", len(en))
	}
	for _, l := range order[1:] {
		for k, s := range en {
			got, ok := locales[l][k]
			if !ok || got == "" {
				t.Errorf("%s: no %s", l, k)
				continue
			}
			if a, b := field.FindAllString(s, -1), field.FindAllString(got, -1); !slices.Equal(sorted(a), sorted(b)) {
				t.Errorf("%s.%s has fields %v, English %v", l, k, b, a)
			}
		}
		for k := range locales[l] {
			if _, ok := en[k]; !ok {
				t.Errorf("%s: %s is not an English key", l, k)
			}
		}
	}
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}
