package node

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// flagEnv names the environment variable of each flag that has one. A
// flag's value comes from, in order: the command line, this variable, the
// config file (-config), the flag's default. model-dir and ort-lib are read
// from their variables later (embedder paths), but the file yields to them
// all the same.
var flagEnv = map[string]string{
	"config":               "PARLEY_CONFIG",
	"http":                 "PARLEY_HTTP",
	"data":                 "PARLEY_DATA",
	"node":                 "PARLEY_NODE",
	"agent-token":          "PARLEY_AGENT_TOKEN",
	"log-level":            "PARLEY_LOG_LEVEL",
	"h3":                   "PARLEY_H3",
	"tls-cert":             "PARLEY_TLS_CERT",
	"tls-key":              "PARLEY_TLS_KEY",
	"acme-domains":         "PARLEY_ACME_DOMAINS",
	"acme-dir":             "PARLEY_ACME_DIR",
	"acme-email":           "PARLEY_ACME_EMAIL",
	"acme-ca":              "PARLEY_ACME_CA",
	"trusted-proxies":      "PARLEY_TRUSTED_PROXIES",
	"region":               "PARLEY_REGION",
	"raft-addr":            "PARLEY_RAFT_ADDR",
	"zone":                 "PARLEY_ZONE",
	"gossip-addr":          "PARLEY_GOSSIP_ADDR",
	"advertise":            "PARLEY_ADVERTISE",
	"join":                 "PARLEY_JOIN",
	"cluster-key":          "PARLEY_CLUSTER_KEY_FILE",
	"previous-cluster-key": "PARLEY_PREVIOUS_CLUSTER_KEY_FILE",
	"embedder":             "PARLEY_EMBEDDER",
	"model-dir":            "PARLEY_MODEL_DIR",
	"ort-lib":              "PARLEY_ORT_LIB",
	"otlp-endpoint":        "PARLEY_OTLP_ENDPOINT",
}

// listFlags take a YAML list in the file (or a comma-separated string).
var listFlags = map[string]bool{"join": true, "acme-domains": true, "trusted-proxies": true}

// envFor is the default of a flag: its environment variable when set,
// else def.
func envFor(flagName, def string) string {
	if k, ok := flagEnv[flagName]; ok {
		if v, ok := os.LookupEnv(k); ok {
			return v
		}
	}
	return def
}

// ErrConfigFile is what a config file that cannot be read or applied
// wraps.
var ErrConfigFile = errors.New("config file")

// applyConfigFile sets, from the YAML file at path, every flag of fs that
// neither the command line nor its environment variable set. The file is
// one mapping whose keys are flag names without the dash; a key that names
// no flag, a nested mapping or a duplicate key fails.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfigFile, err)
	}
	values, err := parseConfigFile(b)
	if err != nil {
		return fmt.Errorf("%w %s: %w", ErrConfigFile, path, err)
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		if k == "config" || fs.Lookup(k) == nil {
			errs = append(errs, fmt.Errorf("%q is not a setting (the keys are the flags' names, without the dash)", k))
			continue
		}
		if onCommandLine[k] {
			continue
		}
		if e, ok := flagEnv[k]; ok {
			if _, set := os.LookupEnv(e); set {
				continue
			}
		}
		if err := fs.Set(k, values[k]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w %s: %w", ErrConfigFile, path, errors.Join(errs...))
	}
	return nil
}

// parseConfigFile reads the file's mapping into each key's value as a
// flag's text: a scalar as written, a list (of a list flag) joined by
// commas.
func parseConfigFile(b []byte) (map[string]string, error) {
	out := map[string]string{}
	if len(bytes.TrimSpace(b)) == 0 {
		return out, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return out, nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: not a mapping of settings", m.Line)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if _, dup := out[k.Value]; dup {
			return nil, fmt.Errorf("line %d: %q given twice", k.Line, k.Value)
		}
		switch {
		case v.Kind == yaml.ScalarNode:
			if v.Tag == "!!null" {
				return nil, fmt.Errorf("line %d: %s has no value", v.Line, k.Value)
			}
			out[k.Value] = v.Value
		case v.Kind == yaml.SequenceNode && listFlags[k.Value]:
			items := make([]string, 0, len(v.Content))
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode || strings.Contains(it.Value, ",") {
					return nil, fmt.Errorf("line %d: %s: each entry one value", it.Line, k.Value)
				}
				items = append(items, it.Value)
			}
			out[k.Value] = strings.Join(items, ",")
		default:
			return nil, fmt.Errorf("line %d: %s: a single value%s", v.Line, k.Value, map[bool]string{true: " or a list", false: ""}[listFlags[k.Value]])
		}
	}
	return out, nil
}
