//go:build linux

package reservation

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/e2e/testbed"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// A leader that recorded COMMIT and died before telling the routers: the next leader
// re-drives the commit and the partitions appear on both routers.
func TestRedriveCommittedAfterRestart(t *testing.T) {
	topo, err := topology.Parse([]byte(routed))
	if err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t, topo, testbed.Options{})
	_, cli := newEtcd(t)
	ctx := context.Background()
	m := New(cli, Config{PartitionLease: 30 * time.Second})
	if _, err := m.store.PutTopology(ctx, routed); err != nil {
		t.Fatal(err)
	}
	p := startInproc(t, cli, tb, m)

	// What the dead leader (epoch 1) did: admit, Prepare on every router, decide COMMIT.
	ts, _ := m.store.Topology(ctx)
	agents, _ := m.store.Agents(ctx)
	pl, err := place(ts, placeRequest{Name: "orphan", Members: []string{"h1", "h2"}, Rate: 3_000_000, DSCP: 44, Port: 4750}, nil, agents)
	if err != nil {
		t.Fatal(err)
	}
	rec := &vonv1.Reservation{Name: "orphan", State: vonv1.ReservationState_RESERVATION_STATE_PREPARING, RateBps: 3_000_000,
		Members: pl.Members, Links: pl.Charged, Paths: pl.Pairs, Ttl: durationpb.New(time.Hour)}
	txn := txnRecord{ID: "deadbeef", Kind: "reserve", Name: "orphan", Participants: pl.Participants}
	_, rev, err := m.store.Ledger.Admit(ctx, Admission{Owner: "orphan", Rate: 3_000_000, Charges: pl.Charges,
		Limit: func(l string) (uint64, bool) { x, ok := ts.Topo.Link(l); return x.ReservableRate(), ok },
		Ops: func(id uint32) ([]clientv3.Op, error) {
			rec.OnId, txn.OnID = id, id
			put, err := m.store.putOn(rec)
			return []clientv3.Op{put, m.store.putTxn(txn)}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	for node, spec := range pl.Specs {
		conn, err := grpc.NewClient(agents[node].GetEndpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		spec.OnId, spec.LeaseTtl = rec.OnId, durationpb.New(30*time.Second)
		resp, err := vonv1.NewAgentServiceClient(conn).Prepare(ctx, &vonv1.AgentServicePrepareRequest{TxnId: txn.ID, LeaderEpoch: 1, Partition: spec, HoldTtl: durationpb.New(time.Minute)})
		conn.Close()
		if err != nil || resp.GetVote() != vonv1.Vote_VOTE_PREPARED {
			t.Fatalf("prepare on %s: %v %v", node, resp, err)
		}
	}
	txn.Decision = "commit"
	rec.State = vonv1.ReservationState_RESERVATION_STATE_COMMITTED
	rec.LeaseExpireTime = timestamppb.New(time.Now().Add(time.Hour))
	if _, err := m.store.Update(ctx, rec, rev, m.store.putTxn(txn)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"r1", "r2"} {
		if out, _ := tb.Exec(ctx, r, "tc", "class", "show", "dev", "eth1"); strings.Contains(out, "rate 3Mbit ceil 3Mbit") {
			t.Fatalf("%s has the partition before any commit:\n%s", r, out)
		}
	}

	// The new leader.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(rctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-m.Leading():
	case <-time.After(20 * time.Second):
		t.Fatal("no leader")
	}
	for _, r := range []string{"r1", "r2"} {
		out, err := tb.Exec(ctx, r, "tc", "class", "show", "dev", "eth1")
		if err != nil || !strings.Contains(out, "rate 3Mbit ceil 3Mbit") {
			t.Errorf("%s after re-drive: %v\n%s", r, err, out)
		}
	}
	if txns, _ := m.store.Txns(ctx); len(txns) != 0 {
		t.Errorf("transaction records left after re-drive: %+v", txns)
	}
	_ = p
}
