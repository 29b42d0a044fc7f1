//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vonproject/von/apierr"
	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/e2e/framework"
	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/reservation"
)

// The scenarios below are written once against framework.Cluster and run on
// both harnesses: the control plane in this process, and the real binaries.

func harnesses() []framework.Harness {
	return []framework.Harness{framework.InProcess, framework.Binaries(binDir)}
}

// reserve, lookup and scrape fail t on error.
func reserve(t *testing.T, c framework.Cluster, o framework.ReserveOptions) framework.Reservation {
	t.Helper()
	r, err := c.Reserve(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func lookup(t *testing.T, c framework.Cluster, name string) framework.Reservation {
	t.Helper()
	r, err := c.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func scrape(t *testing.T, c framework.Cluster) string {
	t.Helper()
	m, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func listen(t *testing.T, ctx context.Context, tb *testbed.Testbed, port uint16, key func([]byte) uint64) *testbed.Sink {
	t.Helper()
	s, err := tb.Listen(ctx, "h2", netip.AddrPortFrom(netip.IPv4Unspecified(), port), key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sendON(t *testing.T, ctx context.Context, tb *testbed.Testbed, f cluster.ONFlow) []testbed.SendStats {
	t.Helper()
	st, err := cluster.SendON(ctx, tb, f)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// reserve → a class on every router interface of both paths; ON traffic is isolated
// from a best-effort flood; release → every router clean.
func TestReserveIsolateRelease(t *testing.T) {
	framework.Run(t, "testdata/ring.yaml", framework.Config{}, harnesses(), func(t *testing.T, c framework.Cluster) {
		ctx := context.Background()
		tb := c.Testbed()
		reserve(t, c, framework.ReserveOptions{Name: "video", Members: []string{"h1", "h2"}, Rate: 8_000_000, Redundant: true, TTL: 10 * time.Minute})
		g := lookup(t, c, "video")
		if g.State != "committed" || g.OnID == 0 || g.RateBps != 8_000_000 || len(g.Members) != 2 || g.LeaseExpires.IsZero() {
			t.Fatalf("get: %+v", g)
		}
		if len(g.Paths) != 1 || len(g.Paths[0].Paths) != 2 {
			t.Fatalf("paths: %+v", g.Paths)
		}
		p0, p1 := strings.Join(g.Paths[0].Paths[0], " "), strings.Join(g.Paths[0].Paths[1], " ")
		if p0 != "h1 r1 r2 r3 r6 h2" || p1 != "h1 r1 r4 r5 r6 h2" {
			t.Fatalf("paths %q and %q", p0, p1)
		}
		classes := htbClasses(t, tb)
		for _, k := range []string{"r1:eth0", "r1:eth1", "r1:eth2", "r2:eth0", "r2:eth1", "r3:eth0", "r3:eth1",
			"r4:eth0", "r4:eth1", "r5:eth0", "r5:eth1", "r6:eth0", "r6:eth1", "r6:eth2"} {
			if classes[k] != 1 {
				t.Errorf("%s has %d ON classes, want 1 (all: %v)", k, classes[k], classes)
			}
		}
		if classes["r1:eth3"] != 0 {
			t.Errorf("r1:eth3 (stranger's access link, not on the ON) has an ON class")
		}

		// Isolation on the shared 20 Mbit core: the ON's copy 0 at 0.9·R over r2-r3,
		// best effort from the stranger h3 flooding h2 at 3× the link.
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		sink := listen(t, tctx, tb, cluster.ONPort, cluster.ONKey)
		defer sink.Close()
		be := listen(t, tctx, tb, 9100, nil)
		defer be.Close()
		floodDone := make(chan testbed.SendStats, 1)
		go func() {
			st, _ := tb.Send(tctx, "h3", testbed.Flow{Dst: netip.AddrPortFrom(tb.Addr("h2"), 9100), Rate: 60_000_000, Size: 1000, Duration: 3 * time.Second})
			floodDone <- st
		}()
		sent, err := cluster.SendON(tctx, tb, cluster.ONFlow{From: "h1", To: "h2", ONID: g.OnID, Rate: 7_200_000, Size: 1000, Duration: 3 * time.Second, Copies: 1})
		<-floodDone
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		got := sink.Key(cluster.Key(g.OnID, 0))
		loss := 1 - float64(got.Packets)/float64(sent[0].Packets)
		beRate := be.Total().Rate()
		t.Logf("ON sent %d, received %d (loss %.3f%%); best effort received %.2f Mbit/s", sent[0].Packets, got.Packets, 100*loss, beRate/1e6)
		if loss > 0.01 {
			t.Errorf("ON lost %.2f%% under a best-effort flood, want < 1%%", 100*loss)
		}
		// Best effort gets C − R = 12 Mbit/s plus what the ON leaves unused (0.8 Mbit/s).
		if beRate < 10.5e6 || beRate > 14e6 {
			t.Errorf("best effort got %.1f Mbit/s, want about C−R = 12 Mbit/s", beRate/1e6)
		}

		if err := c.Release(ctx, "video"); err != nil {
			t.Fatal(err)
		}
		if g := lookup(t, c, "video"); g.State != "released" {
			t.Errorf("after release: %s", g.State)
		}
		if cl := htbClasses(t, tb); len(cl) != 0 {
			t.Errorf("ON classes left after release: %v", cl)
		}
		for _, n := range []string{"r1", "r3", "r6"} {
			rules, _ := tb.Exec(ctx, n, "ip", "rule")
			if strings.Contains(rules, "fwmark") {
				t.Errorf("%s still has fwmark rules after release:\n%s", n, rules)
			}
		}
	})
}

// A reservation whose lease is not renewed disappears from every router.
func TestLeaseExpiryCleansRouters(t *testing.T) {
	framework.Run(t, "testdata/ring.yaml", framework.FastLeases, harnesses(), func(t *testing.T, c framework.Cluster) {
		reserve(t, c, framework.ReserveOptions{Name: "short", Members: []string{"h1", "h2"}, Rate: 2_000_000, TTL: 2 * time.Second})
		if n := len(htbClasses(t, c.Testbed())); n == 0 {
			t.Fatal("no classes installed")
		}
		framework.Eventually(t, 15*time.Second, 300*time.Millisecond, func() (bool, string) {
			g := lookup(t, c, "short")
			cl := htbClasses(t, c.Testbed())
			return g.State == "expired" && len(cl) == 0, "state " + g.State + ", classes " + fmt.Sprint(cl)
		})
		if m := scrape(t, c); !strings.Contains(m, `von_manager_reservations{state="expired"} 1`) {
			t.Errorf("metrics do not count the expired reservation:\n%s", grepLines(m, "von_manager_reservations"))
		}
	})
}

// An agent killed and restarted leaves partitions installed and enforced.
func TestAgentRestartKeepsPartitions(t *testing.T) {
	framework.Run(t, "testdata/ring.yaml", framework.Config{}, harnesses(), func(t *testing.T, c framework.Cluster) {
		ctx := context.Background()
		tb := c.Testbed()
		g := reserve(t, c, framework.ReserveOptions{Name: "keep", Members: []string{"h1", "h2"}, Rate: 4_000_000})
		before := htbClasses(t, tb)
		sendON(t, ctx, tb, cluster.ONFlow{From: "h1", To: "h2", ONID: g.OnID, Rate: 2_000_000, Duration: time.Second})
		c.StopAgent("r2")
		if err := c.StartAgent(ctx, "r2"); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitAgents(ctx, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		if after := htbClasses(t, tb); len(after) != len(before) {
			t.Fatalf("classes before restart %v, after %v", before, after)
		}
		sink := listen(t, ctx, tb, cluster.ONPort, cluster.ONKey)
		sending := make(chan []testbed.SendStats, 1)
		go func() {
			st, _ := cluster.SendON(ctx, tb, cluster.ONFlow{From: "h1", To: "h2", ONID: g.OnID, Rate: 6_000_000, Duration: 6 * time.Second})
			sending <- st
		}()
		// Meanwhile the dashboard shows what the agents measure it carrying:
		// the reserved rate it is held to, not what it offers. (Agents measure
		// only while the dashboard is looked at: from the first read on, a
		// registration asks them to, the next sets their baseline, the one
		// after reports.)
		var measured uint64
		for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			if s, err := c.State(ctx); err == nil && s.Measured[g.OnID] != 0 {
				if measured = s.Measured[g.OnID]; measured > 3e6 {
					break
				}
			}
		}
		sent := <-sending
		time.Sleep(300 * time.Millisecond)
		sink.Close()
		if len(sent) == 0 {
			t.Fatal("sending failed")
		}
		// Still capped at the reserved 4 Mbit/s after the restart.
		if r := sink.Key(cluster.Key(g.OnID, 0)).Rate(); r > 4.3e6 || r < 3.5e6 {
			t.Errorf("ON sending %.1f Mbit/s received %.2f Mbit/s after agent restart, want ≈ 4", sent[0].Rate()/1e6, r/1e6)
		}
		t.Logf("the dashboard showed the ON carrying %.2f Mbit/s", float64(measured)/1e6)
		if measured < 3.3e6 || measured > 4.6e6 {
			t.Errorf("the dashboard shows the ON carrying %.2f Mbit/s, want ≈ its 4 Mbit/s", float64(measured)/1e6)
		}
	})
}

// A reservation over a router whose agent is down fails with an error naming it and
// leaves nothing anywhere: no record, no capacity charged, no class.
func TestReserveWithAgentDown(t *testing.T) {
	framework.Run(t, "testdata/ring.yaml", framework.Config{AgentLiveness: 3 * time.Second}, harnesses(), func(t *testing.T, c framework.Cluster) {
		ctx := context.Background()
		c.StopAgent("r3")
		time.Sleep(4 * time.Second)
		_, err := c.Reserve(ctx, framework.ReserveOptions{Name: "nope", Members: []string{"h1", "h2"}, Rate: 1_000_000})
		if err == nil || !strings.Contains(err.Error(), "r3") {
			t.Fatalf("reserve over a dead agent: %v", err)
		}
		if cl := htbClasses(t, c.Testbed()); len(cl) != 0 {
			t.Errorf("classes left: %v", cl)
		}
		if g, err := c.Get(ctx, "nope"); err == nil && g.State == "committed" {
			t.Errorf("after the failure: %+v", g)
		}
		// Nothing stays charged: the whole reservable core fits once r3 is back.
		if err := c.StartAgent(ctx, "r3"); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitAgents(ctx, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		reserve(t, c, framework.ReserveOptions{Name: "all", Members: []string{"h1", "h2"}, Rate: 16_000_000})
	})
}

// Agents ride out a manager outage shorter than the partition lease; after a longer
// one they remove partitions by themselves (failsafe); a restarted manager, whose etcd
// kept the reservation, puts them back. Metrics report it.
func TestManagerOutage(t *testing.T) {
	framework.Run(t, "testdata/ring.yaml", framework.FastLeases, harnesses(), func(t *testing.T, c framework.Cluster) {
		ctx := context.Background()
		tb := c.Testbed()
		reserve(t, c, framework.ReserveOptions{Name: "steady", Members: []string{"h1", "h2"}, Rate: 3_000_000, TTL: time.Hour})
		want := len(htbClasses(t, tb))
		if want == 0 {
			t.Fatal("no classes")
		}
		body := scrape(t, c)
		for _, m := range []string{`von_manager_reservations{state="committed"} 1`, `von_manager_twopc_seconds_count{outcome="commit"} 1`,
			`von_manager_agent_calls_total{method="prepare",result="ok"}`} {
			if !strings.Contains(body, m) {
				t.Errorf("metrics lack %q", m)
			}
		}

		// Short outage (1.5 s < 3 s lease): nothing changes.
		c.StopManager()
		time.Sleep(1500 * time.Millisecond)
		if got := len(htbClasses(t, tb)); got != want {
			t.Fatalf("after a short outage: %d interfaces with classes, want %d", got, want)
		}
		if err := c.StartManager(ctx); err != nil {
			t.Fatal(err)
		}
		if g := lookup(t, c, "steady"); g.State != "committed" {
			t.Fatalf("after manager restart: %s", g.State)
		}
		time.Sleep(2 * time.Second) // refreshes resume
		if got := len(htbClasses(t, tb)); got != want {
			t.Fatalf("after restart: %d interfaces with classes, want %d", got, want)
		}

		// Long outage: every agent removes the partition by itself once its lease passes.
		c.StopManager()
		framework.Eventually(t, 15*time.Second, 300*time.Millisecond, func() (bool, string) {
			cl := htbClasses(t, tb)
			return len(cl) == 0, "partitions still installed into an outage: " + fmt.Sprint(cl)
		})
		// The manager comes back; the reservation (still leased) is re-installed everywhere.
		if err := c.StartManager(ctx); err != nil {
			t.Fatal(err)
		}
		framework.Eventually(t, 20*time.Second, 300*time.Millisecond, func() (bool, string) {
			cl := htbClasses(t, tb)
			return len(cl) == want, "not re-installed after the manager returned: " + fmt.Sprint(cl)
		})
	})
}

// A name that does not exist is NotFound on both harnesses: the binary's error
// says so as the in-process one's sentinel does.
func TestUnknownReservation(t *testing.T) {
	framework.Run(t, "testdata/ring.yaml", framework.Config{}, harnesses(), func(t *testing.T, c framework.Cluster) {
		_, err := c.Get(context.Background(), "ghost")
		if err == nil || !(apierr.Is(err, reservation.ErrNotFound) || strings.Contains(err.Error(), "not found")) {
			t.Fatalf("get of an unknown reservation: %v", err)
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
