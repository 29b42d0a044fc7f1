//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/cluster"
)

// iperfRun is what `iperf3 -J` reports that the tests look at.
type iperfRun struct {
	Intervals []struct {
		Sum struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum"`
	} `json:"intervals"`
	End struct {
		SumSent struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

func (r iperfRun) perSecond() []float64 {
	var out []float64
	for _, iv := range r.Intervals {
		out = append(out, iv.Sum.BitsPerSecond)
	}
	return out
}

// iperfTCP runs an iperf3 server on to's overlay address and a 10 s TCP client
// from from (iperf3 ARGS, e.g. -b 6.4M), calling during while it runs.
func iperfTCP(t *testing.T, c *cluster.Cluster, from, to *cluster.Link, during func() error, args ...string) iperfRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := c.TB.Command(ctx, to.Member, "iperf3", "-s", "-1", "-B", to.Address, "-p", "5201")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	time.Sleep(500 * time.Millisecond)
	cl := c.TB.Command(ctx, from.Member, append([]string{"iperf3", "-c", to.Address, "-p", "5201", "-t", "10", "-i", "1", "-J"}, args...)...)
	var out strings.Builder
	cl.Stdout = &out
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	if during != nil {
		if err := during(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Wait(); err != nil {
		t.Fatalf("iperf3 client: %v\n%s", err, out.String())
	}
	var r iperfRun
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		t.Fatalf("iperf3 -J: %v\n%s", err, out.String())
	}
	return r
}

func vonlinks(t *testing.T, c *cluster.Cluster, on string, members ...string) map[string]*cluster.Link {
	t.Helper()
	out := map[string]*cluster.Link{}
	for _, m := range members {
		l, err := c.StartVonlink(on, m)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Stop(syscall.SIGKILL) })
		out[m] = l
	}
	return out
}

// cutUnderFlood floods h2 from h3 (best effort, 60 Mbit/s) and cuts r2-r3 for 3 s
// from 3 s in.
func cutUnderFlood(c *cluster.Cluster) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		floodDone := cluster.Flood(ctx, c.TB, "h3", "h2", 60_000_000, 9*time.Second)
		defer floodDone()
		time.Sleep(3 * time.Second)
		if err := c.TB.Cut(ctx, "r2-r3"); err != nil {
			return err
		}
		time.Sleep(3 * time.Second)
		return c.TB.Restore(ctx, "r2-r3")
	}
}

// Issue 12: unmodified iperf3 TCP over vonlink on a redundant 8 Mbit ON, at 0.8·R,
// while one path is cut for 3 s under a best-effort flood: no second of the
// transfer falls below half the rate. The same on a non-redundant ON stalls during
// the cut. vonlink exits 0 on SIGTERM and takes its interface with it.
func TestVonlinkTCPAcrossCut(t *testing.T) {
	c := start(t, "testdata/ring.yaml")
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "twin", "--members", "h1,h2", "--rate", "8Mbit", "--redundant", "--ttl", "10m"); err != nil {
		t.Fatal(err)
	}
	ls := vonlinks(t, c, "twin", "h1", "h2")
	r := iperfTCP(t, c, ls["h1"], ls["h2"], cutUnderFlood(c), "-b", "6.4M")
	t.Logf("redundant: per second %s, retransmits %d", mbits(r.perSecond()), r.End.SumSent.Retransmits)
	for i, bps := range r.perSecond() {
		if bps < 3.2e6 {
			t.Errorf("redundant ON: second %d carried %.2f Mbit/s, below half of 6.4 Mbit/s", i, bps/1e6)
		}
	}
	if r.End.SumSent.Retransmits > 50 {
		t.Errorf("redundant ON: %d retransmits across the cut", r.End.SumSent.Retransmits)
	}
	st, err := c.TB.Exec(ctx, "h2", "ip", "-o", "link", "show", "von0")
	if err != nil || !strings.Contains(st, "mtu 1440") {
		t.Errorf("h2's von0: %q %v", st, err)
	}
	for _, l := range ls {
		l.Stop(syscall.SIGTERM)
		if err := l.ExitErr(); err != nil {
			t.Errorf("vonlink %s after SIGTERM: %v", l.Member, err)
		}
	}
	if out, err := c.TB.Exec(ctx, "h2", "ip", "link", "show", "von0"); err == nil {
		t.Errorf("von0 still there after SIGTERM: %s", out)
	}
	if _, err := c.Vonctl(ctx, "release", "twin"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // the agents report r2-r3 up again

	if _, err := c.Vonctl(ctx, "reserve", "single", "--members", "h1,h2", "--rate", "8Mbit", "--ttl", "10m"); err != nil {
		t.Fatal(err)
	}
	ls = vonlinks(t, c, "single", "h1", "h2")
	r = iperfTCP(t, c, ls["h1"], ls["h2"], cutUnderFlood(c), "-b", "6.4M")
	t.Logf("non-redundant: per second %s, retransmits %d", mbits(r.perSecond()), r.End.SumSent.Retransmits)
	stalled := false
	for _, bps := range r.perSecond() {
		stalled = stalled || bps < 3.2e6
	}
	if !stalled {
		t.Errorf("non-redundant ON: no second below half the rate across a 3 s cut of its only path")
	}
}

func mbits(v []float64) string {
	var b strings.Builder
	for _, x := range v {
		fmt.Fprintf(&b, "%.1f ", x/1e6)
	}
	return strings.TrimSpace(b.String())
}

// socatRecv starts socat in node printing the first datagram it receives at addr
// (socat ADDRESS options), and returns a function that waits for it (at most d).
func socatRecv(t *testing.T, c *cluster.Cluster, node, address string, d time.Duration) func() string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	cmd := c.TB.Command(ctx, node, "socat", "-u", address, "STDOUT")
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	time.Sleep(300 * time.Millisecond)
	return func() string { _ = cmd.Wait(); cancel(); return out.String() }
}

// socatSend sends msg from node to address a few times (the receiver may still be
// joining a group).
func socatSend(t *testing.T, c *cluster.Cluster, node, address, msg string) {
	t.Helper()
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cmd := c.TB.Command(ctx, node, "socat", "-u", "STDIN", address)
		cmd.Stdin = strings.NewReader(msg)
		if out, err := cmd.CombinedOutput(); err != nil {
			cancel()
			t.Fatalf("socat from %s to %s: %v %s", node, address, err, out)
		}
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
}

// Issue 12: an unmodified sender's UDP and IPv4 multicast reach the member over
// vonlink; a router on the member's link that routes the overlay address at it
// cannot inject (vonlink's guard table), though the kernel would otherwise accept
// it.
func TestVonlinkUDPMulticastAndInjection(t *testing.T) {
	c := start(t, "testdata/ring.yaml")
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "udp", "--members", "h1,h2", "--rate", "4Mbit", "--ttl", "10m"); err != nil {
		t.Fatal(err)
	}
	h1, err := c.StartVonlink("udp", "h1", "--multicast-route")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h1.Stop(syscall.SIGKILL) })
	h2, err := c.StartVonlink("udp", "h2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h2.Stop(syscall.SIGKILL) })

	wait := socatRecv(t, c, "h2", "UDP4-RECVFROM:6001,bind="+h2.Address, 10*time.Second)
	socatSend(t, c, "h1", "UDP4-DATAGRAM:"+h2.Address+":6001", "unicast")
	if got := wait(); got != "unicast" {
		t.Errorf("unicast UDP h1 → h2's overlay address: got %q", got)
	}
	wait = socatRecv(t, c, "h2", "UDP4-RECVFROM:6002,ip-add-membership=239.7.7.7:"+h2.Address+",reuseaddr", 10*time.Second)
	socatSend(t, c, "h1", "UDP4-DATAGRAM:239.7.7.7:6002", "multicast") // no interface chosen: the route does it
	if got := wait(); got != "multicast" {
		t.Errorf("multicast h1 → 239.7.7.7 on h2: got %q", got)
	}

	// r6 is on h2's link: it routes h2's overlay address at h2's underlay.
	end, err := c.TB.End("r6-h2", "r6")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.TB.Exec(ctx, "r6", "ip", "route", "add", h2.Address+"/32", "dev", end.Iface); err != nil {
		t.Fatalf("route on r6: %v %s", err, out)
	}
	wait = socatRecv(t, c, "h2", "UDP4-RECVFROM:6003,bind="+h2.Address, 4*time.Second)
	socatSend(t, c, "r6", "UDP4-DATAGRAM:"+h2.Address+":6003", "injected")
	if got := wait(); got != "" {
		t.Errorf("r6 injected %q into h2's VON address over the underlay", got)
	}
	guard, _ := c.TB.Exec(ctx, "h2", "nft", "list", "table", "ip", "vonlink_von0")
	t.Logf("h2's guard table:\n%s", guard)
}
