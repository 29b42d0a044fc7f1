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
// all ten routers (two-phase commit) and releases it. It reports reserve latency
// percentiles.
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
	run := func(b *testing.B, parallel bool) {
		var n atomic.Int64
		var lat []time.Duration
		var mu = make(chan struct{}, 1)
		op := func() {
			name := fmt.Sprintf("b%d", n.Add(1))
			t0 := time.Now()
			if _, err := m.Reserve(ctx, ReserveRequest{Name: name, Members: []string{"h1", "h2"}, Rate: 1_000_000}); err != nil {
				b.Error(err)
				return
			}
			d := time.Since(t0)
			mu <- struct{}{}
			lat = append(lat, d)
			<-mu
			if _, err := m.Release(ctx, name); err != nil {
				b.Error(err)
			}
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
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		if len(lat) > 0 {
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "reserve-p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "reserve-p99-ms")
		}
	}
	b.Run("serial", func(b *testing.B) { run(b, false) })
	b.Run("parallel", func(b *testing.B) { run(b, true) })
}
