// Package cli implements the vonctl commands (docs/cli.md). NewRoot builds
// the cobra command tree; each command lives in its own file and registers
// itself in NewRoot. Errors go to stderr: exit 1 when the request failed
// (with what to do about it), exit 2 for a usage error.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/vonproject/von/internal/clidocs"
	"github.com/vonproject/von/internal/clifmt"
	"github.com/vonproject/von/pki"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1 // the request failed
	ExitUsage = 2 // bad flags or arguments
)

// Global holds the persistent flags every command sees.
type Global struct {
	Manager  string // manager address, --manager or $VON_MANAGER
	Output   string // -o: table, json, yaml (some commands accept more)
	Security pki.Flags
	Stdout   io.Writer
	Stderr   io.Writer
}

// Format parses -o against what a command accepts.
func (g *Global) Format(allowed ...clifmt.Format) (clifmt.Format, error) {
	f, err := clifmt.Parse(g.Output, allowed...)
	if err != nil {
		return "", usageError(err)
	}
	return f, nil
}

// exitError carries an exit code and, optionally, a hint printed after the
// error.
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(err error) error { return &exitError{code: ExitUsage, err: err} }

func failure(err error, hint string) error {
	return &exitError{code: ExitError, err: err, hint: hint}
}

// NewRoot returns the vonctl command tree writing to stdout and stderr.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &Global{Stdout: stdout, Stderr: stderr}
	root := &cobra.Command{
		Use:   "vonctl",
		Short: "Reserve and inspect VON overlay networks",
		Long: "vonctl talks to a VON manager (--manager or $VON_MANAGER) to reserve overlay networks (ONs)\n" +
			"with guaranteed bandwidth, and plans paths offline from a topology file.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError(fmt.Errorf("%w (see '%s --help')", err, c.CommandPath()))
	})
	pf := root.PersistentFlags()
	pf.StringVar(&g.Manager, "manager", os.Getenv("VON_MANAGER"), "manager address host:port (env VON_MANAGER)")
	pf.StringVarP(&g.Output, "output", "o", "table", "output format: table, json or yaml (paths also takes dot and svg)")
	g.Security.Register(pf)

	// Commands: one file each.
	root.AddCommand(newPathsCmd(g))
	root.AddCommand(newTopologyCmd(g), newReserveCmd(g), newListCmd(g), newGetCmd(g), newWatchCmd(g),
		newRenewCmd(g), newReleaseCmd(g), newAgentsCmd(g), clidocs.Command("1"))
	clidocs.SetVersion(root)
	return root
}

// Main runs vonctl with args and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code, hint := ExitUsage, "" // errors cobra raises itself are about usage
	var ee *exitError
	if errors.As(err, &ee) {
		code, hint = ee.code, ee.hint
	}
	fmt.Fprintf(stderr, "vonctl: %v\n", err)
	if hint != "" {
		fmt.Fprintf(stderr, "hint: %s\n", hint)
	}
	return code
}
