//go:build !linux

// Package nsexec runs a function inside a network namespace (Linux only).
package nsexec

import "errors"

// Do runs fn here when name is empty; network namespaces exist only on Linux.
func Do(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	return errors.New("network namespaces exist only on Linux")
}
