package framework

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vonproject/von/dashboard"
	"github.com/vonproject/von/e2e/testbed"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/sdk"
)

// Cluster is a running control plane (one manager, an agent on every router of
// the testbed) as a scenario sees it.
type Cluster interface {
	// Testbed is the network the cluster runs on.
	Testbed() *testbed.Testbed
	// Reserve makes a reservation and returns it as the manager answered.
	Reserve(ctx context.Context, r ReserveOptions) (Reservation, error)
	// Get reads a reservation.
	Get(ctx context.Context, name string) (Reservation, error)
	// Release ends a reservation.
	Release(ctx context.Context, name string) error
	// StopAgent stops the agent of router node abruptly (the binary is killed;
	// in process, its context is cancelled); its state directory and the kernel
	// state it installed stay.
	StopAgent(node string)
	// StartAgent starts it again (with the same state directory).
	StartAgent(ctx context.Context, node string) error
	// WaitAgents waits until the manager lists every running agent live.
	WaitAgents(ctx context.Context, timeout time.Duration) error
	// StopManager stops the manager (its etcd data stays); StartManager starts it
	// again at the same address.
	StopManager()
	StartManager(ctx context.Context) error
	// Metrics is the manager's Prometheus exposition (/metrics).
	Metrics(ctx context.Context) (string, error)
	// State is what the manager's dashboard shows (/api/state).
	State(ctx context.Context) (*dashboard.Snapshot, error)
	// SDK is a Config that joins an ON as member (ON left to the caller): in
	// plaintext in process, with a certificate naming the member with the
	// binaries. Its Netns is the member's namespace.
	SDK(member string) (sdk.Config, error)
}

// Config is what a scenario asks of the cluster; zero durations are the
// manager's defaults (the flags' defaults of von-manager).
type Config struct {
	PartitionLease time.Duration // --partition-lease
	HoldTTL        time.Duration // --hold-ttl
	AgentLiveness  time.Duration // --agent-liveness
	Reconcile      time.Duration // --reconcile
}

// FastLeases make lease scenarios quick: partitions live 3 s without refresh.
var FastLeases = Config{PartitionLease: 3 * time.Second, HoldTTL: 3 * time.Second, AgentLiveness: 4 * time.Second, Reconcile: 2 * time.Second}

// ManagerArgs are cfg as von-manager flags.
func (cfg Config) ManagerArgs() []string {
	var args []string
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"--partition-lease", cfg.PartitionLease}, {"--hold-ttl", cfg.HoldTTL}, {"--agent-liveness", cfg.AgentLiveness}, {"--reconcile", cfg.Reconcile}} {
		if f.d != 0 {
			args = append(args, f.name, f.d.String())
		}
	}
	return args
}

// AgentRegisterInterval is every harness's agent heartbeat: FastLeases'
// agent liveness (4 s) must exceed it, or agents look down between heartbeats.
const AgentRegisterInterval = time.Second

// ReserveOptions are the arguments of a reservation (vonctl reserve's flags).
type ReserveOptions struct {
	Name      string
	Members   []string
	Rate      uint64 // bit/s
	Redundant bool
	TTL       time.Duration // zero: the manager's default
}

// Reservation is what a scenario reads of one.
type Reservation struct {
	Name         string
	OnID         uint32
	State        string // "committed", "expired", … (vonctl's spelling)
	RateBps      uint64
	LeaseExpires time.Time
	Members      []string
	// Paths are the nodes of each path (path 0, then path 1 if redundant) of
	// each member pair, in the manager's order.
	Paths []PairPaths
}

// PairPaths are the paths between two members.
type PairPaths struct {
	From, To string
	Paths    [][]string
}

// fromProto is r as a scenario reads it.
func fromProto(r *vonv1.Reservation) Reservation {
	out := Reservation{Name: r.GetName(), OnID: r.GetOnId(), RateBps: r.GetRateBps(),
		State: strings.ToLower(strings.TrimPrefix(r.GetState().String(), "RESERVATION_STATE_"))}
	if t := r.GetLeaseExpireTime(); t != nil {
		out.LeaseExpires = t.AsTime()
	}
	for _, m := range r.GetMembers() {
		out.Members = append(out.Members, m.GetName())
	}
	for _, pp := range r.GetPaths() {
		p := PairPaths{From: pp.GetSrcMember(), To: pp.GetDstMember()}
		for _, path := range pp.GetPaths() {
			p.Paths = append(p.Paths, path.GetNodes())
		}
		out.Paths = append(out.Paths, p)
	}
	return out
}

// Harness starts a Cluster on tb for a test; the cluster stops when the test ends.
type Harness struct {
	Name  string
	Start func(t *testing.T, tb *testbed.Testbed, cfg Config) Cluster
}

// Run runs body on each harness, as subtests named after them, each on a new
// testbed built from the topology file.
func Run(t *testing.T, topoFile string, cfg Config, harnesses []Harness, body func(t *testing.T, c Cluster)) {
	t.Helper()
	for _, h := range harnesses {
		t.Run(h.Name, func(t *testing.T) {
			tb := testbed.New(t, testbed.Load(t, topoFile), testbed.Options{})
			body(t, h.Start(t, tb, cfg))
		})
	}
}

// Eventually polls cond every interval until it holds or timeout passes; it
// fails t with what cond last said.
func Eventually(t *testing.T, timeout, interval time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprintf("after %v: %s", timeout, why))
		}
		time.Sleep(interval)
	}
}
