package sdk

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vonproject/von/managerd"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// runManager runs a von-manager on addr with its data in dir until the returned stop
// is called.
func runManager(t *testing.T, addr, dir string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- managerd.Run(ctx, managerd.Config{Listen: addr, Insecure: true, DataDir: dir, Ready: func(a string) { ready <- a }})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("manager not ready")
	}
	return func() { cancel(); <-done }
}

// The SDK keeps the lease alive while joined, and rides out a manager restart: the
// KeepAlive stream is re-opened and the reservation outlives several TTLs.
func TestKeepAliveAcrossManagerRestart(t *testing.T) {
	// The outage (stop, 1 s, start with an embedded etcd) must be shorter than the TTL,
	// or the restarted manager rightly expires the lease.
	const ttl = 8 * time.Second
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	dir := t.TempDir()
	stop := runManager(t, addr, dir)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := vonv1.NewReservationServiceClient(conn)
	waitFor(t, 20*time.Second, "topology applied", func() bool {
		_, err := c.ApplyTopology(context.Background(), &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: triangle}})
		return err == nil
	})
	var r *vonv1.Reservation
	waitFor(t, 20*time.Second, "reserved", func() bool {
		resp, err := c.Reserve(context.Background(), &vonv1.ReserveRequest{Name: "kept", Members: []string{"h1", "h2"}, RateBps: 1_000_000,
			Ttl: durationpb.New(ttl)})
		if err == nil {
			r = resp.GetReservation()
		}
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var vs []*VON
	for _, m := range []string{"h1", "h2"} {
		v, err := Join(ctx, Config{Manager: addr, Insecure: true, ON: "kept", Member: m, ListenAddr: "127.0.0.1:0", KeepAlive: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		vs = append(vs, v)
	}
	time.Sleep(ttl + time.Second) // longer than the TTL: only the SDK's renewals keep it
	stop()
	time.Sleep(time.Second)
	stop = runManager(t, addr, dir)
	defer stop()
	time.Sleep(ttl + time.Second) // more than a TTL after the restart
	resp, err := c.Get(ctx, &vonv1.GetRequest{Name: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	g := resp.GetReservation()
	if g.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED || !g.GetLeaseExpireTime().AsTime().After(time.Now()) {
		t.Fatalf("after the restart: %s, lease until %s (created %s)", g.GetState(), g.GetLeaseExpireTime().AsTime(), r.GetCreateTime().AsTime())
	}
	for _, v := range vs {
		if err := v.LeaseErr(); err != nil {
			t.Errorf("lease error: %v", err)
		}
	}
	// The members still talk.
	if err := vs[0].Send(ctx, "h2", []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if m, err := vs[1].Recv(ctx); err != nil || string(m.Data) != "still here" {
		t.Fatalf("%+v %v", m, err)
	}
}
