package sdk

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vonproject/von/managerd"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Three multi-homed hosts, two parallel links between each pair: a redundant ON among
// them needs no router, so the whole SDK runs on loopback against a real manager
// (embedded etcd) and real memberlist.
const triangle = `nodes:
  - {name: h1, kind: host, address: 10.77.9.1}
  - {name: h2, kind: host, address: 10.77.9.2}
  - {name: h3, kind: host, address: 10.77.9.3}
links:
  - {a: h1, b: h2, capacity: 100Mbit}
  - {a: h1, b: h2, capacity: 100Mbit}
  - {a: h1, b: h3, capacity: 100Mbit}
  - {a: h1, b: h3, capacity: 100Mbit}
  - {a: h2, b: h3, capacity: 100Mbit}
  - {a: h2, b: h3, capacity: 100Mbit}
`

// startManager runs a von-manager (embedded etcd) in this process and returns its
// address and a client.
func startManager(t testing.TB) (string, vonv1.ReservationServiceClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- managerd.Run(ctx, managerd.Config{Listen: "127.0.0.1:0", Insecure: true, DataDir: t.TempDir(),
			Ready: func(a string) { ready <- a }})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("manager not ready")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	c := vonv1.NewReservationServiceClient(conn)
	// The manager leads within moments of serving.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.ApplyTopology(context.Background(), &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: triangle}})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("apply topology: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return addr, c
}

func reserve(t testing.TB, c vonv1.ReservationServiceClient, name string, redundant bool, members ...string) *vonv1.Reservation {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Reserve(context.Background(), &vonv1.ReserveRequest{Name: name, Members: members, RateBps: 10_000_000,
			Redundant: redundant, Ttl: durationpb.New(10 * time.Minute)})
		if err == nil {
			return resp.GetReservation()
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // the manager is not leading yet
	}
}

func joinAll(t testing.TB, addr, on string, members ...string) map[string]*VON {
	return joinWith(t, Config{Manager: addr, Insecure: true, ON: on, ListenAddr: "127.0.0.1:0"}, members...)
}

// joinWith joins every member with cfg (Member set per member) and waits until each
// sees them all.
func joinWith(t testing.TB, cfg Config, members ...string) map[string]*VON {
	t.Helper()
	out := map[string]*VON{}
	for _, m := range members {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c := cfg
		c.Member = m
		v, err := Join(ctx, c)
		cancel()
		if err != nil {
			t.Fatalf("join %s: %v", m, err)
		}
		out[m] = v
		t.Cleanup(func() { _ = v.Close() })
	}
	waitFor(t, 10*time.Second, "every member sees all", func() bool {
		for _, v := range out {
			if len(v.Members()) != len(members) {
				return false
			}
		}
		return true
	})
	return out
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
