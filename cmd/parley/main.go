// Command parley runs one Parley node. With no flags it serves a demo
// workspace on 127.0.0.1:8080 with its data in ./data.
//
//	parley restore [-data DIR] [-node ID] FILE
//
// unpacks a backup (`parleyctl backup`) into a stopped node's data
// directory, then exits: docs/operations.md, "Backup and restore".
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"parley/internal/heapfloor"
	"parley/node"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "restore" {
		os.Exit(restore(os.Args[2:]))
	}
	cfg, err := node.ParseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley:", err)
		os.Exit(2)
	}
	floor := heapfloor.Start(cfg.HeapFloor)
	defer floor.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.New(cfg, os.Stderr, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley:", err)
		os.Exit(1)
	}
	if err := n.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "parley:", err)
		os.Exit(1)
	}
}

// restore runs `parley restore`.
func restore(args []string) int {
	fs := flag.NewFlagSet("parley restore", flag.ContinueOnError)
	var cfg node.RestoreConfig
	fs.StringVar(&cfg.DataDir, "data", envOr("PARLEY_DATA", "data"), "data directory of the node to restore (holding no parley.db)")
	fs.StringVar(&cfg.NodeID, "node", envOr("PARLEY_NODE", "n1"), "node ID: the backup must be this node's")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: parley restore [-data DIR] [-node ID] FILE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	cfg.Backup = fs.Arg(0)
	m, err := node.Restore(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley restore:", err)
		return 1
	}
	fmt.Printf("restored node %s into %s: store of %d bytes taken at %s", m.Node, cfg.DataDir, m.StoreSize, m.TakenAt.Format("2006-01-02T15:04:05Z"))
	if m.Snapshot.ID != "" {
		fmt.Printf(", control-plane snapshot at index %d", m.Snapshot.Index)
	} else {
		fmt.Printf(", its own control-plane state kept")
	}
	fmt.Println("; start the node with the same cluster key")
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
