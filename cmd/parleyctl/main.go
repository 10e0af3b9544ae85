// Command parleyctl operates a Parley cluster over the admin REST API
// (docs/api.md): workspaces and their regions, operators, sessions, API
// keys, plans, usage, billing, assignments, erasure of a visitor's data,
// the cluster's membership, the audit log and backups of a node; and over
// the conversations API, a workspace's conversations and messages
// (conversation list, show, post, edit, delete) with a session's or an API
// key's token.
//
//	parleyctl [global flags] COMMAND [SUBCOMMAND] [flags] [args]
//
// It speaks to one node (-node, env PARLEY_NODE_URL; default
// http://127.0.0.1:8080) with a bearer token: -token (env PARLEY_TOKEN), or
// the cluster admin token derived from a cluster key file (-cluster-key, env
// PARLEY_CLUSTER_KEY_FILE; default ./data/cluster.key when it exists, the
// key a single node started by `make run` generates). Output is readable
// text; -json prints the API's replies as they are.
//
// Exit status: 0 on success, 1 when the API refused the request or could
// not be reached, 2 when the command line is wrong (nothing was sent).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit statuses.
const (
	exitOK    = 0
	exitAPI   = 1
	exitUsage = 2
)

// command is one subcommand: its usage line, a summary and what it does.
type command struct {
	name    string // "workspace create"
	args    string // usage after the name
	summary string
	run     func(e *env, args []string) error
}

var commands []command

func register(cs ...command) { commands = append(commands, cs...) }

// env is what a command runs with.
type env struct {
	g      *globals
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{}
	fs := newFlagSet("parleyctl", g)
	fs.Usage = func() { usage(stderr) }
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, errHelp) {
			usage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "parleyctl: %v\n", err)
		fmt.Fprintln(stderr, "Run 'parleyctl help' for usage.")
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] == "help" {
		if len(rest) > 1 {
			if c := lookup(rest[1:]); c != nil {
				fmt.Fprintf(stdout, "usage: parleyctl %s %s\n\n%s\n", c.name, c.args, c.summary)
				return exitOK
			}
		}
		if len(rest) == 0 {
			usage(stderr)
			return exitUsage
		}
		usage(stdout)
		return exitOK
	}
	c, n := find(rest)
	if c == nil {
		fmt.Fprintf(stderr, "parleyctl: unknown command %q\n", strings.Join(rest[:min(len(rest), 2)], " "))
		if subs := subcommands(rest[0]); len(subs) > 0 {
			fmt.Fprintf(stderr, "%s has: %s\n", rest[0], strings.Join(subs, ", "))
		}
		fmt.Fprintln(stderr, "Run 'parleyctl help' for usage.")
		return exitUsage
	}
	e := &env{g: g, stdin: stdin, stdout: stdout, stderr: stderr}
	err := c.run(e, rest[n:])
	return report(stderr, c, err)
}

// find returns the command named by the first one or two words of args and
// how many words it took.
func find(args []string) (*command, int) {
	if len(args) >= 2 {
		for i := range commands {
			if commands[i].name == args[0]+" "+args[1] {
				return &commands[i], 2
			}
		}
	}
	for i := range commands {
		if commands[i].name == args[0] {
			return &commands[i], 1
		}
	}
	return nil, 0
}

func lookup(words []string) *command {
	c, _ := find(words)
	return c
}

func subcommands(group string) []string {
	var out []string
	for _, c := range commands {
		if g, sub, ok := strings.Cut(c.name, " "); ok && g == group {
			out = append(out, sub)
		}
	}
	return out
}

// report prints a command's error and returns the exit status.
func report(stderr io.Writer, c *command, err error) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "parleyctl %s: %v\n", c.name, ue.msg)
		fmt.Fprintf(stderr, "usage: parleyctl %s %s\n", c.name, c.args)
		return exitUsage
	}
	if errors.Is(err, errHelp) {
		fmt.Fprintf(stderr, "usage: parleyctl %s %s\n\n%s\n", c.name, c.args, c.summary)
		return exitOK
	}
	fmt.Fprintf(stderr, "parleyctl %s: %v\n", c.name, err)
	return exitAPI
}

func usage(w io.Writer) {
	fmt.Fprint(w, `parleyctl operates a Parley cluster over its admin API (docs/api.md).

usage: parleyctl [global flags] COMMAND [flags] [args]

Global flags (also accepted after the command):
  -node URL          the node to talk to (env PARLEY_NODE_URL; default http://127.0.0.1:8080)
  -token TOKEN       bearer token: a session token, an API key pk_… or the admin token pa_… (env PARLEY_TOKEN)
  -cluster-key FILE  derive the cluster admin token from this key file (env PARLEY_CLUSTER_KEY_FILE;
                     default ./data/cluster.key when it exists)
  -json              print the API's JSON replies instead of text
  -min-index N       make the node wait until it has applied log index N before answering
  -timeout D         give up on a request after D (default 30s)

Commands:
`)
	cs := append([]command(nil), commands...)
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-24s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'parleyctl help COMMAND' for a command's arguments. Exit status: 0 done,
1 the API refused the request or could not be reached, 2 a wrong command line.
`)
}
