//go:build !linux

package testbed

import (
	"context"
	"errors"
	"log/slog"

	"github.com/vonproject/von/topology"
)

// Options tunes a testbed.
type Options struct {
	Logger    *slog.Logger
	NoShaping bool
}

// Testbed is a running topology of namespaces (Linux only).
type Testbed struct{ Plan *Plan }

// ErrUnsupported is returned on systems without Linux network namespaces.
var ErrUnsupported = errors.New("testbed: needs Linux network namespaces")

// Start fails: testbeds need Linux.
func Start(context.Context, *topology.Topology, Options) (*Testbed, error) {
	return nil, ErrUnsupported
}

// Close does nothing.
func (*Testbed) Close() error { return nil }
