package reservation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func limit(bps uint64) func(string) (uint64, bool) {
	return func(string) (uint64, bool) { return bps, true }
}

// 100 concurrent reservations race for a link that fits 10: exactly 10 get in.
// They go through two ledgers (two managers, say a leader and its deposed
// predecessor), so the etcd guards, not the in-process locks, decide.
func TestAdmitNeverOverbooks(t *testing.T) {
	_, cli := newEtcd(t)
	ledgers := []*Ledger{NewLedger(cli, "/t"), NewLedger(cli, "/t")}
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted, refused := 0, 0
	ids := map[uint32]bool{}
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, _, err := ledgers[i%2].Admit(ctx, Admission{
				Owner: fmt.Sprintf("on-%d", i), Rate: 10_000_000,
				Charges: []Charge{{"r1-r2", AtoB}, {"r1-r2", BtoA}, {"r2-r3", AtoB}},
				Limit:   limit(100_000_000),
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				admitted++
				if ids[id] {
					t.Errorf("id %d allocated twice", id)
				}
				ids[id] = true
			case errors.Is(err, ErrInsufficientCapacity):
				refused++
			default:
				t.Errorf("admit: %v", err)
			}
		}()
	}
	wg.Wait()
	if admitted != 10 || refused != 90 {
		t.Fatalf("admitted %d, refused %d; want 10 and 90", admitted, refused)
	}
	if ledgers[0].Conflicts()+ledgers[1].Conflicts() == 0 {
		t.Error("no transaction conflicted: the test did not race two ledgers")
	}
	res, err := ledgers[0].Reserved(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Charge{{"r1-r2", AtoB}, {"r1-r2", BtoA}, {"r2-r3", AtoB}} {
		if res[c] != 100_000_000 {
			t.Errorf("%v reserved %d", c, res[c])
		}
	}
}

// Within one manager, admissions and releases on the same links wait for
// each other instead of losing their transactions in etcd and retrying.
func TestOneLedgerDoesNotConflictWithItself(t *testing.T) {
	_, cli := newEtcd(t)
	l := NewLedger(cli, "/t")
	ctx := context.Background()
	charges := []Charge{{"r1-r2", AtoB}, {"r1-r2", BtoA}, {"r2-r3", AtoB}}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 5 {
				id, _, err := l.Admit(ctx, Admission{Owner: fmt.Sprintf("on-%d-%d", i, j), Rate: 1_000_000, Charges: charges, Limit: limit(1_000_000_000)})
				if err != nil {
					t.Error(err)
					return
				}
				amounts := map[Charge]uint64{}
				for _, c := range charges {
					amounts[c] = 1_000_000
				}
				if _, err := l.Release(ctx, id, amounts, nil, nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := l.Conflicts(); n != 0 {
		t.Errorf("%d transactions conflicted and were retried", n)
	}
	if res, err := l.Reserved(ctx); err != nil || len(res) != 0 {
		t.Errorf("after every release: %v, %v", res, err)
	}
	if len(l.locks.m) != 0 {
		t.Errorf("%d charge locks left behind", len(l.locks.m))
	}
}

// A locker waiting for a charge gives up with its context and leaves no lock.
func TestChargeLockHonoursContext(t *testing.T) {
	var l chargeLocks
	a := []Charge{{"x", AtoB}, {"y", AtoB}}
	unlock, err := l.lock(context.Background(), a[1:])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.lock(ctx, a); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock while held: %v", err)
	}
	unlock()
	if len(l.m) != 0 {
		t.Fatalf("locks left: %v", l.m)
	}
	unlock, err = l.lock(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

func TestCapacityErrorNamesLink(t *testing.T) {
	_, cli := newEtcd(t)
	l := NewLedger(cli, "/t")
	_, _, err := l.Admit(context.Background(), Admission{Owner: "big", Rate: 30_000_000, Charges: []Charge{{"r1-r2", BtoA}}, Limit: limit(20_000_000)})
	var ce *CapacityError
	if !errors.As(err, &ce) || !errors.Is(err, ErrInsufficientCapacity) {
		t.Fatalf("err = %v", err)
	}
	if want := "link r1-r2 (b->a): 20Mbit reservable, 0bit already reserved, cannot add 30Mbit"; err.Error() != want {
		t.Errorf("err = %q\nwant %q", err, want)
	}
}

// Ids stay unique under concurrent allocation, and a released id is quarantined
// until reaped.
func TestIDsUniqueAndQuarantined(t *testing.T) {
	_, cli := newEtcd(t)
	l := NewLedger(cli, "/t")
	l.Quarantine = time.Hour
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[uint32]bool{}
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, _, err := l.Admit(ctx, Admission{Owner: fmt.Sprint(i), Limit: limit(1)})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if id == 0 || id == 0xFFFFFFFF || ids[id] {
				t.Errorf("bad or duplicate id %d", id)
			}
			ids[id] = true
		}()
	}
	wg.Wait()
	var one uint32
	for id := range ids {
		one = id
		break
	}
	if _, err := l.Release(ctx, one, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, l.idKey(one))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("released id must stay taken during quarantine: %v %v", resp, err)
	}
	if n, _ := l.ReapQuarantine(ctx, time.Now()); n != 0 {
		t.Fatalf("reaped %d ids before their quarantine ended", n)
	}
	if n, _ := l.ReapQuarantine(ctx, time.Now().Add(2*time.Hour)); n != 1 {
		t.Fatalf("reaped %d ids after quarantine, want 1", n)
	}
}

// Release returns capacity; a guard keeps a release from applying twice.
func TestReleaseFreesCapacity(t *testing.T) {
	_, cli := newEtcd(t)
	l := NewLedger(cli, "/t")
	ctx := context.Background()
	ch := []Charge{{"x", AtoB}}
	key := "/t/ons/a"
	id, _, err := l.Admit(ctx, Admission{Owner: "a", Rate: 8, Charges: ch, Limit: limit(10),
		Guard: []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		Ops:   func(uint32) ([]clientv3.Op, error) { return []clientv3.Op{clientv3.OpPut(key, "x")}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Admit(ctx, Admission{Owner: "b", Rate: 8, Charges: ch, Limit: limit(10)}); !errors.Is(err, ErrInsufficientCapacity) {
		t.Fatalf("second admit: %v", err)
	}
	guard := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), ">", 0)}
	if _, err := l.Release(ctx, id, map[Charge]uint64{ch[0]: 8}, guard, []clientv3.Op{clientv3.OpDelete(key)}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Release(ctx, id, map[Charge]uint64{ch[0]: 8}, guard, []clientv3.Op{clientv3.OpDelete(key)}); !errors.Is(err, ErrGuard) {
		t.Fatalf("double release: %v", err)
	}
	if _, _, err := l.Admit(ctx, Admission{Owner: "b", Rate: 8, Charges: ch, Limit: limit(10)}); err != nil {
		t.Fatalf("admit after release: %v", err)
	}
}

// Per-link amounts: a link that carries two copies of every message is charged twice
// the rate, checked against its limit, and returned in full on release.
func TestAdmitAmounts(t *testing.T) {
	_, cli := newEtcd(t)
	l := NewLedger(cli, "/t")
	ctx := context.Background()
	access, core := Charge{"access", AtoB}, Charge{"core", AtoB}
	ch := []Charge{access, core}
	amounts := map[Charge]uint64{access: 16, core: 8}
	if _, _, err := l.Admit(ctx, Admission{Owner: "big", Rate: 8, Charges: ch, Amounts: amounts, Limit: limit(15)}); !errors.Is(err, ErrInsufficientCapacity) {
		t.Fatalf("2×8 on a 15 link: %v", err)
	}
	id, _, err := l.Admit(ctx, Admission{Owner: "a", Rate: 8, Charges: ch, Amounts: amounts, Limit: limit(20)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := l.Reserved(ctx)
	if got[access] != 16 || got[core] != 8 {
		t.Fatalf("reserved %v, want access 16, core 8", got)
	}
	if _, err := l.Release(ctx, id, amounts, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Reserved(ctx); len(got) != 0 {
		t.Fatalf("after release %v, want nothing", got)
	}
}
