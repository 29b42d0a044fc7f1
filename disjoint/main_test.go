package disjoint

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts must be gone when the tests end: TestConcurrentQueries runs queries from several goroutines.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
