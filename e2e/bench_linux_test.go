//go:build linux

package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/e2e/testbed"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// BenchmarkReserveLatency10Routers: the real von-manager and ten real von-agents on a
// chain of ten router namespaces; each op is one Reserve RPC (admission, 2PC over ten
// routers, kernel partitions installed) followed by a Release. Reports p50/p99 of the
// Reserve latency as seen by a client.
func BenchmarkReserveLatency10Routers(b *testing.B) {
	tb := testbed.New(b, testbed.Load(b, "testdata/chain10.yaml"), testbed.Options{NoShaping: true})
	ctx := context.Background()
	c, err := cluster.Start(ctx, tb, cluster.Options{BinDir: binDir, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	conn, err := grpc.NewClient(c.ManagerAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cl := vonv1.NewReservationServiceClient(conn)
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("lat%d", i)
		t0 := time.Now()
		if _, err := cl.Reserve(ctx, &vonv1.ReserveRequest{Name: name, Members: []string{"h1", "h2"}, RateBps: 1_000_000}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		if _, err := cl.Release(ctx, &vonv1.ReleaseRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "reserve-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "reserve-p99-ms")
}
