package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vonproject/von/dashboard"
	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/internal/testenv"
	"github.com/vonproject/von/pki"
	"github.com/vonproject/von/sdk"
)

// Binaries is the harness that runs the von-manager, von-agent and vonctl
// binaries built into binDir (cluster.Build) with mutual TLS; a scenario's
// calls are vonctl commands. When a test fails, it logs the processes' logs.
func Binaries(binDir string) Harness {
	return Harness{Name: "binaries", Start: func(t *testing.T, tb *testbed.Testbed, cfg Config) Cluster {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		httpAddr := testenv.FreeAddr(t)
		c, err := cluster.Start(ctx, tb, cluster.Options{BinDir: binDir, Dir: t.TempDir(), ManagerArgs: append(cfg.ManagerArgs(), "--http", httpAddr),
			AgentArgs: []string{"--register-interval", AgentRegisterInterval.String()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c.Close()
			if t.Failed() {
				LogTails(t, c, 1)
			}
		})
		return &binaries{c: c, httpAddr: httpAddr}
	}}
}

// LogTails logs the end of every manager's and agent's log.
func LogTails(t *testing.T, c *cluster.Cluster, managers int) {
	t.Helper()
	for i := range max(managers, 1) {
		name := "manager"
		if i > 0 {
			name += strconv.Itoa(i)
		}
		t.Logf("%s log:\n%s", name, Tail(c.Log(name), 60))
	}
	for _, n := range c.TB.Plan.Nodes {
		if l := c.Log("agent-" + n.Name); l != "" {
			t.Logf("agent %s log:\n%s", n.Name, Tail(l, 30))
		}
	}
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			lines++
			if lines > n {
				return s[i+1:]
			}
		}
	}
	return s
}

type binaries struct {
	c        *cluster.Cluster
	httpAddr string
}

func (b *binaries) Testbed() *testbed.Testbed { return b.c.TB }

func (b *binaries) SDK(member string) (sdk.Config, error) {
	tls, err := b.c.Material(pki.Identity{Kind: pki.KindUser, Name: member})
	if err != nil {
		return sdk.Config{}, err
	}
	return sdk.Config{Manager: b.c.ManagerAddr, TLS: tls, Member: member, Netns: b.c.TB.Namespace(member)}, nil
}

// view is what vonctl get -o json prints (docs/cli.md).
type view struct {
	Name         string     `json:"name"`
	OnID         uint32     `json:"on_id"`
	State        string     `json:"state"`
	RateBps      uint64     `json:"rate_bps"`
	LeaseExpires *time.Time `json:"lease_expires"`
	Members      []struct {
		Name string `json:"name"`
	} `json:"members"`
	Paths []struct {
		From  string `json:"from"`
		To    string `json:"to"`
		Paths []struct {
			Nodes []string `json:"nodes"`
		} `json:"paths"`
	} `json:"paths"`
}

func parseView(out string) (Reservation, error) {
	var v view
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return Reservation{}, fmt.Errorf("vonctl -o json: %w\n%s", err, out)
	}
	r := Reservation{Name: v.Name, OnID: v.OnID, State: v.State, RateBps: v.RateBps}
	if v.LeaseExpires != nil {
		r.LeaseExpires = *v.LeaseExpires
	}
	for _, m := range v.Members {
		r.Members = append(r.Members, m.Name)
	}
	for _, pp := range v.Paths {
		p := PairPaths{From: pp.From, To: pp.To}
		for _, path := range pp.Paths {
			p.Paths = append(p.Paths, path.Nodes)
		}
		r.Paths = append(r.Paths, p)
	}
	return r, nil
}

func (b *binaries) Reserve(ctx context.Context, o ReserveOptions) (Reservation, error) {
	args := []string{"reserve", o.Name, "--members", strings.Join(o.Members, ","), "--rate", strconv.FormatUint(o.Rate, 10) + "bit", "-o", "json"}
	if o.Redundant {
		args = append(args, "--redundant")
	}
	if o.TTL != 0 {
		args = append(args, "--ttl", o.TTL.String())
	}
	out, err := b.c.Vonctl(ctx, args...)
	if err != nil {
		return Reservation{}, err
	}
	return parseView(out)
}

func (b *binaries) Get(ctx context.Context, name string) (Reservation, error) {
	out, err := b.c.Vonctl(ctx, "get", name, "-o", "json")
	if err != nil {
		return Reservation{}, err
	}
	return parseView(out)
}

func (b *binaries) Release(ctx context.Context, name string) error {
	_, err := b.c.Vonctl(ctx, "release", name)
	return err
}

func (b *binaries) StopAgent(node string) { b.c.StopAgent(node, syscall.SIGKILL) }

func (b *binaries) StartAgent(ctx context.Context, node string) error {
	return b.c.StartAgent(ctx, node)
}

func (b *binaries) WaitAgents(ctx context.Context, timeout time.Duration) error {
	return b.c.WaitAgents(ctx, timeout)
}

func (b *binaries) StopManager() { b.c.StopManager() }

func (b *binaries) StartManager(ctx context.Context) error { return b.c.StartManager(ctx) }

func (b *binaries) Metrics(ctx context.Context) (string, error) {
	return scrape(ctx, "http://"+b.httpAddr+"/metrics")
}

func (b *binaries) State(ctx context.Context) (*dashboard.Snapshot, error) {
	return state(ctx, b.httpAddr)
}
