// Command vonctl reserves and inspects VON overlay networks (docs/cli.md).
// The commands live in package cli; this main only runs them.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/vonproject/von/cmd/vonctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
