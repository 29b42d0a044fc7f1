package reservation

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// rec is a reservation record over the given routers (a path h1 → routers → h2).
func rec(name string, id uint32, state vonv1.ReservationState, exp time.Time, routers ...string) *vonv1.Reservation {
	nodes := append(append([]string{"h1"}, routers...), "h2")
	return &vonv1.Reservation{Name: name, OnId: id, State: state, RateBps: 1000,
		Members:         []*vonv1.Member{{Name: "h1"}, {Name: "h2"}},
		Paths:           []*vonv1.MemberPairPaths{{Paths: []*vonv1.Path{{Nodes: nodes}}}},
		LeaseExpireTime: timestamppb.New(exp), UpdateTime: timestamppb.Now()}
}

// The leader's index follows every write to the records: per router the
// committed ONs crossing it, the revision of the last change of that set
// (renewals are no change), deadlines in order, counts by state.
func TestIndexFollowsTheStore(t *testing.T) {
	_, cli := newEtcd(t)
	ctx := context.Background()
	m := New(cli, Config{Retention: time.Hour})
	put := func(r *vonv1.Reservation) int64 {
		t.Helper()
		op, err := m.store.putOn(r)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cli.Txn(ctx).Then(op).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	now := time.Now()
	committed := vonv1.ReservationState_RESERVATION_STATE_COMMITTED
	before := put(rec("before", 1, committed, now.Add(time.Hour), "r1", "r2")) // loaded, not watched
	lctx, cancel := context.WithCancel(ctx)
	x, done, err := m.loadIndex(lctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-done }()
	catch := func() {
		t.Helper()
		resp, err := cli.Get(ctx, "x")
		if err != nil || !x.waitFor(ctx, resp.Header.Revision) {
			t.Fatalf("index did not catch up: %v", err)
		}
	}
	names := func(node string) []string {
		recs, _ := x.committedOn(node)
		var out []string
		for _, e := range recs {
			out = append(out, e.record().GetName())
		}
		slices.Sort(out)
		return out
	}
	r2 := put(rec("a", 2, committed, now.Add(-time.Second), "r2", "r3"))
	catch()
	if got := names("r2"); !slices.Equal(got, []string{"a", "before"}) {
		t.Fatalf("r2 carries %v", got)
	}
	// A loaded record is its routers' last change until a later one (the
	// index knows each router's last change across restarts).
	if x.lastChange("r3") != r2 || x.lastChange("r1") != before {
		t.Fatalf("last changes: r3 %d (want %d), r1 %d (want %d)", x.lastChange("r3"), r2, x.lastChange("r1"), before)
	}
	// A renewal changes no router's set.
	put(rec("a", 2, committed, now.Add(-time.Millisecond), "r2", "r3"))
	catch()
	if x.lastChange("r3") != r2 {
		t.Fatalf("a renewal counted as a change of r3's state")
	}
	// Only the latest lease of "a" is due, once.
	due := x.duePast(now)
	if len(due) != 1 || due[0].GetName() != "a" || len(x.duePast(now)) != 0 {
		t.Fatalf("due: %v", due)
	}
	// Re-routed, then released: both are changes for every router involved.
	r3 := put(rec("a", 2, committed, now.Add(time.Hour), "r4"))
	catch()
	if x.lastChange("r2") != r3 || x.lastChange("r4") != r3 || !slices.Equal(names("r4"), []string{"a"}) || len(names("r3")) != 0 {
		t.Fatalf("re-route: r2 %d r4 %d (want %d), r4 %v r3 %v", x.lastChange("r2"), x.lastChange("r4"), r3, names("r4"), names("r3"))
	}
	rel := rec("a", 2, vonv1.ReservationState_RESERVATION_STATE_RELEASED, now, "r4")
	rel.UpdateTime = timestamppb.New(now.Add(-2 * time.Hour))
	r4 := put(rel)
	catch()
	if x.lastChange("r4") != r4 || len(names("r4")) != 0 {
		t.Fatalf("release: r4 %d (want %d), %v", x.lastChange("r4"), r4, names("r4"))
	}
	if due := x.duePast(now); len(due) != 1 || due[0].GetState() != vonv1.ReservationState_RESERVATION_STATE_RELEASED {
		t.Fatalf("a terminal record past retention is due: %v", due)
	}
	counts := x.stateCounts()
	if counts[committed] != 1 || counts[vonv1.ReservationState_RESERVATION_STATE_RELEASED] != 1 {
		t.Fatalf("counts: %v", counts)
	}
	if ids := x.idsByRouter(); !slices.Equal(ids["r1"], []uint32{1}) || len(ids["r4"]) != 0 {
		t.Fatalf("ids: %v", ids)
	}
	if _, err := cli.Delete(ctx, m.store.onKey("a")); err != nil {
		t.Fatal(err)
	}
	catch()
	if counts := x.stateCounts(); counts[vonv1.ReservationState_RESERVATION_STATE_RELEASED] != 0 {
		t.Fatalf("deleted record still counted: %v", counts)
	}
}

// Writes outside the reservations (here agent records) move the store's
// revision without a watch event; the index still catches up at once when
// asked, instead of falling back to reading every record.
func TestIndexCatchesUpWithoutEvents(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{})
	ctx := context.Background()
	for i := range 5 {
		if err := m.store.PutAgent(ctx, &vonv1.Agent{Node: "r1", Endpoint: "127.0.0.1:1", LastSeenTime: timestamppb.Now()}); err != nil {
			t.Fatal(err)
		}
		resp, err := cli.Get(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if x := m.caughtUp(ctx); x == nil || !x.reflects(resp.Header.Revision) {
			t.Fatalf("write %d: the index did not catch up", i)
		}
		if d := time.Since(t0); d > time.Second {
			t.Fatalf("write %d: catching up took %v", i, d)
		}
	}
}

// A new leader answers registrations while it still loads its index; they
// wait for the index instead of each reading every record (which, with a
// thousand agents registering at once after a restart, took the leader's CPU
// for tens of seconds at 20,000 ONs).
func TestReadsWaitForTheIndexToLoad(t *testing.T) {
	_, cli := newEtcd(t)
	ctx := context.Background()
	m := New(cli, Config{Retention: time.Hour})
	op, err := m.store.putOn(rec("a", 1, vonv1.ReservationState_RESERVATION_STATE_COMMITTED, time.Now().Add(time.Hour), "r1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(ctx).Then(op).Commit(); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancel(ctx)
	x, done, err := m.loadIndex(lctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-done }()
	m.idxLoading.Store(true)
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		time.Sleep(100 * time.Millisecond)
		m.idx.Store(x)
		m.idxLoading.Store(false)
	}()
	ons, _, err := m.committedOn(ctx, "r1")
	<-loaded
	if err != nil || len(ons) != 1 || ons[0].name != "a" {
		t.Fatalf("committedOn: %v, %v", ons, err)
	}
	if n := m.store.lists.Load(); n != 0 {
		t.Fatalf("read every record %d times while the index loaded", n)
	}
}

// bigRecord is a committed redundant record of the size the scale run
// reserves: four members, two disjoint paths per pair over six routers
// each, twelve routers in all.
func bigRecord(name string, id uint32) *vonv1.Reservation {
	r := rec(name, id, vonv1.ReservationState_RESERVATION_STATE_COMMITTED, time.Now().Add(time.Hour))
	r.Redundant = true
	r.Members = []*vonv1.Member{{Name: "h1"}, {Name: "h2"}, {Name: "h3"}, {Name: "h4"}}
	r.Paths = nil
	for p := range 3 {
		pp := &vonv1.MemberPairPaths{SrcMember: "h1", DstMember: fmt.Sprintf("h%d", p+2)}
		for k := range 2 {
			path := &vonv1.Path{Nodes: []string{"h1"}}
			for i := range 6 {
				n := fmt.Sprintf("router-%03d", (int(id)*7+(k*6+(i+p)%6))%1000)
				path.Nodes = append(path.Nodes, n)
				path.Links = append(path.Links, "link-"+n)
			}
			pp.Paths = append(pp.Paths, path)
		}
		r.Paths = append(r.Paths, pp)
	}
	return r
}

// The index holds 100,000 records on a manager that must stay under 1 GiB:
// each is kept as stored plus what the loops select by, not parsed (a
// parsed record is about three times its stored size).
func TestIndexKeepsRecordsCompact(t *testing.T) {
	const n = 5000
	vals := make([][]byte, n)
	stored := 0
	for i := range vals {
		b, err := proto.Marshal(bigRecord(fmt.Sprintf("on-%05d", i), uint32(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		vals[i], stored = b, stored+len(b)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	x := newIndex(time.Hour)
	for i, v := range vals {
		x.put(fmt.Sprintf("on-%05d", i), v, int64(i+1))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int(after.HeapAlloc) - int(before.HeapAlloc)
	runtime.KeepAlive(x)
	// The stored bytes themselves are vals (already counted in before): the
	// index's own cost per record is entries, router sets and deadlines.
	t.Logf("%d records of %d bytes stored: index holds %d bytes each beyond them", n, stored/n, held/n)
	if limit := stored / n; held/n > limit {
		t.Fatalf("the index holds %d bytes per record beyond the stored %d", held/n, stored/n)
	}
	if ons, _ := x.committedOn("router-005"); len(ons) == 0 || ons[0].record().GetPaths() == nil {
		t.Fatalf("router-005 carries %d records, parsed: %v", len(ons), ons)
	}
}
