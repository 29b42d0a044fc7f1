// Package testenv decides what a test does on a machine that lacks what it needs:
// root, for the tests that build network namespaces and drive the kernel's
// traffic control. Such a test skips, saying why, so that `go test ./...` passes
// as an ordinary user. Two environment variables change that:
//
//   - VON_TEST_REQUIRE_ROOT=1 (`make test`, which CI runs as root): a test that
//     needs root fails without it instead of skipping, so that CI can never pass
//     by skipping them.
//   - VON_TEST_NO_ROOT=1 (`make unit`): tests that need root skip even as root,
//     so that the quick run stays quick and leaves the kernel alone.
package testenv

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// The environment variables; "" and "0" mean unset.
const (
	RequireEnv = "VON_TEST_REQUIRE_ROOT"
	NoRootEnv  = "VON_TEST_NO_ROOT"
)

func set(name string) bool { v := os.Getenv(name); return v != "" && v != "0" }

// RequireRoot skips t unless the process is root (and NoRootEnv is unset); under
// RequireEnv it fails t instead of skipping it for want of root. why says what
// the test needs root for.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	switch {
	case set(NoRootEnv):
		t.Skipf("needs root (%s), and %s is set", why, NoRootEnv)
	case os.Geteuid() == 0:
	case set(RequireEnv):
		t.Fatalf("needs root (%s), and %s is set: run as root", why, RequireEnv)
	default:
		t.Skipf("needs root (%s): run as root to include it (make test does, and fails instead of skipping)", why)
	}
}

// RootMain is for the TestMain of a package whose every test needs root: it
// returns if they may run, and otherwise ends the process as RequireRoot would
// end a test: it exits 0 saying that the package is skipped, or, under
// RequireEnv without root, exits 1 saying why.
func RootMain(pkg, why string) {
	switch {
	case set(NoRootEnv):
		fmt.Printf("SKIP: %s: every test needs root (%s), and %s is set\n", pkg, why, NoRootEnv)
		os.Exit(0)
	case os.Geteuid() == 0:
	case set(RequireEnv):
		fmt.Fprintf(os.Stderr, "%s: the tests need root (%s), and %s is set: run them as root\n", pkg, why, RequireEnv)
		os.Exit(1)
	default:
		fmt.Printf("SKIP: %s: every test needs root (%s); run as root to include them\n", pkg, why)
		os.Exit(0)
	}
}

// FreeAddr is a loopback address ("127.0.0.1:port") whose port was free when
// asked, for a server a test starts at a known address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
