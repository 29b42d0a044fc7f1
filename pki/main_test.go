package pki

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts must be gone when the tests end: the handshake tests run a TLS server in a goroutine.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
