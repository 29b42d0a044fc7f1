package partition

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vonproject/von/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func requireRoot(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "CAP_NET_ADMIN, to build network namespaces")
}

// run runs a command and fails the test on error.
func run(t testing.TB, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// nsRun runs argv inside namespace ns.
func nsRun(t testing.TB, ns string, argv ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", ns}, argv...)...)
}

// newNS creates an empty namespace vpt-<random> removed at cleanup.
func newNS(t testing.TB) string {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "vpt-" + hex.EncodeToString(b)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	// IPv4 only: with IPv6 on, each link-local address appears in the
	// local table whenever its DAD finishes, which races with snapshots.
	nsRun(t, name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	nsRun(t, name, "ip", "link", "set", "lo", "up")
	return name
}

// pairNS builds router namespace r with interfaces a0 (10.77.0.1/30, peer
// 10.77.0.2 in namespace p) and b0 (10.77.0.5/30, peer 10.77.0.6 in p),
// plus an access interface h0 (10.77.0.9/30, peer 10.77.0.10 in p).
func pairNS(t testing.TB) (r, p string) {
	t.Helper()
	r, p = newNS(t), newNS(t)
	for i, n := range []string{"a", "b", "h"} {
		base := 1 + 4*i
		nsRun(t, r, "ip", "link", "add", n+"0", "type", "veth", "peer", "name", n+"1", "netns", p)
		nsRun(t, r, "ip", "addr", "add", addr(base)+"/30", "dev", n+"0")
		nsRun(t, p, "ip", "addr", "add", addr(base+1)+"/30", "dev", n+"1")
		nsRun(t, r, "ip", "link", "set", n+"0", "up")
		nsRun(t, p, "ip", "link", "set", n+"1", "up")
	}
	return r, p
}

func addr(last int) string { return "10.77.0." + strconv.Itoa(last) }

var statsRE = regexp.MustCompile(`(?m)^\s*(Sent|rate|backlog|lended|tokens).*$`)

// snapshot is everything the package may touch in ns, as text.
func snapshot(t testing.TB, ns string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(nsRun(t, ns, "tc", "qdisc", "show"))
	for _, dev := range []string{"a0", "b0", "h0"} {
		b.WriteString(nsRun(t, ns, "tc", "class", "show", "dev", dev))
		b.WriteString(nsRun(t, ns, "tc", "filter", "show", "dev", dev))
	}
	b.WriteString(nsRun(t, ns, "ip", "rule"))
	b.WriteString(nsRun(t, ns, "ip", "route", "show", "table", "all"))
	b.WriteString(nsRun(t, ns, "nft", "list", "ruleset"))
	return statsRE.ReplaceAllString(b.String(), "")
}
