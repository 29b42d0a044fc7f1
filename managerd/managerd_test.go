package managerd

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"go.uber.org/goleak"

	"github.com/vonproject/von/etcdembed"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/reservation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const direct = `nodes:
  - {name: h1, kind: host, address: 10.77.1.1}
  - {name: h2, kind: host, address: 10.77.1.2}
links:
  - {a: h1, b: h2, capacity: 100Mbit}
`

// With --etcd-endpoints the manager keeps its state in that cluster, not in a
// data dir of its own.
func TestDaemonExternalEtcd(t *testing.T) {
	e, err := etcdembed.Start(context.Background(), etcdembed.Options{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", Insecure: true, EtcdEndpoints: e.Endpoints, Ready: func(a string) { ready <- a }})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("daemon not ready")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := vonv1.NewReservationServiceClient(conn)
	if _, err := c.ApplyTopology(ctx, &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: direct}}); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, reservation.DefaultPrefix+"/topology")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != direct {
		t.Fatalf("topology not in the external etcd: %v %v", resp, err)
	}
	// Reserving needs leadership: wait for it through the API.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.Reserve(ctx, &vonv1.ReserveRequest{Name: "x", Members: []string{"h1", "h2"}, RateBps: 1000})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
