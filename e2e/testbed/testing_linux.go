//go:build linux

package testbed

import (
	"context"
	"testing"

	"github.com/vonproject/von/internal/testenv"
	"github.com/vonproject/von/topology"
)

// New starts a testbed for a test and removes it when the test ends, pass or fail.
// Without root the test is skipped (failed under VON_TEST_REQUIRE_ROOT=1; see
// internal/testenv).
func New(t testing.TB, topo *topology.Topology, opts Options) *Testbed {
	t.Helper()
	testenv.RequireRoot(t, "network namespaces, veth and tc for the testbed")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tb, err := Start(ctx, topo, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tb.Close(); err != nil {
			t.Errorf("testbed cleanup: %v", err)
		}
	})
	return tb
}

// Load parses a topology file for a test, failing the test on error.
func Load(t testing.TB, path string) *topology.Topology {
	t.Helper()
	topo, err := topology.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}
