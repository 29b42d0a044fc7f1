package partition

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/testbed"
)

// manyONs returns n ONs on iface (100 kbit/s each, ids 1000..), each with a
// path pin and a policing member when pin/police are set.
func manyONs(n int, iface string, pin *Pin, police *Policing) []ON {
	ons := make([]ON, n)
	for i := range ons {
		ons[i] = ON{ID: uint32(1000 + i), Rates: map[string]uint64{iface: 100e3}}
		if pin != nil {
			ons[i].Pins = []Pin{*pin}
		}
		if police != nil {
			ons[i].Policing = []Policing{*police}
		}
	}
	return ons
}

// BenchmarkInstall measures Apply of n ONs (class + classification entry)
// on one interface that has none, and a no-op re-apply of the same state.
func BenchmarkInstall(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("ONs=%d", n), func(b *testing.B) {
			ns, _ := pairNS(b)
			r, err := New(context.Background(), Config{Netns: ns})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			d := Desired{Interfaces: []Interface{{Name: "a0", Capacity: 10e9}}, ONs: manyONs(n, "a0", nil, nil)}
			var reapply time.Duration
			for b.Loop() {
				b.StopTimer()
				if err := r.Apply(context.Background(), Desired{}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := r.Apply(context.Background(), d); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				t0 := time.Now()
				if err := r.Apply(context.Background(), d); err != nil {
					b.Fatal(err)
				}
				reapply += time.Since(t0)
				b.StartTimer()
			}
			b.ReportMetric(reapply.Seconds()/float64(b.N), "s-reapply/op")
		})
	}
}

// BenchmarkForwarding measures how many ON packets per second r1 forwards
// (policed, pinned and classified) with 1 and with 10,000 ONs installed.
// h1 sends 200,000 64-byte ON packets as fast as it can (bounded by count
// and 20 s); the rate is what r1's ON class transmitted over the send time.
// On a 2-core VM sender, router and receiver share the CPUs, so the figure
// is a comparison between the two cases, not a line rate.
func BenchmarkForwarding(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("ONs=%d", n), func(b *testing.B) {
			tb := testbed.New(b, testbed.Load(b, "testdata/fwd.yaml"), testbed.Options{NoShaping: true})
			ctx := context.Background()
			in, _ := tb.End("h1-r1", "r1")
			out, _ := tb.End("r1-h2", "r1")
			far, _ := tb.End("r1-h2", "h2")
			h2 := tb.Addr("h2")
			r, err := New(ctx, Config{Netns: tb.Namespace("r1")})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			ons := manyONs(n, out.Iface, &Pin{Dst: h2, NextHop: far.Addr, Egress: out.Iface},
				&Policing{Access: in.Iface, Members: []netip.Addr{tb.Addr("h1")}})
			probe := ons[n-1].ID // the most recently allocated ON
			ons[n-1].Rates[out.Iface] = 5e9
			if err := r.Apply(ctx, Desired{Interfaces: []Interface{{Name: out.Iface, Capacity: 10e9}}, ONs: ons}); err != nil {
				b.Fatal(err)
			}
			var pkts uint64
			var elapsed time.Duration
			for b.Loop() {
				obs0, _ := r.Observe(ctx)
				t0 := time.Now()
				_, err := tb.Send(ctx, "h1", testbed.Flow{Dst: netip.AddrPortFrom(h2, onPort), Rate: 4e9, Size: 64,
					MaxPackets: 200000, Duration: 20 * time.Second, TOS: onTOS, Fill: onFill(probe, 0, 1)})
				if err != nil {
					b.Fatal(err)
				}
				el := time.Since(t0)
				obs1, _ := r.Observe(ctx)
				pkts += obs1.Interfaces[out.Iface].ONs[probe].Packets - obs0.Interfaces[out.Iface].ONs[probe].Packets
				elapsed += el
			}
			b.ReportMetric(float64(pkts)/elapsed.Seconds(), "fwd-pkts/s")
		})
	}
}

// BenchmarkUpdateOne measures what an agent's Commit costs the router: one ON
// (a class on each of two interfaces, a classification entry, a pin) added by
// Update to a router already holding n ONs, then removed again by Update.
// Both are reported: s-add/op and s-remove/op.
func BenchmarkUpdateOne(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("ONs=%d", n), func(b *testing.B) {
			ns, _ := pairNS(b)
			r, err := New(context.Background(), Config{Netns: ns})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			ctx := context.Background()
			base := Desired{Interfaces: []Interface{{Name: "a0", Capacity: 10e9}, {Name: "b0", Capacity: 10e9}},
				ONs: manyONs(n, "a0", &Pin{Dst: netip.MustParseAddr("10.77.5.1"), NextHop: netip.MustParseAddr(addr(2)), Egress: "a0"}, nil)}
			if err := r.Apply(ctx, base); err != nil {
				b.Fatal(err)
			}
			one := ON{ID: 7, Rates: map[string]uint64{"a0": 1e6, "b0": 1e6},
				Pins: []Pin{{Dst: netip.MustParseAddr("10.77.5.2"), NextHop: netip.MustParseAddr(addr(6)), Egress: "b0"}}}
			added := base
			added.ONs = append(append([]ON{}, base.ONs...), one)
			var add, remove time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := r.Update(ctx, added); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := r.Update(ctx, base); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				// The removal's nftables deletions go out a moment later
				// (deferred, see nftConverge); a Commit arriving meanwhile
				// waits for them: VON_BENCH_BACK_TO_BACK=1 measures that.
				if os.Getenv("VON_BENCH_BACK_TO_BACK") == "" {
					r.mu.Lock()
					r.flushDeferred()
					r.mu.Unlock()
				}
				add, remove = add+t1.Sub(t0), remove+t2.Sub(t1)
			}
			b.ReportMetric(add.Seconds()/float64(b.N), "s-add/op")
			b.ReportMetric(remove.Seconds()/float64(b.N), "s-remove/op")
		})
	}
}
