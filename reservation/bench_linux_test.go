//go:build linux

package reservation

import (
	"context"
	"fmt"
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
	run := func(b *testing.B, parallel bool) {
		var n atomic.Int64
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
		if parallel {
			b.SetParallelism(4)
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
	b.Run("serial", func(b *testing.B) { run(b, false) })
	b.Run("parallel", func(b *testing.B) { run(b, true) })
}
