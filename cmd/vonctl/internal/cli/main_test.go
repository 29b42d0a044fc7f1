package cli

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts must be gone when the tests end: the tests run von-manager's daemon (managerd.Run) over an embedded etcd in this process, and vonctl's keepalive loop in a goroutine.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
