//go:build linux

package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/e2e/testbed"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// BenchmarkReserveLatency10Routers: the real von-manager and ten real von-agents on a
// ring of ten router namespaces; each op is one Reserve RPC of a redundant ON
// between h1 and h2 (admission, disjoint pair, 2PC over all ten routers, kernel
// partitions installed) followed by a Release. Reports p50/p99 of the Reserve
// and the Release latency as seen by a client. One ON stays reserved
// throughout, so an op is neither a router's first ON nor its last.
func BenchmarkReserveLatency10Routers(b *testing.B) {
	tb := testbed.New(b, testbed.Load(b, "testdata/ring10.yaml"), testbed.Options{NoShaping: true})
	ctx := context.Background()
	c, err := cluster.Start(ctx, tb, cluster.Options{BinDir: binDir, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	conn, err := c.Dial(cluster.Admin)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cl := vonv1.NewReservationServiceClient(conn)
	req := func(name string) *vonv1.ReserveRequest {
		return &vonv1.ReserveRequest{Name: name, Members: []string{"h1", "h2"}, RateBps: 1_000_000, Redundant: true}
	}
	if r, err := cl.Reserve(ctx, req("standing")); err != nil || len(r.GetReservation().GetLinks()) == 0 {
		b.Fatal(r, err)
	}
	var lat, rel []time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("lat%d", i)
		t0 := time.Now()
		if _, err := cl.Reserve(ctx, req(name)); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := cl.Release(ctx, &vonv1.ReleaseRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
		lat, rel = append(lat, t1.Sub(t0)), append(rel, time.Since(t1))
	}
	for _, l := range []struct {
		what string
		d    []time.Duration
	}{{"reserve", lat}, {"release", rel}} {
		sort.Slice(l.d, func(i, j int) bool { return l.d[i] < l.d[j] })
		b.ReportMetric(float64(l.d[len(l.d)/2].Microseconds())/1000, l.what+"-p50-ms")
		b.ReportMetric(float64(l.d[len(l.d)*99/100].Microseconds())/1000, l.what+"-p99-ms")
	}
}
