//go:build linux

// Command demo shows VON end to end on this machine (make demo, as root): it builds a
// ring of six routers in network namespaces, starts von-manager and a von-agent per
// router, sends ON traffic through a core link that a best-effort flood saturates —
// first without a reservation, then with one made by vonctl — prints what arrived,
// then streams through the SDK with vonperf over the redundant ON while a link of path
// 0 is cut (nothing lost) and over a one-path ON (losses), releases the reservations
// and shows the routers clean. Everything is removed at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/topology"
)

func main() {
	_, file, _, _ := runtime.Caller(0)
	topoFile := flag.String("topology", filepath.Join(filepath.Dir(file), "..", "testdata", "ring.yaml"), "topology file")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *topoFile)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func run(ctx context.Context, topoFile string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces): run `sudo make demo`")
	}
	if _, err := testbed.Sweep(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "von-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	step("building von-manager, von-agent, vonctl and vonperf")
	bin := filepath.Join(dir, "bin")
	if err := cluster.Build(ctx, bin); err != nil {
		return err
	}
	topo, err := topology.Load(topoFile)
	if err != nil {
		return err
	}
	step("building the testbed from %s: %d nodes, %d links, each link a shaped wire", topoFile, len(topo.Nodes), len(topo.Links))
	tb, err := testbed.Start(ctx, topo, testbed.Options{})
	if err != nil {
		return err
	}
	defer func() {
		tb.Close()
		left, _ := os.ReadDir("/var/run/netns")
		n := 0
		for _, e := range left {
			if strings.HasPrefix(e.Name(), tb.Prefix()) {
				n++
			}
		}
		fmt.Printf("\n==> testbed removed (%d namespaces left)\n", n)
	}()
	step("starting von-manager (embedded etcd) and a von-agent on each router")
	c, err := cluster.Start(ctx, tb, cluster.Options{BinDir: bin, Dir: dir})
	if err != nil {
		return err
	}
	defer c.Close()
	show := func(args ...string) error {
		fmt.Printf("$ vonctl %s\n", strings.Join(args, " "))
		out, err := c.Vonctl(ctx, args...)
		fmt.Print(out)
		return err
	}
	if err := show("agents"); err != nil {
		return err
	}

	step("without a reservation: h1 sends 7.2 Mbit/s to h2 while stranger h3 floods the same 20 Mbit/s core at 60 Mbit/s")
	before, err := contend(ctx, tb, 0x00C0FFEE)
	if err != nil {
		return err
	}
	step("reserving an ON for h1 and h2: 8 Mbit/s on two link-disjoint paths")
	if err := show("reserve", "demo", "--members", "h1,h2", "--rate", "8Mbit", "--redundant", "--ttl", "10m"); err != nil {
		return err
	}
	g, err := c.Vonctl(ctx, "get", "demo", "-o", "json")
	if err != nil {
		return err
	}
	var onID uint32
	if i := strings.Index(g, `"on_id": `); i >= 0 {
		fmt.Sscanf(g[i+len(`"on_id": `):], "%d", &onID)
	}
	fmt.Println("$ tc class show dev eth1   # on router r2, the first core hop of path 0")
	out, _ := tb.Exec(ctx, "r2", "tc", "class", "show", "dev", "eth1")
	fmt.Print(out)

	step("with the reservation: the same two flows again")
	after, err := contend(ctx, tb, onID)
	if err != nil {
		return err
	}
	fmt.Printf("\n%-44s %14s %14s\n", "", "no reservation", "reserved ON")
	fmt.Printf("%-44s %13.2f%% %13.2f%%\n", "h1→h2 ON traffic lost", before.onLoss*100, after.onLoss*100)
	fmt.Printf("%-44s %9.2f Mbit %9.2f Mbit\n", "h1→h2 ON traffic received", before.onRate/1e6, after.onRate/1e6)
	fmt.Printf("%-44s %9.2f Mbit %9.2f Mbit\n", "h3→h2 best-effort flood received", before.beRate/1e6, after.beRate/1e6)

	step("the VON: vonperf joins h1 and h2 through the SDK and streams h1→h2 at 0.9·R on both paths\n    under the flood; path 0's core link r2-r3 is cut for 3 s mid-stream")
	twin, _, err := c.StreamWithCut(ctx, "demo", "r2-r3", 30*time.Second)
	if err != nil {
		return err
	}
	step("releasing the reservation")
	if err := show("release", "demo"); err != nil {
		return err
	}
	step("the same stream and cut on a non-redundant ON (one path)")
	if err := show("reserve", "single", "--members", "h1,h2", "--rate", "8Mbit", "--ttl", "10m"); err != nil {
		return err
	}
	single, _, err := c.StreamWithCut(ctx, "single", "r2-r3", 15*time.Second)
	if err != nil {
		return err
	}
	if single.Sent == 0 {
		fmt.Printf("the receiver saw nothing; vonperf logs:\nh1:\n%s\nh2:\n%s\n", c.PerfLog("h1"), c.PerfLog("h2"))
	}
	fmt.Printf("\n%-36s %16s %16s\n", "vonperf h1→h2, r2-r3 cut for 3 s", "redundant ON", "one-path ON")
	row := func(name string, a, b any) { fmt.Printf("%-36s %16v %16v\n", name, a, b) }
	row("messages sent", twin.Sent, single.Sent)
	row("delivered", twin.Delivered, single.Delivered)
	row("lost", twin.Lost, single.Lost)
	row("copies on path 0 / 1", fmt.Sprintf("%d / %d", twin.PerPath["0"], twin.PerPath["1"]), fmt.Sprintf("%d / %d", single.PerPath["0"], single.PerPath["1"]))
	row("duplicate copies eliminated", twin.Duplicates, single.Duplicates)
	row("latency p50 / p99 (ms)", fmt.Sprintf("%.2f / %.2f", twin.P50, twin.P99), fmt.Sprintf("%.2f / %.2f", single.P50, single.P99))
	if err := show("release", "single"); err != nil {
		return err
	}
	clean := true
	for _, n := range tb.Plan.Nodes {
		if !n.Forward {
			continue
		}
		classes := 0
		for _, l := range tb.Plan.Links {
			for _, e := range []testbed.EndPlan{l.A, l.B} {
				if e.Node == n.Name {
					qd, _ := tb.Exec(ctx, n.Name, "tc", "class", "show", "dev", e.Iface)
					classes += strings.Count(qd, "class htb") - strings.Count(qd, "7656:1 ") - strings.Count(qd, "7656:2 ")
				}
			}
		}
		rules, _ := tb.Exec(ctx, n.Name, "ip", "rule")
		fw := strings.Count(rules, "fwmark")
		fmt.Printf("router %s: %d ON classes, %d pinning rules\n", n.Name, classes, fw)
		clean = clean && classes == 0 && fw == 0
	}
	if !clean {
		return fmt.Errorf("routers not clean after release")
	}
	if after.onLoss > 0.01 {
		return fmt.Errorf("the reserved ON lost %.2f%%", after.onLoss*100)
	}
	if twin.Lost != 0 || twin.Sent == 0 {
		return fmt.Errorf("the redundant VON lost %d of %d messages across the cut", twin.Lost, twin.Sent)
	}
	fmt.Printf("\nthe redundant VON lost nothing across the cut (%d of %d delivered); the one-path ON lost %d.\n", twin.Delivered, twin.Sent, single.Lost)
	fmt.Println("all routers clean.")
	return nil
}

type result struct{ onLoss, onRate, beRate float64 }

// contend runs a 3 s ON flow (ON id onID, copy 0) against a best-effort flood.
func contend(ctx context.Context, tb *testbed.Testbed, onID uint32) (result, error) {
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	on, err := tb.Listen(tctx, "h2", netip.AddrPortFrom(netip.IPv4Unspecified(), cluster.ONPort), cluster.ONKey)
	if err != nil {
		return result{}, err
	}
	defer on.Close()
	be, err := tb.Listen(tctx, "h2", netip.AddrPortFrom(netip.IPv4Unspecified(), 9100), nil)
	if err != nil {
		return result{}, err
	}
	defer be.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = tb.Send(tctx, "h3", testbed.Flow{Dst: netip.AddrPortFrom(tb.Addr("h2"), 9100), Rate: 60_000_000, Duration: 3 * time.Second})
	}()
	sent, err := cluster.SendON(tctx, tb, cluster.ONFlow{From: "h1", To: "h2", ONID: onID, Rate: 7_200_000, Duration: 3 * time.Second})
	<-done
	if err != nil {
		return result{}, err
	}
	time.Sleep(300 * time.Millisecond)
	got := on.Key(cluster.Key(onID, 0))
	return result{onLoss: 1 - float64(got.Packets)/float64(sent[0].Packets), onRate: got.Rate(), beRate: be.Total().Rate()}, nil
}
