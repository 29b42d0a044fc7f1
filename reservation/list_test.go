package reservation

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// putMany writes n committed reservations (every third released) straight
// into the store, 100 per etcd transaction.
func putMany(tb testing.TB, m *Manager, n int) {
	tb.Helper()
	var ops []clientv3.Op
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if _, err := m.cli.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			tb.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range n {
		r := committedRecord(fmt.Sprintf("on%06d", i), uint32(i+1), time.Now().Add(time.Hour))
		if i%3 == 2 {
			r.State = vonv1.ReservationState_RESERVATION_STATE_RELEASED
		}
		b, _ := proto.Marshal(r)
		ops = append(ops, clientv3.OpPut(m.store.onKey(r.GetName()), string(b)))
		if len(ops) == 100 {
			flush()
		}
	}
	flush()
}

// List pages through the reservations in name order, filters by state on the
// server, and a page reads only what it returns.
func TestListPages(t *testing.T) {
	_, cli := newEtcd(t)
	m := New(cli, Config{})
	putMany(t, m, 250)
	s := &server{M: m}
	ctx := context.Background()
	var names []string
	token := ""
	pages := 0
	for {
		resp, err := s.List(ctx, &vonv1.ListRequest{PageSize: 40, PageToken: token,
			States: []vonv1.ReservationState{vonv1.ReservationState_RESERVATION_STATE_COMMITTED}})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range resp.GetReservations() {
			if r.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
				t.Fatalf("filtered page has %s %v", r.GetName(), r.GetState())
			}
			names = append(names, r.GetName())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if len(resp.GetReservations()) != 40 {
			t.Fatalf("a page before the last has %d", len(resp.GetReservations()))
		}
	}
	want := 250 - 250/3 // every third is released
	if len(names) != want || pages != (want+39)/40 {
		t.Fatalf("%d names in %d pages, want %d in %d", len(names), pages, want, (want+39)/40)
	}
	for i := 1; i < len(names); i++ {
		if names[i] <= names[i-1] {
			t.Fatalf("out of order: %s after %s", names[i], names[i-1])
		}
	}
	// The default page is 100.
	resp, err := s.List(ctx, &vonv1.ListRequest{})
	if err != nil || len(resp.GetReservations()) != DefaultPageSize || resp.GetNextPageToken() == "" {
		t.Fatalf("default page: %d, token %q, %v", len(resp.GetReservations()), resp.GetNextPageToken(), err)
	}
}

// BenchmarkListFirstPage: the first page of `vonctl list` with 100,000 ONs in
// the store.
func BenchmarkListFirstPage(b *testing.B) {
	cli := newBenchEtcd(b)
	m := New(cli, Config{})
	putMany(b, m, 100_000)
	s := &server{M: m}
	ctx := context.Background()
	for b.Loop() {
		resp, err := s.List(ctx, &vonv1.ListRequest{})
		if err != nil || len(resp.GetReservations()) != DefaultPageSize {
			b.Fatal(err)
		}
	}
}
