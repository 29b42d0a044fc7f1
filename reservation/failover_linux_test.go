//go:build linux

package reservation

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/e2e/testbed"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// blackhole accepts connections and never answers: a hung agent.
func blackhole(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return lis.Addr().String()
}

// newClient is a second client of the etcd behind cli; closing it is how a test
// crashes the manager that uses it.
func newClient(t *testing.T, cli *clientv3.Client) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: cli.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A leader crashes (its etcd session is not revoked) while a round it started is
// stuck on a hung router; the standby takes over. No partition lease may run out
// on the healthy routers: the new leader refreshes before anything else, and a hung
// router delays nobody's refresh.
func TestFailoverKeepsPartitions(t *testing.T) {
	tb, cli := routedBed(t)
	ctx := context.Background()
	cfg := Config{PartitionLease: 6 * time.Second, SessionTTL: 2 * time.Second, CallTimeout: 2 * time.Second,
		AgentLiveness: time.Minute, ID: "a"}
	cliA := newClient(t, cli)
	a := New(cliA, cfg)
	installed := leadSteady(t, tb, cliA, a)
	// A round the leader started on a router whose agent hangs.
	if err := a.store.PutAgent(ctx, &vonv1.Agent{Node: "r9", Endpoint: blackhole(t), LastSeenTime: timestamppb.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, a.store.txnKey("stuck"), `{"id":"stuck","kind":"reserve","name":"stuck","on_id":77,"participants":["r9"]}`); err != nil {
		t.Fatal(err)
	}
	cfg.ID = "b"
	b := New(cli, cfg)
	bctx, bcancel := context.WithCancel(ctx)
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(bctx) }()
	defer func() { bcancel(); <-bdone; b.Close() }()
	time.Sleep(2500 * time.Millisecond) // a's refresh loop ran; b waits in the election

	crash := time.Now()
	cliA.Close() // the leader is gone; its session lives on until its TTL
	deadline := crash.Add(2 * cfg.PartitionLease)
	led := time.Duration(0)
	for time.Now().Before(deadline) {
		if led == 0 && b.Epoch() != 0 {
			led = time.Since(crash)
		}
		if !installed() {
			t.Fatalf("a partition ran out %v after the leader crashed (standby leading after %v)", time.Since(crash).Round(time.Millisecond), led)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if led == 0 || led > 2*cfg.SessionTTL {
		t.Fatalf("standby led after %v, want within about the session TTL %v", led, cfg.SessionTTL)
	}
	t.Logf("standby led %v after the crash; partitions stayed for %v", led.Round(time.Millisecond), 2*cfg.PartitionLease)
}

// A router whose agent hangs for longer than a partition lease must not hold
// up the refreshes of the others: each router's refresh runs on its own, and
// a new round skips only the routers whose last refresh is still running.
func TestHungRouterDelaysNoRefresh(t *testing.T) {
	tb, cli := routedBed(t)
	ctx := context.Background()
	cfg := Config{PartitionLease: 3 * time.Second, CallTimeout: 8 * time.Second, AgentLiveness: time.Minute}
	m := New(cli, cfg)
	installed := leadSteady(t, tb, cli, m)
	// r9 holds an ON and its agent accepts connections but never answers.
	if err := m.store.PutAgent(ctx, &vonv1.Agent{Node: "r9", Endpoint: hungAgent(t), LastSeenTime: timestamppb.Now()}); err != nil {
		t.Fatal(err)
	}
	steady, _, err := m.store.Get(ctx, "steady")
	if err != nil {
		t.Fatal(err)
	}
	hung := proto.Clone(steady).(*vonv1.Reservation)
	hung.Name, hung.OnId = "hung", steady.GetOnId()+1
	for _, pp := range hung.GetPaths() {
		for _, p := range pp.GetPaths() {
			p.Nodes = []string{"h1", "r9", "h2"}
		}
	}
	b, err := proto.Marshal(hung)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, m.store.onKey("hung"), string(b)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for time.Since(start) < 3*cfg.PartitionLease {
		if !installed() {
			t.Fatalf("a healthy router's partition ran out %v after a hung router got an ON", time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// leadSteady makes m lead over in-process agents on tb and reserve "steady"
// (3 Mbit/s, h1 to h2 over r1 and r2); installed says whether both routers
// still hold its class.
func leadSteady(t *testing.T, tb *testbed.Testbed, cli *clientv3.Client, m *Manager) (installed func() bool) {
	t.Helper()
	ctx := context.Background()
	if _, err := m.store.PutTopology(ctx, routed); err != nil {
		t.Fatal(err)
	}
	startInproc(t, cli, tb, m)
	runLeader(t, m)
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "steady", Members: []string{"h1", "h2"}, Rate: 3_000_000, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	installed = func() bool {
		for _, r := range []string{"r1", "r2"} {
			out, err := tb.Exec(ctx, r, "tc", "class", "show", "dev", "eth1")
			if err != nil || !strings.Contains(out, "rate 3Mbit ceil 3Mbit") {
				return false
			}
		}
		return true
	}
	if !installed() {
		t.Fatal("not installed")
	}
	return installed
}

// hungAgent is an agent that accepts every call and answers none until the
// caller gives up.
func hungAgent(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	vonv1.RegisterAgentServiceServer(gs, hung{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

type hung struct {
	vonv1.UnimplementedAgentServiceServer
}

func (hung) Refresh(ctx context.Context, _ *vonv1.AgentServiceRefreshRequest) (*vonv1.AgentServiceRefreshResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (hung) Sync(ctx context.Context, _ *vonv1.AgentServiceSyncRequest) (*vonv1.AgentServiceSyncResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
