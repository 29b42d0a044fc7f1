//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/internal/failpoint"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/reservation"
)

// The leader is killed -9 at every step of the two-phase commit (failpoints
// built into the test binaries) while a client reserves or releases; a standby
// takes over. Within 10 s every ON is installed on all its routers or on none,
// as its record says; the client's answer is true; no round, capacity or id is
// left behind.
func TestLeaderKilledAtEvery2PCStep(t *testing.T) {
	ctx := context.Background()
	c := startWith(t, "testdata/ring.yaml", cluster.Options{Managers: 2, ManagerArgs: fastLeases})
	etcd, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(c.EtcdEndpoint(), ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	conn, err := c.Dial(cluster.Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := vonv1.NewReservationServiceClient(conn)

	for _, fp := range failpoint.Names {
		t.Run(fp, func(t *testing.T) {
			armLeader(t, c, fp)
			name := "chaos-" + fp
			var answer error
			call := func(f func(context.Context) error) error {
				cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				return f(cctx)
			}
			reserve := func(ctx context.Context) error {
				_, err := cl.Reserve(ctx, &vonv1.ReserveRequest{Name: name, Members: []string{"h1", "h2"}, RateBps: 3_000_000})
				return err
			}
			release := func(ctx context.Context) error {
				_, err := cl.Release(ctx, &vonv1.ReleaseRequest{Name: name})
				return err
			}
			start := time.Now()
			if fp == failpoint.AfterReleaseStart {
				if err := call(reserve); err != nil {
					t.Fatal(err)
				}
				answer = call(release)
			} else {
				answer = call(reserve)
			}
			crashed := managerDied(c, 5*time.Second)
			t.Logf("answer after %v: %v (leader crashed: %v)", time.Since(start).Round(time.Millisecond), answer, crashed)
			if !crashed {
				t.Fatalf("the leader did not die at %s", fp)
			}
			settled := checkSettled(t, c, cl, etcd, name, fp, answer, 10*time.Second)
			t.Logf("settled %v after the answer", settled.Round(time.Millisecond))
			// Clean up: release, then no capacity or id may stay charged.
			if err := call(release); err != nil {
				t.Fatalf("release: %v", err)
			}
			checkNothingCharged(t, etcd)
			c.SetManagerEnv(0)
			c.SetManagerEnv(1)
			if err := c.StartManager(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// armLeader makes the leading manager one that dies at fp.
func armLeader(t *testing.T, c *cluster.Cluster, fp string) {
	t.Helper()
	ctx := context.Background()
	lead, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	standby := 1 - lead
	c.SetManagerEnv(standby, failpoint.Env+"="+fp)
	c.StopManagerN(standby, syscall.SIGTERM)
	if err := c.StartManagerN(ctx, standby); err != nil {
		t.Fatal(err)
	}
	c.StopManagerN(lead, syscall.SIGKILL) // the armed standby takes over
	if err := c.StartManagerN(ctx, lead); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if l, err := c.Leader(ctx); err == nil && l == standby {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the armed manager did not take the lead")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.WaitAgents(ctx, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	c.SetManagerEnv(standby) // its restart, later, is unarmed
}

// managerDied reports whether a manager process (the armed one) has exited, or
// does within d.
func managerDied(c *cluster.Cluster, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c.ManagersRunning() < 2 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// checkSettled waits (at most d) until the ON's record, the routers' kernels and
// the store agree: committed and installed on every router of its paths, or not
// committed and installed nowhere, and no 2PC round left. The client's answer
// must match.
func checkSettled(t *testing.T, c *cluster.Cluster, cl vonv1.ReservationServiceClient, etcd *clientv3.Client,
	name, fp string, answer error, d time.Duration) time.Duration {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	var why string
	for {
		why = ""
		r, err := cl.Get(ctx, &vonv1.GetRequest{Name: name})
		state := r.GetReservation().GetState()
		want := map[string]bool{}
		if err == nil && state == vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
			for _, pp := range r.GetReservation().GetPaths() {
				for _, p := range pp.GetPaths() {
					for _, n := range p.GetNodes() {
						if strings.HasPrefix(n, "r") {
							want[n] = true
						}
					}
				}
			}
		}
		have := map[string]bool{}
		for k := range htbClasses(t, c.TB) {
			have[k[:strings.IndexByte(k, ':')]] = true
		}
		txns, _ := etcd.Get(ctx, reservation.DefaultPrefix+"/txns/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		switch {
		case fmt.Sprint(want) != fmt.Sprint(have):
			why = fmt.Sprintf("state %v: routers with classes %v, want %v", state, have, want)
		case txns.Count != 0:
			why = fmt.Sprintf("%d 2PC rounds left", txns.Count)
		case state == vonv1.ReservationState_RESERVATION_STATE_RELEASING || state == vonv1.ReservationState_RESERVATION_STATE_PREPARING:
			why = fmt.Sprintf("still %v", state)
		}
		if why == "" {
			committed := state == vonv1.ReservationState_RESERVATION_STATE_COMMITTED
			switch {
			case fp == failpoint.AfterReleaseStart && answer == nil && committed:
				t.Errorf("release answered done, but the ON is committed")
			case fp != failpoint.AfterReleaseStart && answer == nil && !committed:
				t.Errorf("reserve answered done, but the ON is %v", state)
			case fp != failpoint.AfterReleaseStart && answer != nil && committed:
				t.Errorf("reserve answered %v, but the ON is committed", answer)
			}
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("not settled after %v: %s", d, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkNothingCharged: no link direction carries reserved capacity and every
// id record is in quarantine.
func checkNothingCharged(t *testing.T, etcd *clientv3.Client) {
	t.Helper()
	ctx := context.Background()
	links, err := etcd.Get(ctx, reservation.DefaultPrefix+"/links/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range links.Kvs {
		if v, _ := strconv.ParseUint(string(kv.Value), 10, 64); v != 0 {
			t.Errorf("capacity leaked: %s = %s", kv.Key, kv.Value)
		}
	}
	ids, err := etcd.Get(ctx, reservation.DefaultPrefix+"/ids/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range ids.Kvs {
		var rec struct {
			Until int64 `json:"until"`
		}
		if json.Unmarshal(kv.Value, &rec) != nil || rec.Until == 0 {
			t.Errorf("id leaked: %s = %s", kv.Key, kv.Value)
		}
	}
}
