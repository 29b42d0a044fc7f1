package reservation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vonv1 "github.com/vonproject/von/proto/von/v1"
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
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1}); !errors.Is(err, ErrNoTopology) {
		t.Errorf("no topology: %v", err)
	}
	applyYAML(t, m, direct)
	for _, c := range []struct {
		req  ReserveRequest
		want string
	}{
		{ReserveRequest{Name: "", Members: []string{"h1", "h2"}, Rate: 1}, "empty"},
		{ReserveRequest{Name: "a b", Members: []string{"h1", "h2"}, Rate: 1}, "not allowed"},
		{ReserveRequest{Name: "a", Members: []string{"h1"}, Rate: 1}, "at least two members"},
		{ReserveRequest{Name: "a", Members: []string{"h1", "h1"}, Rate: 1}, "listed twice"},
		{ReserveRequest{Name: "a", Members: []string{"h1", "h2"}}, "rate must be positive"},
		{ReserveRequest{Name: "a", Members: []string{"h1", "h9"}, Rate: 1}, `"h9" is not a node`},
		{ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1, NodeDisjoint: true}, "need --redundant"},
		{ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1, TTL: time.Millisecond}, "ttl"},
	} {
		_, err := m.Reserve(ctx, c.req)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want ErrInvalid containing %q", c.req, err, c.want)
		}
	}
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1}); err != nil {
		t.Fatal(err)
	}
	// A retry of the same request returns the same reservation; a different one is refused.
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1}); err != nil {
		t.Errorf("idempotent retry: %v", err)
	}
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 2}); !errors.Is(err, ErrExists) {
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

// A reservation over routers without live agents fails, naming them, and leaves nothing.
func TestReserveAgentDown(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{})
	applyYAML(t, m, routed)
	ctx := context.Background()
	_, err := m.Reserve(ctx, ReserveRequest{Name: "a", Members: []string{"h1", "h2"}, Rate: 1_000_000})
	if !errors.Is(err, ErrAgentDown) || !strings.Contains(err.Error(), "r1, r2") {
		t.Fatalf("err = %v", err)
	}
	if _, _, err := m.store.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("record left behind: %v", err)
	}
	if res, _ := m.store.Ledger.Reserved(ctx); len(res) != 0 {
		t.Errorf("capacity left charged: %v", res)
	}
}

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
	os.Exit(m.Run())
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
	_, err := (&Server{M: m}).Register(context.Background(), &vonv1.AgentRegistryServiceRegisterRequest{Node: "r1", Endpoint: "127.0.0.1:1"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("register on a follower: %v", err)
	}
	if agents, _ := m.store.Agents(context.Background()); agents["r1"] == nil {
		t.Fatal("registration not recorded")
	}
}
