package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// globals are the flags every command accepts, before or after its name.
type globals struct {
	node       string
	token      string
	clusterKey string
	json       bool
	minIndex   uint64
	timeout    time.Duration
}

var errHelp = flag.ErrHelp

// usageError is a wrong command line: exit status 2, nothing was sent.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func envOr(k, def string) string {
	if v, ok := os.LookupEnv(k); ok && v != "" {
		return v
	}
	return def
}

// newFlagSet returns a flag set holding the global flags, bound to g. The
// defaults come from the environment; a flag given twice (before and after
// the command) keeps the last.
func newFlagSet(name string, g *globals) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if g.node == "" {
		g.node = envOr("PARLEY_NODE_URL", "http://127.0.0.1:8080")
		g.token = envOr("PARLEY_TOKEN", "")
		g.clusterKey = envOr("PARLEY_CLUSTER_KEY_FILE", "")
		g.timeout = 30 * time.Second
	}
	fs.StringVar(&g.node, "node", g.node, "node URL")
	fs.StringVar(&g.token, "token", g.token, "bearer token")
	fs.StringVar(&g.clusterKey, "cluster-key", g.clusterKey, "cluster key file")
	fs.BoolVar(&g.json, "json", g.json, "print JSON")
	fs.Uint64Var(&g.minIndex, "min-index", g.minIndex, "wait for this log index")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "request timeout")
	return fs
}

// cmdFlags is a command's flag set: its own flags and the global ones.
type cmdFlags struct {
	*flag.FlagSet
	set map[string]bool
}

func (e *env) flags(name string) *cmdFlags {
	return &cmdFlags{FlagSet: newFlagSet(name, e.g)}
}

// parse reads flags and positional arguments in any order ("--" ends the
// flags) and checks the number of positional arguments.
func (f *cmdFlags) parse(args []string, minPos, maxPos int) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usagef("%v", err)
		}
		rest := f.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	f.set = map[string]bool{}
	f.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	switch {
	case len(pos) < minPos:
		return nil, usagef("missing arguments")
	case maxPos >= 0 && len(pos) > maxPos:
		return nil, usagef("unexpected argument %q", pos[maxPos])
	}
	return pos, nil
}

// given says whether a flag was on the command line.
func (f *cmdFlags) given(name string) bool { return f.set[name] }

// workspaceFlag registers -workspace (env PARLEY_WORKSPACE).
func (f *cmdFlags) workspaceFlag() *string {
	return f.String("workspace", envOr("PARLEY_WORKSPACE", ""), "workspace ID (env PARLEY_WORKSPACE)")
}

// needWorkspace checks a workspace flag.
func needWorkspace(ws string) error {
	if ws == "" {
		return usagef("-workspace is required (or env PARLEY_WORKSPACE)")
	}
	return checkID("workspace", ws)
}
