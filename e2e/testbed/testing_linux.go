//go:build linux

package testbed

import (
	"context"
	"testing"

	"github.com/vonproject/von/topology"
)

// New starts a testbed for a test and removes it when the test ends, pass or fail.
func New(t testing.TB, topo *topology.Topology, opts Options) *Testbed {
	t.Helper()
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
