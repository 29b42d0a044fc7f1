package partition

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/wire"
)

const (
	linkC  = 20e6 // bottleneck capacity, bit/s
	onR    = 5e6  // the ON's reservation
	onID   = 0x00C0FFEE
	onTOS  = wire.DefaultDSCP << 2
	onPort = wire.DefaultPort
	runFor = 3 * time.Second
)

// onFill writes an ON header (id, path) and a marker byte after it.
func onFill(id uint32, path uint8, marker byte) func(uint64, []byte) {
	return func(seq uint64, b []byte) {
		h, _ := wire.Encode(wire.Header{ONID: id, PathIndex: path, Seq: seq})
		copy(b, h)
		if len(b) > wire.HeaderLen {
			b[wire.HeaderLen] = marker
		}
	}
}

// keyMarker keys a sink by (path index, marker) of ON packets; others → 0xFFFF.
func keyMarker(p []byte) uint64 {
	if len(p) <= wire.HeaderLen {
		return 0xFFFF
	}
	return uint64(p[wire.OffsetPathIndex])<<8 | uint64(p[wire.HeaderLen])
}

type flowResult struct {
	sent testbed.SendStats
	err  error
}

// sendAll runs flows concurrently from their nodes and waits for all.
func sendAll(ctx context.Context, tb *testbed.Testbed, nodes []string, flows []testbed.Flow) []flowResult {
	res := make([]flowResult, len(flows))
	var wg sync.WaitGroup
	for i := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i].sent, res[i].err = tb.Send(ctx, nodes[i], flows[i])
		}()
	}
	wg.Wait()
	return res
}

func bottleneck(t *testing.T) (*testbed.Testbed, *Router, string, string) {
	requireRoot(t)
	tb := testbed.New(t, testbed.Load(t, "testdata/bottleneck.yaml"), testbed.Options{})
	up, err := tb.End("r1-r2", "r1")
	if err != nil {
		t.Fatal(err)
	}
	access, err := tb.End("h1-r1", "r1")
	if err != nil {
		t.Fatal(err)
	}
	r := newRouter(t, tb.Namespace("r1"), Config{})
	if err := r.Apply(context.Background(), Desired{
		Interfaces: []Interface{{Name: up.Iface, Capacity: linkC}},
		ONs: []ON{{ID: onID, Rates: map[string]uint64{up.Iface: onR},
			Policing: []Policing{{Access: access.Iface, Members: []netip.Addr{tb.Addr("h1")}}}}},
	}); err != nil {
		t.Fatal(err)
	}
	return tb, r, up.Iface, access.Iface
}

func loss(sent testbed.SendStats, got testbed.Count) float64 {
	if sent.Packets == 0 {
		return 1
	}
	return 1 - float64(got.Packets)/float64(sent.Packets)
}

// TestIsolation: the ON at 0.9·R loses < 0.1% while best effort floods at
// 10·C; best effort gets about C − R.
func TestIsolation(t *testing.T) {
	tb, _, _, _ := bottleneck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dst := netip.AddrPortFrom(tb.Addr("h2"), onPort)
	sink, err := tb.Listen(ctx, "h2", netip.AddrPortFrom(netip.Addr{}, onPort), keyMarker)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	res := sendAll(ctx, tb, []string{"h1", "h1"}, []testbed.Flow{
		{Dst: dst, Rate: 0.9 * onR, Size: 1000, Duration: runFor, TOS: onTOS, Fill: onFill(onID, 0, 1)},
		{Dst: dst, Rate: 10 * linkC, Size: 1400, Duration: runFor, Fill: func(uint64, []byte) {}},
	})
	for _, r := range res {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	time.Sleep(300 * time.Millisecond) // drain queues
	on, be := sink.Key(1), sink.Key(0)
	l := loss(res[0].sent, on)
	t.Logf("ON: sent %d pkts at %.2f Mbit/s, received %d (loss %.4f%%) at %.2f Mbit/s",
		res[0].sent.Packets, res[0].sent.Rate()/1e6, on.Packets, 100*l, on.Rate()/1e6)
	t.Logf("best effort: sent at %.1f Mbit/s, received %.2f Mbit/s (C−R = %.1f)",
		res[1].sent.Rate()/1e6, be.Rate()/1e6, (linkC-onR)/1e6)
	if l >= 0.001 {
		t.Errorf("ON loss %.4f%% ≥ 0.1%%", 100*l)
	}
	if res[1].sent.Rate() < 3*linkC {
		t.Errorf("best-effort flood only reached %.1f Mbit/s; the test needs ≫ C", res[1].sent.Rate()/1e6)
	}
	if got := be.Rate(); got < 0.85*(linkC-onR) || got > 1.02*linkC {
		t.Errorf("best effort received %.2f Mbit/s, want about C−R = %.1f", got/1e6, (linkC-onR)/1e6)
	}
}

// TestCap: the ON sending at 1.5·R receives at most ~1.01·R.
func TestCap(t *testing.T) {
	tb, r, up, _ := bottleneck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink, err := tb.Listen(ctx, "h2", netip.AddrPortFrom(netip.Addr{}, onPort), keyMarker)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	sent, err := tb.Send(ctx, "h1", testbed.Flow{Dst: netip.AddrPortFrom(tb.Addr("h2"), onPort),
		Rate: 1.5 * onR, Size: 1000, Duration: runFor, TOS: onTOS, Fill: onFill(onID, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	got := sink.Key(1)
	t.Logf("ON sent %.2f Mbit/s, received %.3f Mbit/s (R = %.1f, ratio %.3f)", sent.Rate()/1e6, got.Rate()/1e6, onR/1e6, got.Rate()/onR)
	if got.Rate() > 1.01*onR {
		t.Errorf("ON received %.3f Mbit/s > 1.01·R", got.Rate()/1e6)
	}
	if got.Rate() < 0.9*onR {
		t.Errorf("ON received %.3f Mbit/s, far below R: classification failed?", got.Rate()/1e6)
	}
	obs, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := obs.Interfaces[up].ONs[onID]
	t.Logf("r1 %s ON class: %d pkts sent, %d dropped, %d overlimits, %d bytes queued", up, c.Packets, c.Drops, c.Overlimits, c.Backlog)
	if c.Packets == 0 || c.Overlimits == 0 || c.Drops+c.Backlog == 0 {
		t.Errorf("ON class counters %+v: want packets, overlimits and drops or backlog", c)
	}
}

// TestPolicing: a stranger copying a valid ON id gets no reserved service.
func TestPolicing(t *testing.T) {
	tb, r, up, _ := bottleneck(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stranger := netip.MustParseAddr("10.77.2.9")
	if _, err := tb.Exec(ctx, "h1", "ip", "addr", "add", stranger.String()+"/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	sink, err := tb.Listen(ctx, "h2", netip.AddrPortFrom(netip.Addr{}, onPort), keyMarker)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	dst := netip.AddrPortFrom(tb.Addr("h2"), onPort)
	// Unloaded: the stranger's packets are delivered as best effort (re-marked,
	// not black-holed) and never counted in the ON's class.
	if _, err := tb.Send(ctx, "h1", testbed.Flow{Src: stranger, Dst: dst, Rate: 1e6, Size: 1000, MaxPackets: 100,
		Duration: 5 * time.Second, TOS: onTOS, Fill: onFill(onID, 0, 3)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	obs0, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := sink.Key(3).Packets; got != 100 || obs0.Interfaces[up].ONs[onID].Packets != 0 || obs0.Policed.Packets != 100 {
		t.Fatalf("unloaded stranger: received %d/100, ON class %+v, policed %+v", got, obs0.Interfaces[up].ONs[onID], obs0.Policed)
	}
	res := sendAll(ctx, tb, []string{"h1", "h1", "h1"}, []testbed.Flow{
		{Src: tb.Addr("h1"), Dst: dst, Rate: 0.45 * onR, Size: 1000, Duration: runFor, TOS: onTOS, Fill: onFill(onID, 0, 1)},
		{Src: stranger, Dst: dst, Rate: 0.45 * onR, Size: 1000, Duration: runFor, TOS: onTOS, Fill: onFill(onID, 0, 2)},
		{Dst: dst, Rate: 10 * linkC, Size: 1400, Duration: runFor, Fill: func(uint64, []byte) {}},
	})
	for _, r := range res {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	lm, ls := loss(res[0].sent, sink.Key(1)), loss(res[1].sent, sink.Key(2))
	obs, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	onPkts := obs.Interfaces[up].ONs[onID].Packets
	t.Logf("member loss %.4f%%, stranger loss %.1f%%; ON class carried %d pkts (member sent %d); policed %d pkts",
		100*lm, 100*ls, onPkts, res[0].sent.Packets, obs.Policed.Packets)
	if lm >= 0.001 {
		t.Errorf("member loss %.4f%% ≥ 0.1%%", 100*lm)
	}
	if obs.Policed.Packets < 100+res[1].sent.Packets {
		t.Errorf("policed %d packets, stranger sent %d", obs.Policed.Packets, res[1].sent.Packets)
	}
	if onPkts > res[0].sent.Packets {
		t.Errorf("ON class carried %d packets, more than the member's %d: stranger rode the reservation", onPkts, res[0].sent.Packets)
	}
	if ls < 0.2 {
		t.Errorf("stranger lost only %.1f%% under a 10·C flood: it got reserved service", 100*ls)
	}
}

// rxPackets reads an interface's received-packet counter in a node.
func rxPackets(t *testing.T, tb *testbed.Testbed, node, dev string) uint64 {
	t.Helper()
	out, err := tb.Exec(context.Background(), node, "ip", "-s", "-j", "link", "show", "dev", dev)
	if err != nil {
		t.Fatal(err)
	}
	var v []struct {
		Stats64 struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 1 {
		t.Fatalf("parse ip -s -j link: %v: %s", err, out)
	}
	return v[0].Stats64.RX.Packets
}

// TestPinning: path 0 and path 1 copies follow their pinned routers, also
// when the base route would send them elsewhere.
func TestPinning(t *testing.T) {
	requireRoot(t)
	tb := testbed.New(t, testbed.Load(t, "testdata/pins.yaml"), testbed.Options{NoShaping: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	end := func(link, node string) testbed.EndPlan {
		e, err := tb.End(link, node)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	toR2, atR2 := end("r1-r2", "r1"), end("r1-r2", "r2")
	toR4, atR4 := end("r1-r4", "r1"), end("r1-r4", "r4")
	h2 := tb.Addr("h2")
	r := newRouter(t, tb.Namespace("r1"), Config{})
	if err := r.Apply(ctx, Desired{ONs: []ON{{ID: onID, Pins: []Pin{
		{Path: 0, Dst: h2, NextHop: atR2.Addr, Egress: toR2.Iface},
		{Path: 1, Dst: h2, NextHop: atR4.Addr, Egress: toR4.Iface},
	}}}}); err != nil {
		t.Fatal(err)
	}
	sink, err := tb.Listen(ctx, "h2", netip.AddrPortFrom(netip.Addr{}, onPort), keyMarker)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	const n = 500
	dst := netip.AddrPortFrom(h2, onPort)
	send := func(path uint8, marker byte) {
		t.Helper()
		if _, err := tb.Send(ctx, "h1", testbed.Flow{Dst: dst, Rate: 2e6, Size: 200, MaxPackets: n, Duration: 10 * time.Second,
			TOS: onTOS, Fill: onFill(onID, path, marker)}); err != nil {
			t.Fatal(err)
		}
	}
	for phase, base := range []testbed.EndPlan{atR2, atR4} {
		// Phase 0: base route via r2; phase 1: base route moved to r4.
		if _, err := tb.Exec(ctx, "r1", "ip", "route", "replace", h2.String()+"/32", "via", base.Addr.String()); err != nil {
			t.Fatal(err)
		}
		for path := uint8(0); path < 2; path++ {
			r2, r4 := rxPackets(t, tb, "r2", atR2.Iface), rxPackets(t, tb, "r4", atR4.Iface)
			marker := byte(10*phase + int(path) + 1)
			send(path, marker)
			time.Sleep(200 * time.Millisecond)
			d2, d4 := rxPackets(t, tb, "r2", atR2.Iface)-r2, rxPackets(t, tb, "r4", atR4.Iface)-r4
			got := sink.Key(uint64(path)<<8 | uint64(marker)).Packets
			t.Logf("base via %s, path %d: r2 saw %d, r4 saw %d, h2 received %d of %d", base.Node, path, d2, d4, got, n)
			via, other := d2, d4
			if path == 1 {
				via, other = d4, d2
			}
			if via < n || other > n/10 || got < n*99/100 {
				t.Errorf("base via %s, path %d: took the wrong router (r2 %d, r4 %d, received %d)", base.Node, path, d2, d4, got)
			}
		}
	}
	// Without the pins, traffic follows the base route again.
	if err := r.Apply(ctx, Desired{}); err != nil {
		t.Fatal(err)
	}
	r4 := rxPackets(t, tb, "r4", atR4.Iface)
	send(0, 99)
	if d4 := rxPackets(t, tb, "r4", atR4.Iface) - r4; d4 < n {
		t.Errorf("after removing pins, path 0 did not follow the base route via r4 (r4 saw %d)", d4)
	}
}
