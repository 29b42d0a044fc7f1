//go:build linux

package e2e

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vonproject/von/e2e/cluster"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Two managers on one etcd; the leader is killed -9 every few seconds and
// restarted while a client reserves and releases through both addresses. At
// least 95% of the operations succeed (the client's calls move to the standby,
// which takes over within about a second), and every answer is true: a reserve
// reported done is committed, one reported failed left nothing, a release
// reported done removed the ON everywhere.
func TestManagerKillsKeepServing(t *testing.T) {
	ctx := context.Background()
	c := startWith(t, "testdata/ring.yaml", cluster.Options{Managers: 2, ManagerArgs: fastLeases})
	conn, err := c.Dial(cluster.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := vonv1.NewReservationServiceClient(conn)

	const runFor, killEvery = 24 * time.Second, 4 * time.Second
	stop := make(chan struct{})
	var wg sync.WaitGroup
	kills := 0
	wg.Go(func() { // the chaos
		t := time.NewTicker(killEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			i, err := c.Leader(ctx)
			if err != nil {
				continue
			}
			c.StopManagerN(i, syscall.SIGKILL)
			kills++
			time.Sleep(time.Second)
			_ = c.StartManagerN(ctx, i)
		}
	})
	type outcome struct {
		name     string
		reserved bool
		released bool
		err      error
	}
	var outs []outcome
	ops, failed := 0, 0
	deadline := time.Now().Add(runFor)
	for i := 0; time.Now().Before(deadline); i++ {
		o := outcome{name: fmt.Sprintf("ha%d", i)}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, o.err = cl.Reserve(cctx, &vonv1.ReserveRequest{Name: o.name, Members: []string{"h1", "h2"}, RateBps: 1_000_000})
		cancel()
		ops++
		if o.reserved = o.err == nil; o.reserved {
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err := cl.Release(cctx, &vonv1.ReleaseRequest{Name: o.name})
			cancel()
			ops++
			if o.released = err == nil; !o.released {
				o.err = err
				failed++
			}
		} else {
			failed++
		}
		outs = append(outs, o)
	}
	close(stop)
	wg.Wait()
	if err := c.StartManager(ctx); err != nil {
		t.Fatal(err)
	}
	ok := float64(ops-failed) / float64(ops)
	t.Logf("%d operations through %d leader kills: %d failed (%.1f%% succeeded)", ops, kills, failed, 100*ok)
	if kills < 3 {
		t.Fatalf("only %d kills", kills)
	}
	if ok < 0.95 {
		for _, o := range outs {
			if o.err != nil {
				t.Logf("%s: %v", o.name, o.err)
			}
		}
		t.Errorf("%.1f%% of operations succeeded, want ≥ 95%%", 100*ok)
	}
	// Every answer was true.
	for _, o := range outs {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		r, err := cl.Get(cctx, &vonv1.GetRequest{Name: o.name})
		cancel()
		state := r.GetReservation().GetState()
		switch {
		case o.released && state != vonv1.ReservationState_RESERVATION_STATE_RELEASED:
			t.Errorf("%s: release reported done, state %v", o.name, state)
		case !o.reserved && err == nil && state == vonv1.ReservationState_RESERVATION_STATE_COMMITTED:
			t.Errorf("%s: reserve reported failed (%v), but it is committed", o.name, o.err)
		case !o.reserved && err != nil && status.Code(err) != codes.NotFound:
			t.Errorf("%s: %v", o.name, err)
		}
		if state == vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, _ = cl.Release(cctx, &vonv1.ReleaseRequest{Name: o.name})
			cancel()
		}
	}
	// Nothing is left on the routers (no leaked partition), within 10 s.
	end := time.Now().Add(10 * time.Second)
	for n := len(htbClasses(t, c.TB)); n > 0; n = len(htbClasses(t, c.TB)) {
		if time.Now().After(end) {
			t.Fatalf("%d interfaces still carry ON classes after every ON was released", n)
		}
		time.Sleep(200 * time.Millisecond)
	}

}
