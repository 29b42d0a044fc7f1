package reservation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// startManager runs a leading manager on a real embedded etcd.
func startManager(t *testing.T, cli *clientv3.Client, cfg Config) *Manager {
	t.Helper()
	m := New(cli, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager run: %v", err)
		}
		m.Close()
	})
	select {
	case <-m.Leading():
	case err := <-done:
		t.Fatalf("manager stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("manager did not become leader")
	}
	return m
}

// Two hosts on one link: an ON between them crosses no router, so the 2PC has no
// participants and the lease and ledger logic can be tested alone.
const direct = `nodes:
  - {name: h1, kind: host, address: 10.77.1.1}
  - {name: h2, kind: host, address: 10.77.1.2}
links:
  - {a: h1, b: h2, capacity: 100Mbit}
`

func applyYAML(t *testing.T, m *Manager, y string) {
	t.Helper()
	if _, err := m.store.PutTopology(context.Background(), y); err != nil {
		t.Fatal(err)
	}
}

func TestLeaseExpiryFreesCapacity(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{ExpiryInterval: 50 * time.Millisecond})
	applyYAML(t, m, direct)
	ctx := context.Background()
	r, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 60_000_000, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED || r.GetOnId() == 0 {
		t.Fatalf("reserved %v", r)
	}
	// 60 of 80 reservable: a second 60 does not fit while the first lives.
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "b", Members: []string{"h1", "h2"}, Rate: 60_000_000, TTL: time.Hour}); !errors.Is(err, ErrInsufficientCapacity) {
		t.Fatalf("second reservation: %v", err)
	}
	// Renewing keeps it alive past its first expiry.
	time.Sleep(600 * time.Millisecond)
	if _, err := m.Renew(ctx, "a", time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	if got, _, _ := m.store.Get(ctx, "a"); got.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
		t.Fatalf("renewed reservation is %v", got.GetState())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _, err := m.store.Get(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if got.GetState() == vonv1.ReservationState_RESERVATION_STATE_EXPIRED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not expired: %v", got.GetState())
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, _ := m.store.Ledger.Reserved(ctx)
	if len(res) != 0 {
		t.Fatalf("capacity still charged after expiry: %v", res)
	}
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "b", Members: []string{"h1", "h2"}, Rate: 60_000_000, TTL: time.Hour}); err != nil {
		t.Fatalf("reservation after expiry: %v", err)
	}
	// The expired name can be reserved again.
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1_000_000}); err != nil {
		t.Fatalf("re-reserve expired name: %v", err)
	}
}

func TestReserveValidation(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{})
	ctx := context.Background()
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1000}); !errors.Is(err, ErrNoTopology) {
		t.Errorf("no topology: %v", err)
	}
	applyYAML(t, m, direct)
	for _, c := range []struct {
		req  ReserveRequest
		want string
	}{
		{ReserveRequest{Name: "", Members: []string{"h1", "h2"}, Rate: 1000}, "empty"},
		{ReserveRequest{Name: "a b", Members: []string{"h1", "h2"}, Rate: 1000}, "not allowed"},
		{ReserveRequest{Name: "a", Members: []string{"h1"}, Rate: 1000}, "at least two members"},
		{ReserveRequest{Name: "a", Members: []string{"h1", "h1"}, Rate: 1000}, "listed twice"},
		{ReserveRequest{Name: "a", Members: []string{"h1", "h2"}}, "below the minimum"},
		{ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 7}, "below the minimum 1000 bit/s"},
		{ReserveRequest{Name: "a", Members: manyMembers(65), Rate: 1000}, "at most 64"},
		{ReserveRequest{Name: "a", Members: []string{"h1", strings.Repeat("x", 129)}, Rate: 1000}, "longer than 128"},
		{ReserveRequest{Name: "a", Members: []string{"h1", ""}, Rate: 1000}, "empty"},
		{ReserveRequest{Name: strings.Repeat("n", 129), Members: []string{"h1", "h2"}, Rate: 1000}, "longer than 128"},
		{ReserveRequest{Name: "a", Members: []string{"h1", "h9"}, Rate: 1000}, `"h9" is not a node`},
		{ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1000, NodeDisjoint: true}, "need --redundant"},
		{ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1000, TTL: time.Millisecond}, "ttl"},
	} {
		_, err := m.Reserve(ctx, c.req)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want ErrInvalid containing %q", c.req, err, c.want)
		}
	}
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1000}); err != nil {
		t.Fatal(err)
	}
	// A retry of the same request returns the same reservation; a different one is refused.
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1000}); err != nil {
		t.Errorf("idempotent retry: %v", err)
	}
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 2000}); !errors.Is(err, ErrExists) {
		t.Errorf("conflicting reserve: %v", err)
	}
	// A topology that strands the reservation is refused.
	if _, err := m.store.PutTopology(ctx, strings.Replace(direct, "100Mbit", "1bit", 1)); !errors.Is(err, ErrInUse) {
		t.Errorf("shrinking a used link: %v", err)
	}
}

const routed = `nodes:
  - {name: h1, kind: host, address: 10.77.1.1}
  - {name: h2, kind: host, address: 10.77.1.2}
  - {name: r1, kind: router}
  - {name: r2, kind: router}
links:
  - {a: h1:eth0, b: r1:eth0, capacity: 100Mbit}
  - {a: r1:eth1, b: r2:eth1, capacity: 100Mbit, a_addr: 10.77.128.5, b_addr: 10.77.128.6}
  - {a: r2:eth0, b: h2:eth0, capacity: 100Mbit}
`

// A manager that stops between admission and decision leaves an undecided round; the
// next leader aborts it (presumed abort) and frees what it held.
func TestPresumedAbort(t *testing.T) {
	_, cli := newEtcd(t)
	ctx := context.Background()
	st := NewStore(cli, DefaultPrefix)
	if _, err := st.PutTopology(ctx, routed); err != nil {
		t.Fatal(err)
	}
	ts, _ := st.Topology(ctx)
	// What Reserve writes before Prepare: capacity, id, PREPARING record, txn record.
	rec := &vonv1.Reservation{Name: "crashed", State: vonv1.ReservationState_RESERVATION_STATE_PREPARING, RateBps: 5_000_000,
		Members: []*vonv1.Member{{Name: "h1", Address: "10.77.1.1"}, {Name: "h2", Address: "10.77.1.2"}},
		Links:   []*vonv1.ChargedLink{{Link: "r1-r2", Direction: vonv1.LinkDirection_LINK_DIRECTION_A_TO_B, RateBps: 5_000_000}}}
	_, _, err := st.Ledger.Admit(ctx, Admission{Owner: "crashed", Rate: 5_000_000, Charges: []Charge{{"r1-r2", AtoB}},
		Limit: func(l string) (uint64, bool) { x, ok := ts.Topo.Link(l); return x.ReservableRate(), ok },
		Ops: func(id uint32) ([]clientv3.Op, error) {
			rec.OnId = id
			put, err := st.putOn(rec)
			return []clientv3.Op{put, st.putTxn(txnRecord{ID: "t1", Kind: "reserve", Name: "crashed", OnID: id, Participants: []string{"r1", "r2"}})}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	m := startManager(t, cli, Config{})
	got, _, err := m.store.Get(ctx, "crashed")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetState() != vonv1.ReservationState_RESERVATION_STATE_FAILED || !strings.Contains(got.GetFailureReason(), "before deciding") {
		t.Fatalf("after recovery: %v %q", got.GetState(), got.GetFailureReason())
	}
	if res, _ := m.store.Ledger.Reserved(ctx); len(res) != 0 {
		t.Errorf("capacity still charged: %v", res)
	}
	if txns, _ := m.store.Txns(ctx); len(txns) != 0 {
		t.Errorf("transaction records left: %v", txns)
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// 100 concurrent Reserve calls for a link that fits 10: exactly 10 are committed, the
// others are refused for capacity, and the ledger holds exactly 10 × the rate.
func TestConcurrentReserveNeverOverbooks(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{})
	applyYAML(t, m, direct)
	ctx := context.Background()
	errs := make(chan error, 100)
	for i := range 100 {
		go func() {
			_, err := m.Reserve(ctx, ReserveRequest{Name: fmt.Sprintf("on%d", i), Members: []string{"h1", "h2"}, Rate: 8_000_000})
			errs <- err
		}()
	}
	ok, refused := 0, 0
	for range 100 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, ErrInsufficientCapacity):
			refused++
		default:
			t.Errorf("reserve: %v", err)
		}
	}
	if ok != 10 || refused != 90 {
		t.Fatalf("committed %d, refused %d; want 10 and 90", ok, refused)
	}
	res, _ := m.store.Ledger.Reserved(ctx)
	for c, v := range res {
		if v != 80_000_000 {
			t.Errorf("%v: %d reserved, want 80000000", c, v)
		}
	}
}

// Ended reservations stay listed for a while but do not hold the topology hostage.
func TestTopologyIgnoresEndedReservations(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{})
	applyYAML(t, m, direct)
	ctx := context.Background()
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 50_000_000}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.store.PutTopology(ctx, strings.Replace(direct, "100Mbit", "1Mbit", 1)); err != nil {
		t.Fatalf("topology change after release: %v", err)
	}
}

// A manager that does not lead records an agent's registration but gives it no
// desired state (an empty one would make the agent remove its partitions).
func TestRegisterNeedsLeader(t *testing.T) {
	_, cli := newEtcd(t)
	m := New(cli, Config{}) // not running: never leads
	applyYAML(t, m, routed)
	_, err := (&server{M: m}).Register(context.Background(), &vonv1.AgentRegistryServiceRegisterRequest{Node: "r1", Endpoint: "127.0.0.1:1"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("register on a follower: %v", err)
	}
	if agents, _ := m.store.Agents(context.Background()); agents["r1"] == nil {
		t.Fatal("registration not recorded")
	}
}

// Issue 8 §0.3: agents that registered before the topology was applied count at once:
// their addresses are the next hops of the pins, so a reservation right after
// `topology apply` must find them.
func TestRegisterBeforeTopology(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{})
	s := &server{M: m}
	ctx := context.Background()
	topo, err := topology.Load("../e2e/testdata/ring.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for node, a := range agentsFor(t, topo) {
		if topo.Nodes[mustIndex(t, topo, node)].Kind != topology.KindRouter {
			continue
		}
		_, err := s.Register(ctx, &vonv1.AgentRegistryServiceRegisterRequest{Node: node, Endpoint: "127.0.0.1:1", Interfaces: a.GetInterfaces()})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "topology apply") {
			t.Fatalf("register %s before any topology: %v", node, err)
		}
	}
	y, _ := topology.Marshal(topo)
	applyYAML(t, m, string(y))
	ts, err := m.store.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	agents, err := m.store.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := place(ts, placeRequest{Name: "v", Members: []string{"h1", "h2"}, Rate: 1_000_000, Redundant: true, DSCP: 44, Port: 4750}, nil, agents); err != nil {
		t.Fatalf("placement right after topology apply: %v", err)
	}
	for _, a := range agents {
		if !m.live(a) {
			t.Errorf("agent %s registered before the topology is not live", a.GetNode())
		}
	}
	// A host name is still refused.
	if _, err := s.Register(ctx, &vonv1.AgentRegistryServiceRegisterRequest{Node: "h1", Endpoint: "127.0.0.1:1"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("register a host: %v", err)
	}
}

func mustIndex(t *testing.T, topo *topology.Topology, node string) int {
	t.Helper()
	i, ok := topo.NodeIndex(node)
	if !ok {
		t.Fatalf("no node %s", node)
	}
	return i
}

// An agent that re-registers from ever new endpoints (restarts on random ports)
// costs the manager one connection, not one per endpoint.
func TestOneConnectionPerAgent(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{})
	ctx := context.Background()
	for i := range 300 {
		a := &vonv1.Agent{Node: "r1", Endpoint: fmt.Sprintf("127.0.0.1:%d", 20000+i), LastSeenTime: timestamppb.Now()}
		if err := m.store.PutAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
		if _, err := m.agentClient(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
	}
	m.connMu.Lock()
	n := len(m.conns)
	m.connMu.Unlock()
	if n != 1 {
		t.Fatalf("%d agent connections after 300 endpoints of one router, want 1", n)
	}
}

func manyMembers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("h%d", i)
	}
	return out
}

// A committed ON whose partition cannot be derived (its record names a link the
// topology lacks) is left out of a router's desired state; the router's other
// ONs are still given to it.
func TestOneBadONDoesNotBlockRouter(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{})
	applyYAML(t, m, routed)
	ctx := context.Background()
	ts, _ := m.store.Topology(ctx)
	agents := map[string]*vonv1.Agent{}
	for _, n := range []string{"r1", "r2"} {
		agents[n] = &vonv1.Agent{Node: n, Endpoint: "127.0.0.1:1", LastSeenTime: timestamppb.Now()}
	}
	pl, err := place(ts, placeRequest{Name: "good", Members: []string{"h1", "h2"}, Rate: 1_000_000, DSCP: 44, Port: 4750}, nil, agents)
	if err != nil {
		t.Fatal(err)
	}
	good := committedRecord("good", 5, time.Now().Add(time.Hour))
	good.Members, good.Paths, good.Links = pl.Members, pl.Pairs, pl.Charged
	bad := committedRecord("bad", 6, time.Now().Add(time.Hour))
	bad.Members, bad.Paths = pl.Members, []*vonv1.MemberPairPaths{{SrcMember: "h1", DstMember: "h2",
		Paths: []*vonv1.Path{{Nodes: []string{"h1", "r1", "r2", "h2"}, Links: []string{"h1-r1", "gone", "r2-h2"}}}}}
	putRecord(t, m, good)
	putRecord(t, m, bad)
	for _, a := range agents {
		if err := m.store.PutAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	recs, specs, _, err := m.desired(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 1 || specs[0].GetOnId() != 5 || len(recs) != 1 {
		t.Fatalf("desired state of r1: %v", specs)
	}
}

// The leader judges agent liveness on its own clock: a registration recorded by
// a manager whose clock is an hour behind still makes the agent live.
func TestLivenessIgnoresOtherManagersClocks(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{AgentLiveness: 2 * time.Second})
	ctx := context.Background()
	skewed := &vonv1.Agent{Node: "r1", Endpoint: "127.0.0.1:1", LastSeenTime: timestamppb.New(time.Now().Add(-time.Hour))}
	if err := m.store.PutAgent(ctx, skewed); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !m.live(skewed) {
		if time.Now().After(deadline) {
			t.Fatal("an agent registered just now through a skewed standby counts as down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Liveness still ends when registrations stop.
	time.Sleep(2500 * time.Millisecond)
	if m.live(skewed) {
		t.Fatal("an agent silent for longer than AgentLiveness counts as live")
	}
}

// routedWithCommitted applies the routed topology, registers agents for r1
// and r2 (both interfaces up) and records ON "d" committed between h1 and h2
// over r1:eth1. register registers them again, with r1:eth1 up or down.
func routedWithCommitted(t *testing.T, m *Manager) (register func(eth1Up bool)) {
	t.Helper()
	applyYAML(t, m, routed)
	ctx := context.Background()
	ts, _ := m.store.Topology(ctx)
	register = func(eth1Up bool) {
		for _, n := range []string{"r1", "r2"} {
			a := &vonv1.Agent{Node: n, Endpoint: "127.0.0.1:1", LastSeenTime: timestamppb.Now(), Interfaces: []*vonv1.Interface{
				{Name: "eth0", Up: true, Addresses: []string{"10.77.1.9/30"}}, {Name: "eth1", Up: eth1Up || n == "r2", Addresses: []string{"10.77.128.5/30"}}}}
			if err := m.store.PutAgent(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	register(true)
	agents, _ := m.store.Agents(ctx)
	pl, err := place(ts, placeRequest{Name: "d", Members: []string{"h1", "h2"}, Rate: 1_000_000, DSCP: 44, Port: 4750}, nil, agents)
	if err != nil {
		t.Fatal(err)
	}
	r := committedRecord("d", 5, time.Now().Add(time.Hour))
	r.Members, r.Paths, r.Links = pl.Members, pl.Pairs, pl.Charged
	putRecord(t, m, r)
	return register
}

// An ON whose path crosses a link a router reports down is recorded degraded,
// naming the path and the link, and whole again once the link is back.
func TestDegradedWhileALinkIsDown(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{ExpiryInterval: 50 * time.Millisecond})
	register := routedWithCommitted(t, m)
	ctx := context.Background()
	degraded := func() string {
		cur, _, err := m.store.Get(ctx, "d")
		if err != nil {
			t.Fatal(err)
		}
		return cur.GetDegraded()
	}
	time.Sleep(300 * time.Millisecond)
	if d := degraded(); d != "" {
		t.Fatalf("degraded with every link up: %s", d)
	}
	register(false)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(degraded(), "path 0 of h1→h2: link r1-r2 (r1:eth1 is down)") {
		if time.Now().After(deadline) {
			t.Fatalf("not degraded after r1:eth1 went down: %q", degraded())
		}
		time.Sleep(20 * time.Millisecond)
	}
	register(true)
	for degraded() != "" {
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("still degraded after the link came back: %q", degraded())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A phase-two call whose context ends while it waits to retry reports the router
// as not acked (it used to return as if the router had acked).
func TestPhaseTwoContextEndIsNotAnAck(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res := m.phaseTwo(ctx, txnRecord{ID: "x", Participants: []string{"r1"}}, "commit",
		func(context.Context, vonv1.AgentServiceClient, string) error { return nil }, nil)
	if res.ok() {
		t.Fatal("a router without an agent, never called, counted as acked")
	}
}

// A restarted manager meets every agent's heartbeat at once, each asking for
// the topology it has not parsed yet: the callers share one parse.
func TestTopologyParsedOnceUnderLoad(t *testing.T) {
	_, cli := newEtcd(t)
	ctx := context.Background()
	if _, err := NewStore(cli, "/von").PutTopology(ctx, routed); err != nil {
		t.Fatal(err)
	}
	st := NewStore(cli, "/von") // a fresh manager: nothing cached
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := st.Topology(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := st.parses.Load(); n != 1 {
		t.Fatalf("50 concurrent callers parsed the topology %d times, want once", n)
	}
}

// The partitions kept per record (one buffer per record, not a map) answer
// exactly what deriving them again gives, for every router of the ON, and
// nothing for a router off its paths.
func TestSpecCacheAnswersAsDerived(t *testing.T) {
	_, cli := newEtcd(t)
	m := New(cli, Config{})
	applyYAML(t, m, routed)
	ctx := context.Background()
	ts, _ := m.store.Topology(ctx)
	pl, err := place(ts, placeRequest{Name: "on", Members: []string{"h1", "h2"}, Rate: 1_000_000, DSCP: 44, Port: 4750}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := committedRecord("on", 5, time.Now().Add(time.Hour))
	r.Members, r.Paths, r.Links, r.Revision = pl.Members, pl.Pairs, pl.Charged, 7
	if len(pl.Specs) < 2 {
		t.Fatalf("the plan crosses %d routers; the test needs two", len(pl.Specs))
	}
	for node := range pl.Specs {
		derived, err := m.specFor(ts, r, node, nil) // the first call fills the cache
		if err != nil {
			t.Fatal(err)
		}
		cached, err := m.specFor(ts, r, node, nil)
		if err != nil || !proto.Equal(derived, cached) {
			t.Fatalf("%s: cached %v (%v), derived %v", node, cached, err, derived)
		}
	}
	if _, err := m.specFor(ts, r, "h1", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a node off the paths: %v", err)
	}
}

// A router's desired state comes from the kept partitions without parsing
// the records again (a sync round over routers of thousands of ONs each held
// gigabytes of parsed records at once): with the index's stored records
// made unreadable, a second read of the state still returns every partition.
func TestDesiredStateReadsNoRecordOnACacheHit(t *testing.T) {
	m := startRoutedON(t)
	ctx := context.Background()
	want := func() {
		t.Helper()
		recs, specs, _, err := m.desired(ctx, "r1")
		if err != nil || len(specs) != 1 || specs[0].GetOnId() != 5 || len(recs) != 1 || recs[0].GetName() != "on" {
			t.Fatalf("desired state of r1: %v, %v (%v)", specs, recs, err)
		}
	}
	want()
	x := m.index()
	if x == nil {
		t.Fatal("no index")
	}
	x.mu.Lock() // entries are read outside the lock: replace them, unreadable
	for key, e := range x.recs {
		bad := *e
		bad.raw = []byte{0xff, 0xff}
		x.recs[key] = &bad
		for _, n := range e.routers {
			delete(x.byRouter[n], e)
			x.byRouter[n][&bad] = struct{}{}
		}
	}
	x.mu.Unlock()
	want()
}

// A router's desired state is computed for callers still waiting, a few at
// once: at 100,000 ONs agents whose heartbeats had timed out asked for their
// full state over and over while the leader still computed the abandoned
// answers (2,700 at once, 2.5 GB of heap).
func TestDesiredStateOnlyForCallersStillWaiting(t *testing.T) {
	m := startRoutedON(t)
	ctx := context.Background()
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, specs, _, err := m.desired(gone, "r1"); !errors.Is(err, context.Canceled) || specs != nil {
		t.Fatalf("for a caller that gave up: %v, %v", specs, err)
	}
	for range cap(m.desiredSem) { // every slot taken: the next caller waits
		m.desiredSem <- struct{}{}
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, _, _, err := m.desired(short, "r1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with every slot taken: %v", err)
	}
	for range cap(m.desiredSem) {
		<-m.desiredSem
	}
	if _, specs, _, err := m.desired(ctx, "r1"); err != nil || len(specs) != 1 {
		t.Fatalf("with the slots free: %v, %v", specs, err)
	}
}

// startRoutedON starts a leading manager on the routed topology holding one
// committed ON, "on" (id 5), between h1 and h2.
func startRoutedON(t *testing.T) *Manager {
	t.Helper()
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{})
	applyYAML(t, m, routed)
	ts, _ := m.store.Topology(context.Background())
	pl, err := place(ts, placeRequest{Name: "on", Members: []string{"h1", "h2"}, Rate: 1_000_000, DSCP: 44, Port: 4750}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := committedRecord("on", 5, time.Now().Add(time.Hour))
	r.Members, r.Paths, r.Links = pl.Members, pl.Pairs, pl.Charged
	putRecord(t, m, r)
	return m
}
