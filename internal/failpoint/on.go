//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Enabled says whether this build honours failpoints.
const Enabled = true

var (
	once   sync.Once
	mu     sync.Mutex
	target string
	at     = 1
	hits   int
)

// Hit kills the process with SIGKILL when name is the step $VON_FAILPOINTS
// names and this is the hit it counts to.
func Hit(name string) {
	once.Do(func() {
		v := os.Getenv(Env)
		if i := strings.IndexByte(v, '@'); i >= 0 {
			if n, err := strconv.Atoi(v[i+1:]); err == nil && n > 0 {
				at = n
			}
			v = v[:i]
		}
		target = v
	})
	if target == "" || name != target {
		return
	}
	mu.Lock()
	hits++
	n := hits
	mu.Unlock()
	if n == at {
		fmt.Fprintf(os.Stderr, "failpoint %s: killing the process\n", name)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not delivered synchronously
	}
}
