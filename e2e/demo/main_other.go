//go:build !linux

// Command demo needs Linux network namespaces.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "demo: needs Linux (network namespaces)")
	os.Exit(1)
}
