// Command von-agent is the VON router agent: it serves AgentService (the
// manager's two-phase-commit participant) for one router, enforces committed
// partitions through package partition, journals its state and removes
// partitions whose lease runs out. All logic lives in package agent.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vonproject/von/agent"
	"github.com/vonproject/von/internal/buildinfo"
	"github.com/vonproject/von/internal/clidocs"
	"github.com/vonproject/von/internal/logging"
	"github.com/vonproject/von/pki"
	"github.com/vonproject/von/wire"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks bad command-line input (exit status 2).
type usageError struct{ error }

type options struct {
	node, manager, listen, endpoint, netns, stateDir, metrics string
	logFormat, logLevel                                       string
	forceRootQdisc, policingDrop                              bool
	dscp, port                                                int
	interfaces                                                []string
	defaultLease, defaultHold, registerInterval               time.Duration
	security                                                  pki.Flags
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	cmd := &cobra.Command{
		Use:   "von-agent --node NAME --manager ADDR [flags]",
		Short: "VON router agent: enforces ON partitions on one Linux router",
		Long: `von-agent runs on each VON router (or manages one router network namespace with
--netns). It registers the router's interfaces with the manager, serves the
manager's two-phase commit (Prepare/Commit/Abort/Refresh/Release/Sync/Status),
installs committed partitions (HTB classes, ON classification, path pinning,
edge policing), journals its state under --state-dir so a restart resumes
without disturbing installed partitions, and removes a partition by itself when
its lease runs out with no refresh from any manager.

SIGINT/SIGTERM stop the agent gracefully; installed partitions stay in place
(their lease, not the process, decides their life).`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), o, stderr)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&o.node, "node", "", "topology node name of this router (required)")
	f.StringVar(&o.manager, "manager", os.Getenv("VON_MANAGER"), "von-manager address host:port to register with (required; env VON_MANAGER)")
	f.StringVar(&o.listen, "listen", ":4751", "address to serve AgentService on")
	f.StringVar(&o.endpoint, "endpoint", "", "AgentService address reported to the manager (default: --listen, with this host's name if it listens on all addresses)")
	f.StringVar(&o.netns, "netns", "", "manage the data plane of this network namespace (/var/run/netns/NAME) instead of the agent's own")
	f.StringVar(&o.stateDir, "state-dir", "/var/lib/von-agent", "directory for the journal (journal.json) and data-plane state (partition.json)")
	f.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics (disabled when empty)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.BoolVar(&o.forceRootQdisc, "force-root-qdisc", false, "replace a foreign root qdisc on an interface a partition needs (default: refuse)")
	f.IntVar(&o.dscp, "dscp", wire.DefaultDSCP, "DSCP codepoint that marks ON packets (1-63)")
	f.IntVar(&o.port, "port", wire.DefaultPort, "UDP destination port of ON packets (1-65535)")
	f.StringSliceVar(&o.interfaces, "interfaces", nil, "comma-separated interfaces the agent may manage (default: all but lo)")
	f.BoolVar(&o.policingDrop, "policing-drop", false, "drop ON-marked packets from non-members at the edge (default: re-mark them best effort)")
	f.DurationVar(&o.defaultLease, "default-lease", agent.DefaultLeaseTTL, "partition lease when the manager gives none")
	f.DurationVar(&o.defaultHold, "default-hold", agent.DefaultHoldTTL, "prepared-hold lifetime when the manager gives none")
	f.DurationVar(&o.registerInterval, "register-interval", agent.DefaultRegisterInterval, "period of the Register heartbeat to the manager")
	o.security.Register(f)
	cmd.AddCommand(clidocs.Command("8"))
	clidocs.SetVersion(cmd)
	cmd.SetArgs(args)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := cmd.ExecuteContext(ctx)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command"):
		fmt.Fprintf(stderr, "von-agent: %v\nRun 'von-agent --help' for usage.\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "von-agent: %v\n", err)
		return 1
	}
}

func (o options) check() error {
	switch {
	case o.node == "":
		return usageError{errors.New("--node is required (the router's name in the topology)")}
	case o.manager == "":
		return usageError{errors.New("--manager is required (host:port of a von-manager; or set VON_MANAGER)")}
	case o.stateDir == "":
		return usageError{errors.New("--state-dir must not be empty")}
	case o.dscp < 1 || o.dscp > 63:
		return usageError{fmt.Errorf("--dscp %d: want 1-63", o.dscp)}
	case o.port < 1 || o.port > 65535:
		return usageError{fmt.Errorf("--port %d: want 1-65535", o.port)}
	case o.defaultLease <= 0 || o.defaultHold <= 0 || o.registerInterval <= 0:
		return usageError{errors.New("--default-lease, --default-hold and --register-interval must be positive")}
	}
	return nil
}

func serve(ctx context.Context, o options, logw io.Writer) error {
	if err := o.check(); err != nil {
		return err
	}
	log, err := logging.New(logw, o.logFormat, o.logLevel)
	if err != nil {
		return usageError{err}
	}
	tls, err := o.security.Load(log, pki.KindAgent)
	if err != nil {
		return usageError{err}
	}
	a, err := agent.New(ctx, agent.Config{
		TLS: tls, Insecure: tls == nil,
		Node: o.node, Netns: o.netns, StateDir: o.stateDir, ManagerAddr: o.manager,
		ListenAddr: o.listen, Endpoint: o.endpoint, MetricsAddr: o.metrics, Logger: log, Version: buildinfo.Get().Short(),
		DSCP: uint8(o.dscp), Port: uint16(o.port), ForceRootQdisc: o.forceRootQdisc, PolicingDrop: o.policingDrop,
		Interfaces: o.interfaces, DefaultLeaseTTL: o.defaultLease, DefaultHoldTTL: o.defaultHold,
		RegisterInterval: o.registerInterval,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
