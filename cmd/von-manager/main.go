// Command von-manager is the VON reservation manager: it keeps the network model and
// the reservations in etcd, admits ONs, and drives the routers' agents with a
// two-phase commit.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vonproject/von/internal/clidocs"
	"github.com/vonproject/von/internal/logging"
	"github.com/vonproject/von/managerd"
	"github.com/vonproject/von/overlay"
	"github.com/vonproject/von/pki"
	"github.com/vonproject/von/wire"
)

func main() {
	if err := command().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "von-manager:", err)
		os.Exit(exitCode(err))
	}
}

// usageError marks bad flags or configuration: exit status 2, on which
// von-manager.service does not restart (RestartPreventExitStatus=2), since
// starting again cannot mend them.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// exitCode is 0 for no error, 2 for a usage error, 1 for any other failure.
func exitCode(err error) int {
	var ue usageError
	if err == nil {
		return 0
	}
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		return 2
	}
	return 1
}

func command() *cobra.Command {
	var (
		cfg                 managerd.Config
		endpoints           string
		overlayPool         string
		logFormat, logLevel string
		security            pki.Flags
	)
	cmd := &cobra.Command{
		Use:   "von-manager --listen ADDR --data-dir DIR",
		Short: "Run the VON reservation manager",
		Long: `von-manager serves vonctl, the SDK and the router agents over gRPC.

By default it runs a single-node etcd inside the process, with its data under
--data-dir, so it needs no setup; --etcd-endpoints points it at an external etcd
cluster instead (several managers may share one; the leader does the work).`,
		Example: `  von-manager --listen 127.0.0.1:7400 --data-dir /var/lib/von
  von-manager --listen :7400 --etcd-endpoints http://10.0.0.1:2379,http://10.0.0.2:2379 --http 127.0.0.1:9400`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(os.Stderr, logFormat, logLevel)
			if err != nil {
				return usageError{err}
			}
			if endpoints != "" {
				for _, e := range strings.Split(endpoints, ",") {
					if e = strings.TrimSpace(e); e != "" {
						cfg.EtcdEndpoints = append(cfg.EtcdEndpoints, e)
					}
				}
			}
			if len(cfg.EtcdEndpoints) == 0 && cfg.DataDir == "" {
				return usageError{errors.New("give --data-dir (embedded etcd) or --etcd-endpoints")}
			}
			// Every agent refuses a partition outside these ranges: refuse
			// to start rather than have every reservation fail at Prepare.
			if cfg.Manager.DSCP < 1 || cfg.Manager.DSCP > 63 {
				return usageError{fmt.Errorf("--dscp %d: want 1-63", cfg.Manager.DSCP)}
			}
			if cfg.Manager.Port < 1 || cfg.Manager.Port > 65535 {
				return usageError{fmt.Errorf("--port %d: want 1-65535", cfg.Manager.Port)}
			}
			// An ended record must outlive every partition of it an agent
			// may still hold: a restarted leader tells agents to keep their
			// state by the records it finds (docs/reservation.md).
			if cfg.Manager.OverlayPool, err = overlay.ParsePool(overlayPool); err != nil {
				return usageError{fmt.Errorf("--overlay-pool: %w", err)}
			}
			if cfg.Manager.Retention < 2*cfg.Manager.PartitionLease {
				return usageError{fmt.Errorf("--retention %s: want at least twice --partition-lease (%s)", cfg.Manager.Retention, cfg.Manager.PartitionLease)}
			}
			if cfg.HTTPAddr != "" && cfg.MetricsAddr != "" && cfg.HTTPAddr != cfg.MetricsAddr {
				return usageError{fmt.Errorf("--http %s and --metrics %s: --metrics is another name for --http; give one", cfg.HTTPAddr, cfg.MetricsAddr)}
			}
			cfg.Manager.Logger = log
			if cfg.TLS, err = security.Load(log, pki.KindManager); err != nil {
				return usageError{err}
			}
			cfg.Insecure = cfg.TLS == nil
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return managerd.Run(ctx, cfg)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7400", "gRPC address to serve vonctl, the SDK and agents on")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the embedded etcd's data (kept across restarts)")
	f.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated external etcd endpoints (instead of the embedded etcd)")
	f.StringVar(&cfg.HTTPAddr, "http", "", "address of the HTTP listener: the dashboard at /, Prometheus /metrics, /healthz, /readyz (empty: off; it shows every ON's names and members to whoever reaches it: keep it private)")
	f.StringVar(&cfg.MetricsAddr, "metrics", "", "the same as --http (its older name)")
	f.BoolVar(&cfg.Pprof, "pprof", false, "also serve Go's profiler at /debug/pprof/ on the --http address (it shows internals: keep that address private)")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&cfg.Manager.Advertise, "advertise", "",
		"address other managers reach this one at; they probe a leader there to take over at once when it crashes (default: the listen address, or hostname:port)")
	f.StringVar(&cfg.Manager.ID, "id", "", "name of this manager in the leader election; keep it stable across restarts (default: hostname/listen address)")
	f.DurationVar(&cfg.Manager.DefaultTTL, "default-ttl", time.Hour, "lease of a reservation whose request gives no --ttl")
	f.DurationVar(&cfg.Manager.MaxTTL, "max-ttl", 720*time.Hour, "longest lease a reservation may ask for")
	f.DurationVar(&cfg.Manager.PartitionLease, "partition-lease", 30*time.Second,
		"lease agents hold partitions under; refreshed every third of it, so agents ride out shorter manager outages")
	f.DurationVar(&cfg.Manager.SessionTTL, "election-ttl", 0,
		"leader election session: a crashed leader's standby takes over within it (default: partition-lease/3, at most 10s)")
	f.DurationVar(&cfg.Manager.HoldTTL, "hold-ttl", 30*time.Second, "how long agents hold a prepared partition waiting for the decision")
	f.DurationVar(&cfg.Manager.AgentLiveness, "agent-liveness", 15*time.Second, "an agent that has not registered for this long is down")
	f.DurationVar(&cfg.Manager.ReconcileInterval, "reconcile", 30*time.Second, "how often the leader re-drives unfinished rounds and pushes the full desired state to agents whose heartbeats show they are behind (to every live agent each 10th time)")
	f.DurationVar(&cfg.Manager.Quarantine, "id-quarantine", 10*time.Minute, "how long a released ON id stays unused")
	f.DurationVar(&cfg.Manager.Retention, "retention", time.Hour, "how long released, expired and failed reservations stay listed")
	security.Register(f)
	f.Uint32Var(&cfg.Manager.DSCP, "dscp", wire.DefaultDSCP, "DSCP of ON packets (1-63)")
	f.Uint32Var(&cfg.Manager.Port, "port", wire.DefaultPort, "UDP destination port of ON packets (1-65535)")
	f.StringVar(&overlayPool, "overlay-pool", overlay.DefaultPool.String(), "IPv4 prefix the ONs' overlay prefixes (vonlink's addresses) are assigned from; keep it unused on every member host")
	cmd.AddCommand(pkiCommand(), clidocs.Command("8"))
	clidocs.SetVersion(cmd)
	return cmd
}
