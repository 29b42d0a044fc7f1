package agent

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/vonproject/von/partition"
	"github.com/vonproject/von/pki"
)

// Defaults for Config fields left zero.
const (
	DefaultListenAddr        = "127.0.0.1:4751"
	DefaultLeaseTTL          = 30 * time.Second
	DefaultHoldTTL           = 10 * time.Second
	DefaultMaxTTL            = 24 * time.Hour
	DefaultRegisterInterval  = 5 * time.Second
	DefaultRegisterTimeout   = 5 * time.Second
	DefaultWatchInterval     = time.Second
	DefaultReconcileInterval = 30 * time.Second
	DefaultHistorySize       = 4096
)

// Config configures an Agent. Zero values mean the defaults above.
type Config struct {
	// Node is the router's topology node name (required).
	Node string
	// Netns is the network namespace (under /var/run/netns) whose data plane the
	// agent manages; "" is the agent's own namespace. gRPC and metrics listen in
	// the agent's own namespace either way.
	Netns string
	// StateDir holds the agent journal (journal.json) and partition's
	// allocation state (partition.json). Required; created if missing.
	StateDir string
	// ManagerAddr is the "host:port" of a von-manager serving
	// AgentRegistryService. Empty: the agent never registers and only serves.
	ManagerAddr string
	// ListenAddr is where AgentService is served (default 127.0.0.1:4751);
	// Listener, if set, is used instead (the agent closes it).
	ListenAddr string
	Listener   net.Listener
	// Endpoint is the AgentService address reported to the manager; default the
	// listener's address (with the host name if it listens on all addresses).
	Endpoint string
	// MetricsAddr serves Prometheus metrics at /metrics; "" disables it.
	MetricsAddr string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Version is reported to the manager.
	Version string

	// Simulate replaces the kernel with a SIMULATED data plane holding these
	// interfaces: desired states are validated and recorded, nothing is
	// installed, Netns is ignored. For scale tests that run many agents in one
	// process; never on a router.
	Simulate []SimulatedInterface

	// Data plane options, passed to partition.Config.
	DSCP           uint8  // ON codepoint, default 44
	Port           uint16 // ON UDP port, default 4750
	ForceRootQdisc bool   // replace a foreign root qdisc on a managed interface
	PolicingDrop   bool   // drop (instead of re-mark) policed packets

	// Interfaces the agent may manage (own the root qdisc of). Empty: every
	// interface except loopback.
	Interfaces []string

	// DefaultLeaseTTL applies when a spec carries no lease_ttl, DefaultHoldTTL
	// when a Prepare carries no hold_ttl. MaxTTL caps both (longer is refused).
	DefaultLeaseTTL time.Duration
	DefaultHoldTTL  time.Duration
	MaxTTL          time.Duration
	// RegisterInterval is the period of the Register heartbeat; RegisterTimeout
	// bounds one Register call.
	RegisterInterval time.Duration
	RegisterTimeout  time.Duration
	// WatchInterval is the lease watchdog's period; ReconcileInterval the period
	// of re-applying the committed state to repair drift.
	WatchInterval     time.Duration
	ReconcileInterval time.Duration
	// HistorySize bounds the remembered txn outcomes (idempotent retries).
	HistorySize int

	// TLS is the agent's certificate (kind agent, named Node): AgentService
	// then serves mutual TLS to managers only, and registration checks that
	// it talks to a manager. Insecure must be set instead for plaintext, where
	// anyone who can connect may drive the agent; one of the two is required.
	TLS      *pki.Material
	Insecure bool
}

func (c Config) withDefaults() (Config, error) {
	if c.Node == "" {
		return c, invalidf("node name is required")
	}
	if c.StateDir == "" {
		return c, invalidf("state dir is required")
	}
	switch {
	case c.TLS == nil && !c.Insecure:
		return c, invalidf("%v: give the agent's certificate, or choose insecure (plaintext) explicitly", pki.ErrNoCredentials)
	case c.TLS != nil && c.Insecure:
		return c, invalidf("TLS and insecure together: choose one")
	case c.TLS != nil && (c.TLS.Identity().Kind != pki.KindAgent || c.TLS.Identity().Name != c.Node):
		return c, invalidf("the certificate names %s; router %s needs an agent certificate named %s (von-manager pki issue --kind agent --name %s)",
			c.TLS.Identity(), c.Node, c.Node, c.Node)
	}
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DSCP == 0 {
		c.DSCP = partition.DefaultDSCP
	}
	if c.DSCP > 63 {
		return c, invalidf("DSCP %d > 63", c.DSCP)
	}
	if c.Port == 0 {
		c.Port = partition.DefaultPort
	}
	def := func(d *time.Duration, v time.Duration, name string) error {
		if *d < 0 {
			return invalidf("%s %v is negative", name, *d)
		}
		if *d == 0 {
			*d = v
		}
		return nil
	}
	for _, f := range []struct {
		d    *time.Duration
		v    time.Duration
		name string
	}{
		{&c.DefaultLeaseTTL, DefaultLeaseTTL, "default lease TTL"},
		{&c.DefaultHoldTTL, DefaultHoldTTL, "default hold TTL"},
		{&c.MaxTTL, DefaultMaxTTL, "max TTL"},
		{&c.RegisterInterval, DefaultRegisterInterval, "register interval"},
		{&c.RegisterTimeout, DefaultRegisterTimeout, "register timeout"},
		{&c.WatchInterval, DefaultWatchInterval, "watch interval"},
		{&c.ReconcileInterval, DefaultReconcileInterval, "reconcile interval"},
	} {
		if err := def(f.d, f.v, f.name); err != nil {
			return c, err
		}
	}
	if c.HistorySize <= 0 {
		c.HistorySize = DefaultHistorySize
	}
	for _, n := range c.Interfaces {
		if n == "" || len(n) > 15 {
			return c, invalidf("interface name %q", n)
		}
	}
	return c, nil
}

func (c Config) partitionConfig() partition.Config {
	return partition.Config{
		Netns: c.Netns, Logger: c.Logger.With("component", "partition"),
		DSCP: c.DSCP, Port: c.Port, StateDir: c.StateDir,
		ForceRootQdisc: c.ForceRootQdisc, PolicingDrop: c.PolicingDrop,
	}
}

// manageable says whether the configuration lets the agent own ifname's root qdisc.
func (c Config) manageable(ifname string) bool {
	if len(c.Interfaces) == 0 {
		return ifname != "lo"
	}
	for _, n := range c.Interfaces {
		if n == ifname {
			return true
		}
	}
	return false
}

func fmtRate(bps uint64) string {
	switch {
	case bps >= 1e9 && bps%1e9 == 0:
		return fmt.Sprintf("%dGbit", bps/1e9)
	case bps >= 1e6 && bps%1e6 == 0:
		return fmt.Sprintf("%dMbit", bps/1e6)
	case bps >= 1e3 && bps%1e3 == 0:
		return fmt.Sprintf("%dkbit", bps/1e3)
	default:
		return fmt.Sprintf("%dbit", bps)
	}
}
