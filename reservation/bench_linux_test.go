//go:build linux

package reservation

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/topology"
)

// BenchmarkReserveRelease is the manager with real agents (real kernel partitions on
// a chain of ten router namespaces) in this process: each op reserves an ON across
// all ten routers (two-phase commit) and releases it. It reports reserve and
// release latency percentiles. One ON stays reserved across the routers
// throughout, so an op is not a router's first ON (which creates its nftables
// table) nor its last (which removes it).
func BenchmarkReserveRelease(b *testing.B) {
	tb := testbed.New(b, testbed.Load(b, "../e2e/testdata/chain10.yaml"), testbed.Options{NoShaping: true})
	cli := newBenchEtcd(b)
	ctx := context.Background()
	m := New(cli, Config{})
	y, err := topology.Marshal(tb.Plan.Topology)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := m.store.PutTopology(ctx, string(y)); err != nil {
		b.Fatal(err)
	}
	startInproc(b, cli, tb, m)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(rctx) }()
	b.Cleanup(func() { cancel(); <-done; m.Close() })
	<-m.Leading()
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "standing", Members: []string{"h1", "h2"}, Rate: 1_000_000}); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, parallel int) {
		var n atomic.Int64
		c0 := m.store.Ledger.Conflicts()
		var lat, rel []time.Duration
		var mu = make(chan struct{}, 1)
		op := func() {
			name := fmt.Sprintf("b%d", n.Add(1))
			t0 := time.Now()
			if _, err := m.Reserve(ctx, ReserveRequest{Name: name, Members: []string{"h1", "h2"}, Rate: 1_000_000}); err != nil {
				b.Error(err)
				return
			}
			d := time.Since(t0)
			t1 := time.Now()
			if _, err := m.Release(ctx, name); err != nil {
				b.Error(err)
			}
			mu <- struct{}{}
			lat, rel = append(lat, d), append(rel, time.Since(t1))
			<-mu
		}
		b.ResetTimer()
		if parallel > 0 {
			b.SetParallelism(parallel)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					op()
				}
			})
		} else {
			for b.Loop() {
				op()
			}
		}
		b.StopTimer()
		// Every ON crosses the same links: each reservation and release is a
		// guarded transaction on the same keys, so concurrent ones conflict.
		b.ReportMetric(float64(m.store.Ledger.Conflicts()-c0)/float64(max(n.Load(), 1)), "conflicts/op")
		for _, l := range []struct {
			what string
			d    []time.Duration
		}{{"reserve", lat}, {"release", rel}} {
			sort.Slice(l.d, func(i, j int) bool { return l.d[i] < l.d[j] })
			if len(l.d) > 0 {
				b.ReportMetric(float64(l.d[len(l.d)/2].Microseconds())/1000, l.what+"-p50-ms")
				b.ReportMetric(float64(l.d[len(l.d)*99/100].Microseconds())/1000, l.what+"-p99-ms")
			}
		}
	}
	b.Run("serial", func(b *testing.B) { run(b, 0) })
	b.Run("parallel", func(b *testing.B) { run(b, 4) })
	// 16 clients (8 × GOMAXPROCS 2) over one chain: the hot-link case.
	b.Run("clients=16", func(b *testing.B) { run(b, 16/runtime.GOMAXPROCS(0)) })
}
