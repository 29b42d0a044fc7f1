//go:build linux

// Package e2e runs the real von-manager, von-agent and vonctl binaries on real
// network-namespace topologies, pushes real traffic and counts what arrives.
package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/e2e/testbed"
)

var binDir string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e tests need root (network namespaces); run them as root or via .ci/run")
		os.Exit(1)
	}
	if removed, err := testbed.Sweep(); err != nil || len(removed) > 0 {
		fmt.Fprintf(os.Stderr, "swept %d leftover namespaces (err=%v)\n", len(removed), err)
	}
	dir, err := os.MkdirTemp("", "von-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	err = cluster.Build(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fastLeases make lease tests quick: partitions live 3 s without refresh.
var fastLeases = []string{"--partition-lease", "3s", "--hold-ttl", "3s", "--agent-liveness", "4s", "--reconcile", "2s"}

// start builds the testbed and the cluster (one manager) for a test; both go away
// when it ends, and their logs are printed if it failed.
func start(t *testing.T, topoFile string, managerArgs ...string) *cluster.Cluster {
	t.Helper()
	return startWith(t, topoFile, cluster.Options{ManagerArgs: managerArgs})
}

// startWith is start with more options (several managers, an etcd cluster).
func startWith(t *testing.T, topoFile string, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	tb := testbed.New(t, testbed.Load(t, topoFile), testbed.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts.BinDir, opts.Dir = binDir, t.TempDir()
	// Agents heartbeat every second: fastLeases' --agent-liveness (4 s) must
	// exceed the register interval, or agents look down between heartbeats.
	opts.AgentArgs = append([]string{"--register-interval", "1s"}, opts.AgentArgs...)
	c, err := cluster.Start(ctx, tb, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for i := range max(opts.Managers, 1) {
				name := "manager"
				if i > 0 {
					name += strconv.Itoa(i)
				}
				t.Logf("%s log:\n%s", name, tail(c.Log(name), 60))
			}
			for _, n := range tb.Plan.Nodes {
				if l := c.Log("agent-" + n.Name); l != "" {
					t.Logf("agent %s log:\n%s", n.Name, tail(l, 30))
				}
			}
		}
	})
	return c
}

func tail(s string, n int) string {
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
