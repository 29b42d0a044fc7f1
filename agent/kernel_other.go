//go:build !linux

package agent

import (
	"fmt"

	"github.com/vonproject/von/partition"
)

type kernel struct{}

func openKernel(string) (*kernel, error) {
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, partition.ErrUnsupportedPlatform)
}

func (k *kernel) close() {}

func (k *kernel) interfaces() (map[string]ifaceInfo, error) {
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, partition.ErrUnsupportedPlatform)
}

func (k *kernel) invalidate() {}
