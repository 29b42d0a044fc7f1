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

	"github.com/vonproject/von/agent"
	"github.com/vonproject/von/e2e/testbed"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// admitRecord places an h1–h2 ON of 3 Mbit/s named name and admits it straight
// into the store with rec's state (no round, no agent told): rec gets the
// placement's members, links and paths, and the allocated id; extra adds
// operations to the admission (given rec with its id). It returns the
// placement and the admission's revision.
func admitRecord(t *testing.T, m *Manager, name string, rec *vonv1.Reservation, extra func(*vonv1.Reservation) []clientv3.Op) (*placement, int64) {
	t.Helper()
	ctx := context.Background()
	ts, _ := m.store.Topology(ctx)
	agents, _ := m.store.Agents(ctx)
	pl, err := place(ts, placeRequest{Name: name, Members: []string{"h1", "h2"}, Rate: 3_000_000, DSCP: 44, Port: 4750}, nil, agents)
	if err != nil {
		t.Fatal(err)
	}
	rec.Name, rec.RateBps, rec.Members, rec.Links, rec.Paths, rec.Ttl = name, 3_000_000, pl.Members, pl.Charged, pl.Pairs, durationpb.New(time.Hour)
	_, rev, err := m.store.Ledger.Admit(ctx, Admission{Owner: name, Rate: 3_000_000, Charges: pl.Charges,
		Limit: func(l string) (uint64, bool) { x, ok := ts.Topo.Link(l); return x.ReservableRate(), ok },
		Ops: func(id uint32) ([]clientv3.Op, error) {
			rec.OnId = id
			put, err := m.store.putOn(rec)
			if extra != nil {
				return append([]clientv3.Op{put}, extra(rec)...), err
			}
			return []clientv3.Op{put}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	return pl, rev
}

// deadLeaderCommitted is what a leader (epoch 1) did before dying: admit an ON
// "orphan" between h1 and h2 over routed, Prepare it on every router, record COMMIT.
// It returns the partition specs per router.
func deadLeaderCommitted(t *testing.T, m *Manager) (txnRecord, map[string]*vonv1.PartitionSpec) {
	t.Helper()
	ctx := context.Background()
	agents, _ := m.store.Agents(ctx)
	var txn txnRecord
	rec := &vonv1.Reservation{State: vonv1.ReservationState_RESERVATION_STATE_PREPARING}
	pl, rev := admitRecord(t, m, "orphan", rec, func(r *vonv1.Reservation) []clientv3.Op {
		txn = txnRecord{ID: "deadbeef", Kind: "reserve", Name: "orphan", OnID: r.OnId, Participants: routersOf(r)}
		return []clientv3.Op{m.store.putTxn(txn)}
	})
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
	return txn, pl.Specs
}

// runLeader runs m until the test ends and waits until it leads.
func runLeader(t *testing.T, m *Manager) {
	t.Helper()
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-m.Leading():
	case <-time.After(20 * time.Second):
		t.Fatal("no leader")
	}
}

func routedBed(t *testing.T) (*testbed.Testbed, *clientv3.Client) {
	t.Helper()
	topo, err := topology.Parse([]byte(routed))
	if err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t, topo, testbed.Options{})
	_, cli := newEtcd(t)
	return tb, cli
}

// A leader that recorded COMMIT and died before telling the routers: the next leader
// re-drives the commit and the partitions appear on both routers.
func TestRedriveCommittedAfterRestart(t *testing.T) {
	tb, cli := routedBed(t)
	ctx := context.Background()
	m := New(cli, Config{PartitionLease: 30 * time.Second})
	if _, err := m.store.PutTopology(ctx, routed); err != nil {
		t.Fatal(err)
	}
	startInproc(t, cli, tb, m)
	deadLeaderCommitted(t, m)
	for _, r := range []string{"r1", "r2"} {
		if out, _ := tb.Exec(ctx, r, "tc", "class", "show", "dev", "eth1"); strings.Contains(out, "rate 3Mbit ceil 3Mbit") {
			t.Fatalf("%s has the partition before any commit:\n%s", r, out)
		}
	}
	runLeader(t, m) // the new leader
	for _, r := range []string{"r1", "r2"} {
		out, err := tb.Exec(ctx, r, "tc", "class", "show", "dev", "eth1")
		if err != nil || !strings.Contains(out, "rate 3Mbit ceil 3Mbit") {
			t.Errorf("%s after re-drive: %v\n%s", r, err, out)
		}
	}
	if txns, _ := m.store.Txns(ctx); len(txns) != 0 {
		t.Errorf("transaction records left after re-drive: %+v", txns)
	}
}

// A commit a router cannot carry out (here a foreign root qdisc appeared on the
// ON's interface after Prepare) is not reported as done: the reservation says where
// it is not enforced and why, the round stays open and is re-driven, and once the
// obstacle is gone the ON is installed and the record cleared.
func TestCommitNotEnforcedIsShownAndRedriven(t *testing.T) {
	tb, cli := routedBed(t)
	ctx := context.Background()
	m := New(cli, Config{PartitionLease: 30 * time.Second, ReconcileInterval: 300 * time.Millisecond})
	if _, err := m.store.PutTopology(ctx, routed); err != nil {
		t.Fatal(err)
	}
	startInproc(t, cli, tb, m)
	deadLeaderCommitted(t, m)
	if _, err := tb.Exec(ctx, "r1", "tc", "qdisc", "add", "dev", "eth1", "root", "handle", "1:", "tbf", "rate", "10mbit", "burst", "32k", "latency", "50ms"); err != nil {
		t.Fatal(err)
	}
	runLeader(t, m)
	rec, _, err := m.store.Get(ctx, "orphan")
	if err != nil {
		t.Fatal(err)
	}
	ne := rec.GetNotEnforced()
	if len(ne) != 1 || ne[0].GetRouter() != "r1" || !strings.Contains(ne[0].GetReason(), "foreign root qdisc") {
		t.Fatalf("not_enforced = %v, want r1 with the foreign qdisc", ne)
	}
	if txns, _ := m.store.Txns(ctx); len(txns) != 1 {
		t.Fatalf("the round was closed although r1 does not enforce it: %+v", txns)
	}
	if _, err := tb.Exec(ctx, "r1", "tc", "qdisc", "del", "dev", "eth1", "root"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rec, _, _ := m.store.Get(ctx, "orphan")
		txns, _ := m.store.Txns(ctx)
		out, _ := tb.Exec(ctx, "r1", "tc", "class", "show", "dev", "eth1")
		if len(rec.GetNotEnforced()) == 0 && len(txns) == 0 && strings.Contains(out, "rate 3Mbit ceil 3Mbit") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not repaired: not_enforced %v, txns %v, r1 eth1:\n%s", rec.GetNotEnforced(), txns, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A router whose desired state changed behind its agent's back (here a
// committed record the agent was never told about) gets its full state at the
// agent's next heartbeat, which says what state it applied — not at the next
// reconcile or refresh, both far off here.
func TestHeartbeatPushesMissedChange(t *testing.T) {
	tb, cli := routedBed(t)
	ctx := context.Background()
	m := New(cli, Config{PartitionLease: 10 * time.Minute, ReconcileInterval: time.Hour})
	if _, err := m.store.PutTopology(ctx, routed); err != nil {
		t.Fatal(err)
	}
	p := startInproc(t, cli, tb, m)
	runLeader(t, m)
	// Each agent's first successful registration converges; from the next
	// one on it only heartbeats.
	for node, a := range p.agents {
		for wait := time.Now().Add(10 * time.Second); registrations(t, a) < 2; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(wait) {
				t.Fatalf("%s: no heartbeat after its first registration", node)
			}
		}
	}
	// A committed record no agent was told about (no Prepare, no round to
	// recover): only a heartbeat can reveal it.
	admitRecord(t, m, "missed", &vonv1.Reservation{State: vonv1.ReservationState_RESERVATION_STATE_COMMITTED,
		LeaseExpireTime: timestamppb.New(time.Now().Add(time.Hour))}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for _, r := range []string{"r1", "r2"} {
		for {
			out, err := tb.Exec(ctx, r, "tc", "class", "show", "dev", "eth1")
			if err == nil && strings.Contains(out, "rate 3Mbit ceil 3Mbit") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never got the missed partition:\n%s", r, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// registrations counts an agent's successful registrations with the leader.
func registrations(t *testing.T, a *agent.Agent) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "von_agent_register_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == "ok" {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
