package onpath

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vonproject/von/disjoint"
	"github.com/vonproject/von/topology"
)

// Three single-homed members around a ring of four routers.
const square = `nodes:
  - {name: h1, kind: host, address: 10.77.1.1}
  - {name: h2, kind: host, address: 10.77.1.2}
  - {name: h3, kind: host, address: 10.77.1.3}
  - {name: r1, kind: router}
  - {name: r2, kind: router}
  - {name: r3, kind: router}
  - {name: r4, kind: router}
links:
  - {a: h1, b: r1, capacity: 100Mbit}
  - {a: h2, b: r2, capacity: 100Mbit}
  - {a: h3, b: r3, capacity: 100Mbit}
  - {a: r1, b: r2, capacity: 50Mbit}
  - {a: r2, b: r3, capacity: 50Mbit}
  - {a: r3, b: r4, capacity: 50Mbit}
  - {a: r4, b: r1, capacity: 50Mbit}
`

func load(t *testing.T, y string) (*topology.Topology, *disjoint.Graph) {
	t.Helper()
	topo, err := topology.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	g, err := disjoint.FromTopology(topo)
	if err != nil {
		t.Fatal(err)
	}
	return topo, g
}

func TestCopies(t *testing.T) {
	topo, g := load(t, square)
	plan, err := PlanON(topo, g, Request{Members: []string{"h1", "h2", "h3"}, Paths: 2, Rate: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Pairs) != 3 {
		t.Fatalf("%d pairs, want 3", len(plan.Pairs))
	}
	copies := map[string]int{}
	for _, l := range plan.Links {
		copies[topo.Links[l].Name] = plan.Copies[l]
	}
	// Every access link carries both copies; every core link one copy of any one
	// message, however many pairs use it (charged once, not per pair).
	for name, c := range copies {
		want := 1
		if strings.HasPrefix(name, "h") {
			want = 2
		}
		if c != want {
			t.Errorf("%s: %d copies, want %d", name, c, want)
		}
	}
	if len(copies) != 7 {
		t.Errorf("links %v, want all 7", copies)
	}
	for _, pp := range plan.Pairs {
		for _, p := range pp.Result.Paths {
			for _, n := range p.Nodes[1 : len(p.Nodes)-1] {
				if n < 3 {
					t.Errorf("%s→%s path crosses host %s", pp.From, pp.To, topo.Nodes[n].Name)
				}
			}
		}
	}
	// One path per pair: one copy everywhere.
	plan, err = PlanON(topo, g, Request{Members: []string{"h1", "h2", "h3"}, Paths: 1})
	if err != nil {
		t.Fatal(err)
	}
	for l, c := range plan.Copies {
		if c != 1 {
			t.Errorf("non-redundant %s: %d copies", topo.Links[l].Name, c)
		}
	}
}

func TestAccessCapacityAndInput(t *testing.T) {
	topo, g := load(t, square)
	// 80 Mbit reservable on the access link: 2 × 40 fits, 2 × 41 does not.
	if _, err := PlanON(topo, g, Request{Members: []string{"h1", "h2"}, Paths: 2, Rate: 40_000_000}); err != nil {
		t.Fatalf("2×40 on 80: %v", err)
	}
	_, err := PlanON(topo, g, Request{Members: []string{"h1", "h2"}, Paths: 2, Rate: 41_000_000})
	var ce *CapacityError
	if !errors.As(err, &ce) || ce.Copies != 2 || ce.Need != 82_000_000 {
		t.Fatalf("2×41 on 80: %v", err)
	}
	if _, err := PlanON(topo, g, Request{Members: []string{"h1", "h9"}}); !errors.Is(err, ErrInput) {
		t.Errorf("unknown member: %v", err)
	}
	if _, err := PlanON(topo, g, Request{Members: []string{"h1", "h1"}}); !errors.Is(err, ErrInput) {
		t.Errorf("twice: %v", err)
	}
	// Routers may be planned between directly (vonctl paths --from r1 --to r3).
	plan, err := PlanON(topo, g, Request{Members: []string{"r1", "r3"}, Paths: 2})
	if err != nil || len(plan.Pairs[0].Result.Paths) != 2 {
		t.Fatalf("router pair: %v %v", plan, err)
	}
}

// The member planner on a 378-node ISP (moved here from disjoint's PlanMembers, which
// onpath replaces): every pair gets its two paths, the union is each link once, sorted
// and deterministic, pairs share links, one path per pair needs fewer links, and a pair
// behind a bridge is refused naming it.
func TestPlanONISP(t *testing.T) {
	topo, err := topology.Load("../disjoint/testdata/isp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := disjoint.FromTopology(topo)
	if err != nil {
		t.Fatal(err)
	}
	members := []string{"h-fra-1", "h-ber-2", "h-muc-3", "h-ham-1"}
	plan, err := PlanON(topo, g, Request{Members: members, Paths: 2, Rate: 10e6})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Pairs) != 6 {
		t.Fatalf("%d pairs", len(plan.Pairs))
	}
	union := map[int]bool{}
	total := 0
	for _, pp := range plan.Pairs {
		if len(pp.Result.Paths) != 2 {
			t.Fatalf("pair %s-%s: %d paths", pp.From, pp.To, len(pp.Result.Paths))
		}
		for _, p := range pp.Result.Paths {
			for _, l := range p.Links {
				union[l] = true
				total++
			}
		}
	}
	if len(plan.Links) != len(union) || !slices.IsSorted(plan.Links) {
		t.Fatalf("union %v, want the %d distinct links", plan.Links, len(union))
	}
	for _, l := range plan.Links {
		if !union[l] {
			t.Fatalf("link %d in union but on no path", l)
		}
	}
	if len(plan.Links) >= total {
		t.Fatalf("pairs share no link: union %d, sum %d", len(plan.Links), total)
	}
	again, _ := PlanON(topo, g, Request{Members: members, Paths: 2, Rate: 10e6})
	if !slices.Equal(plan.Links, again.Links) {
		t.Fatal("nondeterministic union")
	}
	single, err := PlanON(topo, g, Request{Members: members, Paths: 1})
	if err != nil || len(single.Links) >= len(plan.Links) {
		t.Fatalf("one path per pair: %v %v", single, err)
	}
	if p, err := PlanON(topo, g, Request{Members: members[:1], Paths: 2}); err != nil || len(p.Links) != 0 {
		t.Fatalf("one member: %+v %v", p, err)
	}
	// h-fra-9's router acc12.fra hangs off the core by one link: no redundancy there,
	// and the error says which link.
	_, err = PlanON(topo, g, Request{Members: []string{"h-fra-1", "h-fra-9"}, Paths: 2})
	var e *disjoint.NoPairError
	if !errors.As(err, &e) || e.Constraint != disjoint.ConstraintTopology || !strings.Contains(err.Error(), "acc12.fra-ar4.fra is a bridge") {
		t.Fatalf("single-homed router: %v", err)
	}
}
