//go:build linux

package reservation

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/testbed"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// A link on one path of a redundant ON goes down (its router's interface): the
// manager sees it from the agent's registration, records the ON degraded, and
// re-routes the broken path around the failure make-before-break — the intact
// path untouched, the new routers installed, the left ones released, charges
// moved with it.
func TestRerouteAroundFailedLink(t *testing.T) {
	b, err := os.ReadFile("../e2e/testdata/threecore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t, topo, testbed.Options{NoShaping: true})
	_, cli := newEtcd(t)
	ctx := context.Background()
	m := New(cli, Config{ExpiryInterval: 100 * time.Millisecond})
	if _, err := m.store.PutTopology(ctx, string(b)); err != nil {
		t.Fatal(err)
	}
	startInproc(t, cli, tb, m)
	runLeader(t, m)
	r, err := m.Reserve(ctx, ReserveRequest{Name: "red", Members: []string{"h1", "h2"}, Rate: 3_000_000, Redundant: true, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	before := r.GetPaths()[0].GetPaths()
	// And a node-disjoint one: its new path must avoid the routers of its intact path.
	if _, err := m.Reserve(ctx, ReserveRequest{Name: "nd", Members: []string{"h1", "h2"}, Rate: 1_000_000, Redundant: true,
		NodeDisjoint: true, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(before[0].GetLinks(), "r2-r3") {
		t.Fatalf("path 0 does not cross r2-r3: %v", before)
	}
	cut := time.Now()
	if _, err := tb.Exec(ctx, "r2", "ip", "link", "set", "eth1", "down"); err != nil {
		t.Fatal(err)
	}
	var after *vonv1.Reservation
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, _, err = m.store.Get(ctx, "red")
		if err != nil {
			t.Fatal(err)
		}
		p := after.GetPaths()[0].GetPaths()
		nd, _, _ := m.store.Get(ctx, "nd")
		txns, _ := m.store.Txns(ctx)
		if !slices.Contains(p[0].GetLinks(), "r2-r3") && !slices.Contains(nd.GetPaths()[0].GetPaths()[0].GetLinks(), "r2-r3") && len(txns) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not re-routed: paths %v, degraded %q, rounds %v", p, after.GetDegraded(), txns)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("re-routed %v after the cut: %v", time.Since(cut).Round(time.Millisecond), after.GetPaths()[0].GetPaths()[0].GetNodes())
	p := after.GetPaths()[0].GetPaths()
	if strings.Join(p[1].GetNodes(), ",") != strings.Join(before[1].GetNodes(), ",") {
		t.Errorf("the intact path moved: %v → %v", before[1].GetNodes(), p[1].GetNodes())
	}
	if want := "h1,r1,r7,r8,r6,h2"; strings.Join(p[0].GetNodes(), ",") != want {
		t.Errorf("new path 0 %v, want %s", p[0].GetNodes(), want)
	}
	if after.GetDegraded() != "" {
		t.Errorf("still degraded: %s", after.GetDegraded())
	}
	has := func(router, dev string) bool {
		out, _ := tb.Exec(ctx, router, "tc", "class", "show", "dev", dev)
		return strings.Contains(out, "rate 3Mbit ceil 3Mbit")
	}
	if !has("r7", "eth1") || !has("r8", "eth1") { // red's 3 Mbit class
		t.Error("the new path's routers have no class")
	}
	for _, gone := range []string{"r2", "r3"} {
		if has(gone, "eth0") || has(gone, "eth1") {
			t.Errorf("%s still carries the ON", gone)
		}
	}
	reserved, _ := m.store.Ledger.Reserved(ctx)
	if reserved[Charge{"r2-r3", AtoB}] != 0 || reserved[Charge{"r7-r8", AtoB}] != 4_000_000 || reserved[Charge{"r4-r5", AtoB}] != 4_000_000 {
		t.Errorf("charges did not move with the path: %v", reserved)
	}
	nd, _, _ := m.store.Get(ctx, "nd")
	if got := strings.Join(nd.GetPaths()[0].GetPaths()[0].GetNodes(), ","); got != "h1,r1,r7,r8,r6,h2" {
		t.Errorf("node-disjoint ON's path 0 is %s", got)
	}
	// An ON reserved while the link is down is planned around it.
	late, err := m.Reserve(ctx, ReserveRequest{Name: "late", Members: []string{"h1", "h2"}, Rate: 1_000_000, Redundant: true, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range late.GetPaths()[0].GetPaths() {
		if slices.Contains(p.GetLinks(), "r2-r3") {
			t.Errorf("a reservation made while r2-r3 is down crosses it: %v", p.GetNodes())
		}
	}
}
