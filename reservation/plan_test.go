package reservation

import (
	"errors"
	"strings"
	"testing"

	"github.com/vonproject/von/e2e/testbed"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// agentsFor registers every router with the interface addresses the testbed gives it.
func agentsFor(t testing.TB, topo *topology.Topology) map[string]*vonv1.Agent {
	t.Helper()
	p, err := testbed.NewPlan(topo)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*vonv1.Agent{}
	for _, l := range p.Links {
		for _, e := range []testbed.EndPlan{l.A, l.B} {
			a := out[e.Node]
			if a == nil {
				a = &vonv1.Agent{Node: e.Node}
				out[e.Node] = a
			}
			a.Interfaces = append(a.Interfaces, &vonv1.Interface{Name: e.Iface, Addresses: []string{e.Addr.String() + "/30"}})
		}
	}
	return out
}

func sixState(t testing.TB) *TopologyState {
	t.Helper()
	topo, err := topology.Load("../e2e/testbed/testdata/six.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := topology.Marshal(topo)
	st, err := newTopologyState(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPlaceRedundantSingleHomed(t *testing.T) {
	ts := sixState(t)
	pl, err := place(ts, placeRequest{Name: "on1", Members: []string{"h1", "h2"}, Rate: 10_000_000, Redundant: true, DSCP: 44, Port: 4750},
		nil, agentsFor(t, ts.Topo))
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Pairs) != 1 || len(pl.Pairs[0].Paths) != 2 {
		t.Fatalf("pairs = %v", pl.Pairs)
	}
	got := []string{strings.Join(pl.Pairs[0].Paths[0].Nodes, " "), strings.Join(pl.Pairs[0].Paths[1].Nodes, " ")}
	want := []string{"h1 r1 r2 r3 r6 h2", "h1 r1 r4 r5 r6 h2"}
	if got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("paths %q, want %q", got, want)
	}
	if strings.Join(pl.Participants, ",") != "r1,r2,r3,r4,r5,r6" {
		t.Errorf("participants %v", pl.Participants)
	}
	if len(pl.Charges) != 2*8 {
		t.Errorf("charged %d link directions, want 16 (all 8 links, both ways)", len(pl.Charges))
	}
	r1 := pl.Specs["r1"]
	// r1: classes on eth0 (to h1), eth1 (to r2), eth2 (to r4); copy 0 to h2 via r2, copy 1 via r4.
	if len(r1.Classes) != 3 {
		t.Errorf("r1 classes %v", r1.Classes)
	}
	pins := map[string]bool{}
	for _, p := range r1.Pins {
		pins[p.String()] = true
	}
	if len(r1.Pins) != 2 || r1.Pins[0].GetEgressInterface() == r1.Pins[1].GetEgressInterface() {
		t.Errorf("r1 pins %v", r1.Pins)
	}
	for _, p := range r1.Pins {
		if p.GetDestination() != "10.77.1.2" {
			t.Errorf("r1 pin to %s", p.GetDestination())
		}
	}
	if len(r1.EdgePolicies) != 1 || r1.EdgePolicies[0].GetAccessInterface() != "eth0" || r1.EdgePolicies[0].GetAllowedSources()[0] != "10.77.1.1" {
		t.Errorf("r1 edge policies %v", r1.EdgePolicies)
	}
	// r3 pins towards h2 via r6 on path 0 and towards h1 via r2 on path 0.
	if n := len(pl.Specs["r3"].Pins); n != 2 {
		t.Errorf("r3 has %d pins, want 2 (one per direction)", n)
	}
}

func TestPlaceErrors(t *testing.T) {
	ts := sixState(t)
	agents := agentsFor(t, ts.Topo)
	// 50Mbit links, 0.8 reservable: 40Mbit fits, 41Mbit does not.
	if _, err := place(ts, placeRequest{Name: "x", Members: []string{"h1", "h2"}, Rate: 41_000_000, Redundant: true}, nil, agents); !errors.Is(err, ErrInsufficientCapacity) {
		t.Errorf("over capacity: %v", err)
	}
	if _, err := place(ts, placeRequest{Name: "x", Members: []string{"h1", "r2"}, Rate: 1}, nil, agents); !errors.Is(err, ErrInvalid) {
		t.Errorf("router member: %v", err)
	}
	delete(agents, "r4")
	_, err := place(ts, placeRequest{Name: "x", Members: []string{"h1", "h2"}, Rate: 1, Redundant: true}, nil, agents)
	if !errors.Is(err, ErrUnplaceable) || !strings.Contains(err.Error(), "r4") {
		t.Errorf("unknown next hop: %v", err)
	}
	// Capacity reserved on the cheap core pushes a non-redundant ON to the other one.
	reserved := map[Charge]uint64{{"r2-r3", AtoB}: 35_000_000}
	pl, err := place(ts, placeRequest{Name: "x", Members: []string{"h1", "h2"}, Rate: 10_000_000}, reserved, agentsFor(t, ts.Topo))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pl.Pairs[0].Paths[0].Nodes, " "); got != "h1 r1 r4 r5 r6 h2" {
		t.Errorf("path %s, want the r4-r5 core", got)
	}
}

// Issue 8 §0.1: both copies of every message cross a single-homed member's access link,
// so a redundant ON is charged and shaped for 2R there and R on the disjoint cores.
func TestPlaceCopiesOnSharedLinks(t *testing.T) {
	ts := sixState(t)
	agents := agentsFor(t, ts.Topo)
	pl, err := place(ts, placeRequest{Name: "on1", Members: []string{"h1", "h2"}, Rate: 10_000_000, Redundant: true, DSCP: 44, Port: 4750}, nil, agents)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"h1-r1": 20_000_000, "r6-h2": 20_000_000, "r1-r2": 10_000_000, "r2-r3": 10_000_000,
		"r3-r6": 10_000_000, "r1-r4": 10_000_000, "r4-r5": 10_000_000, "r5-r6": 10_000_000}
	for _, c := range pl.Charged {
		if w, ok := want[c.GetLink()]; !ok || c.GetRateBps() != w || uint64(c.GetCopies())*10_000_000 != w {
			t.Errorf("charged %s %s: %d bit/s, %d copies; want %d", c.GetLink(), c.GetDirection(), c.GetRateBps(), c.GetCopies(), w)
		}
	}
	for c, amt := range pl.Amounts {
		if amt != want[c.Link] {
			t.Errorf("ledger amount %v = %d, want %d", c, amt, want[c.Link])
		}
	}
	rates := map[string]uint64{}
	for _, c := range pl.Specs["r1"].Classes {
		rates[c.GetInterface()] = c.GetRateBps()
	}
	if rates["eth0"] != 20_000_000 || rates["eth1"] != 10_000_000 || rates["eth2"] != 10_000_000 {
		t.Errorf("r1 class rates %v, want eth0 (to h1) 20M, eth1/eth2 (cores) 10M", rates)
	}
	for _, c := range pl.Specs["r6"].Classes {
		if c.GetLink() == "r6-h2" && c.GetRateBps() != 20_000_000 {
			t.Errorf("r6 class towards h2: %d, want 20M", c.GetRateBps())
		}
	}
	// A non-redundant ON sends one copy: R everywhere.
	pl, err = place(ts, placeRequest{Name: "on2", Members: []string{"h1", "h2"}, Rate: 10_000_000, DSCP: 44, Port: 4750}, nil, agents)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range pl.Charged {
		if c.GetRateBps() != 10_000_000 || c.GetCopies() != 1 {
			t.Errorf("non-redundant charged %s: %d (%d copies)", c.GetLink(), c.GetRateBps(), c.GetCopies())
		}
	}
	// The access link must have room for both copies: 61M reserved + 2×10M > 80M.
	reserved := map[Charge]uint64{{"h1-r1", AtoB}: 61_000_000}
	_, err = place(ts, placeRequest{Name: "x", Members: []string{"h1", "h2"}, Rate: 10_000_000, Redundant: true}, reserved, agents)
	if !errors.Is(err, ErrInsufficientCapacity) || !strings.Contains(err.Error(), "2 copies") {
		t.Errorf("access link without room for both copies: %v", err)
	}
	if _, err := place(ts, placeRequest{Name: "x", Members: []string{"h1", "h2"}, Rate: 10_000_000}, reserved, agents); err != nil {
		t.Errorf("one copy fits: %v", err)
	}
}
