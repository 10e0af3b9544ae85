// Command parley runs one Parley node. With no flags it serves a demo
// workspace on 127.0.0.1:8080 with its data in ./data.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"parley/node"
)

func main() {
	cfg, err := node.ParseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley:", err)
		os.Exit(2)
	}
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
