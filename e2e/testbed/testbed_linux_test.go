//go:build linux

package testbed

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vonproject/von/internal/testenv"
)

// The tests that build namespaces need root (New skips them without it, see
// internal/testenv); the plan tests do not. As root, leftovers of dead runs are
// swept first, and none of this run's namespaces may be left behind.
func TestMain(m *testing.M) {
	root := os.Geteuid() == 0
	if root {
		if removed, err := Sweep(); err != nil || len(removed) > 0 {
			fmt.Fprintf(os.Stderr, "swept %d leftover namespaces of dead runs (err=%v)\n", len(removed), err)
		}
	}
	code := m.Run()
	if code == 0 && root && os.Getenv(childEnv) == "" {
		if left := ours(os.Getpid()); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "namespaces left behind: %v\n", left)
			code = 1
		}
	}
	// Nor may a goroutine of this run (traffic senders and sinks, command
	// readers) outlive it.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// ours lists the namespaces of testbeds owned by pid.
func ours(pid int) []string {
	ents, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), fmt.Sprintf("%s%d.", NamePrefix, pid)) {
			out = append(out, e.Name())
		}
	}
	return out
}

func udpDelivered(t *testing.T, tb *Testbed, from, to string, n int) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sink, err := tb.Listen(ctx, to, netip.AddrPortFrom(netip.IPv4Unspecified(), 9000), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tb.Send(ctx, from, Flow{Dst: netip.AddrPortFrom(tb.Addr(to), 9000), Rate: 5_000_000, Size: 500, MaxPackets: n})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // in flight
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	got := sink.Total().Packets
	t.Logf("%s → %s: sent %d (%d refused locally), received %d", from, to, st.Packets, st.Errors, got)
	return got
}

// Six routers forward UDP between two hosts over the base routes; cutting a link on
// the path stops it, restoring it brings it back.
func TestForwardingAndCut(t *testing.T) {
	tb := New(t, Load(t, "testdata/six.yaml"), Options{})
	ctx := context.Background()
	if got := udpDelivered(t, tb, "h1", "h2", 500); got != 500 {
		t.Fatalf("before cut: %d of 500 arrived", got)
	}
	if got := udpDelivered(t, tb, "h2", "h1", 200); got != 200 {
		t.Fatalf("reverse: %d of 200 arrived", got)
	}
	// The base route h1→h2 goes r1-r2-r3-r6 (cost 3 against 6).
	out, err := tb.Exec(ctx, "r1", "ip", "route", "get", tb.Addr("h2").String())
	if err != nil || !strings.Contains(out, "dev eth1") {
		t.Fatalf("r1 route to h2: %q %v", out, err)
	}
	if err := tb.Cut(ctx, "r2-r3"); err != nil {
		t.Fatal(err)
	}
	if got := udpDelivered(t, tb, "h1", "h2", 200); got != 0 {
		t.Fatalf("after cutting r2-r3: %d packets still arrived", got)
	}
	if err := tb.Restore(ctx, "r2-r3"); err != nil {
		t.Fatal(err)
	}
	// Carrier comes back asynchronously; give the link a moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		// ≥: packets that waited in r1's ARP queue while the link was down arrive too.
		got := udpDelivered(t, tb, "h1", "h2", 100)
		if got >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restore: %d of 100 arrived", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A link of capacity C carries about C, whatever is offered.
func TestLinkCapacity(t *testing.T) {
	tb := New(t, Load(t, "testdata/bottleneck.yaml"), Options{})
	const capacity = 20_000_000
	for _, offered := range []uint64{capacity / 2, 2 * capacity} {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		sink, err := tb.Listen(ctx, "h2", netip.AddrPortFrom(netip.IPv4Unspecified(), 9001), nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := tb.Send(ctx, "h1", Flow{Dst: netip.AddrPortFrom(tb.Addr("h2"), 9001), Rate: offered, Size: 1000, Duration: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		sink.Close()
		cancel()
		got := sink.Total()
		// TBF counts Ethernet frames (14 bytes more than the IP packet).
		wire := float64(capacity) * 1028 / 1042
		want := min(float64(offered), wire)
		t.Logf("offered %.1f Mbit/s (sent %.1f), received %.2f Mbit/s, expected ≈ %.2f", float64(offered)/1e6, st.Rate()/1e6, got.Rate()/1e6, want/1e6)
		if r := got.Rate(); r < 0.93*want || r > 1.05*want {
			t.Errorf("offered %d bit/s: received %.0f bit/s, want %.0f ± 5%%", offered, r, want)
		}
	}
}

const childEnv = "VON_TESTBED_CHILD"

// TestChildFailsMidway is run by TestCleanupAfterFailure in a child process: it builds
// a testbed and fails halfway through. It does nothing in a normal run.
func TestChildFailsMidway(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "fail":
		tb := New(t, Load(t, "testdata/six.yaml"), Options{})
		fmt.Printf("READY %s\n", tb.Prefix())
		t.Fatal("failing midway on purpose")
	case "hang":
		tb := New(t, Load(t, "testdata/six.yaml"), Options{})
		// A process inside a namespace, as an agent would be.
		if err := tb.Command(context.Background(), "r1", "sleep", "60").Start(); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("READY %s\n", tb.Prefix())
		time.Sleep(60 * time.Second)
	default:
		t.Skip("helper for TestCleanupAfterFailure and TestSweepAfterKill")
	}
}

func child(t *testing.T, mode string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildFailsMidway$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

// A test that fails midway still removes every namespace it made.
func TestCleanupAfterFailure(t *testing.T) {
	testenv.RequireRoot(t, "the child builds network namespaces")
	cmd, sc := child(t, "fail")
	var lines []string
	ready := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		ready = ready || strings.HasPrefix(sc.Text(), "READY ")
	}
	err := cmd.Wait()
	if err == nil || !ready {
		t.Fatalf("child should have built a testbed and failed; err=%v\n%s", err, strings.Join(lines, "\n"))
	}
	if left := ours(cmd.Process.Pid); len(left) > 0 {
		t.Fatalf("failed test left namespaces: %v", left)
	}
}

// A test killed outright (no cleanup runs) leaves namespaces and a process behind;
// Sweep, which every test binary runs first, removes them.
func TestSweepAfterKill(t *testing.T) {
	testenv.RequireRoot(t, "the child builds network namespaces")
	cmd, sc := child(t, "hang")
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "READY ") {
	}
	pid := cmd.Process.Pid
	if len(ours(pid)) == 0 {
		t.Fatal("child built no namespaces")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if left := ours(pid); len(left) == 0 {
		t.Fatal("expected leftovers after SIGKILL")
	}
	removed, err := Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if left := ours(pid); len(left) > 0 {
		t.Fatalf("sweep left %v (removed %v)", left, removed)
	}
	t.Logf("swept %d namespaces of killed pid %d", len(removed), pid)
}
