// Package nsexec runs a function inside a network namespace: on a fresh, locked OS
// thread that is thrown away if it cannot be switched back. Sockets the function opens
// stay in that namespace. Used by the SDK (Config.Netns) and the testbed.
package nsexec

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// Do runs fn in the network namespace name (under /run/netns, or a path to one); ""
// runs it here.
func Do(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	var target netns.NsHandle
	var err error
	if strings.Contains(name, "/") {
		target, err = netns.GetFromPath(name)
	} else {
		target, err = netns.GetFromName(name)
	}
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", name, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", name, err))
			return // the thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
