//go:build linux

// Package e2e runs the real von-manager, von-agent and vonctl binaries on real
// network-namespace topologies, pushes real traffic and counts what arrives.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/e2e/framework"
	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/internal/testenv"
)

var binDir string

func TestMain(m *testing.M) {
	testenv.RootMain("e2e", "network namespaces, HTB and nftables on real kernels")
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
	// The in-process harness runs managers, etcd and agents in this process:
	// every goroutine they started must be gone once the tests are.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// fastLeases make lease tests quick: partitions live 3 s without refresh.
var fastLeases = framework.FastLeases.ManagerArgs()

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
	opts.AgentArgs = append([]string{"--register-interval", framework.AgentRegisterInterval.String()}, opts.AgentArgs...)
	c, err := cluster.Start(ctx, tb, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			framework.LogTails(t, c, opts.Managers)
		}
	})
	return c
}
