package disjoint

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/vonproject/von/topology"
)

func mustGraph(t testing.TB, yaml string) *Graph {
	t.Helper()
	topo, err := topology.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	g, err := FromTopology(topo)
	if err != nil {
		t.Fatalf("FromTopology: %v", err)
	}
	return g
}

func loadGraph(t testing.TB, path string) *Graph {
	t.Helper()
	topo, err := topology.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := FromTopology(topo)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func idx(t testing.TB, g *Graph, name string) int {
	t.Helper()
	i, err := g.NodeIndex(name)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// route renders a path as "s a t".
func route(g *Graph, p Path) string {
	var b strings.Builder
	for i, v := range p.Nodes {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(g.NodeName(v))
	}
	return b.String()
}

func routes(g *Graph, r *Result) []string {
	var out []string
	for _, p := range r.Paths {
		out = append(out, route(g, p))
	}
	return out
}

func pair(t *testing.T, g *Graph, from, to string, opt Options) (*Result, error) {
	t.Helper()
	return g.Disjoint(idx(t, g, from), idx(t, g, to), opt)
}

func wantRoutes(t *testing.T, g *Graph, r *Result, cost int64, want ...string) {
	t.Helper()
	if got := routes(g, r); !slices.Equal(got, want) || r.TotalCost != cost {
		t.Fatalf("got %q cost %d, want %q cost %d", got, r.TotalCost, want, cost)
	}
}

func wantNoPair(t *testing.T, err error, sentinel error, c Constraint, reason string) *NoPairError {
	t.Helper()
	var e *NoPairError
	if !errors.As(err, &e) || !errors.Is(err, sentinel) {
		t.Fatalf("error %v: want a *NoPairError wrapping %v", err, sentinel)
	}
	if e.Constraint != c || !strings.Contains(e.Error(), reason) {
		t.Fatalf("error %q (constraint %s): want constraint %s and %q", e.Error(), e.Constraint, c, reason)
	}
	return e
}

// naive is the approach the issue warns about: shortest path, remove it,
// search again.
func naive(g *Graph, from, to int, opt Options) (int64, bool) {
	p1, err := g.ShortestPath(from, to, opt)
	if err != nil {
		return 0, false
	}
	opt.ExcludeLinks = append(slices.Clone(opt.ExcludeLinks), p1.Links...)
	if opt.Mode == NodeDisjoint {
		opt.ExcludeNodes = append(slices.Clone(opt.ExcludeNodes), p1.Nodes[1:len(p1.Nodes)-1]...)
	}
	p2, err := g.ShortestPath(from, to, opt)
	if err != nil {
		return 0, false
	}
	return p1.Cost + p2.Cost, true
}

func TestTrapTopology(t *testing.T) {
	g := loadGraph(t, "testdata/trap.yaml")
	s, tt := idx(t, g, "s"), idx(t, g, "t")
	if _, ok := naive(g, s, tt, Options{}); ok {
		t.Fatal("the naive approach should fail on the trap topology")
	}
	for _, mode := range []Mode{LinkDisjoint, NodeDisjoint} {
		r, err := g.Disjoint(s, tt, Options{Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		wantRoutes(t, g, r, 8, "s a t", "s b t")
		if got := []string{g.LinkName(r.Paths[0].Links[0]), g.LinkName(r.Paths[0].Links[1])}; !slices.Equal(got, []string{"s-a", "a-t"}) {
			t.Fatalf("links %v", got)
		}
	}
	// Reversed request: same links, paths from t.
	r, err := g.Disjoint(tt, s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantRoutes(t, g, r, 8, "t b s", "t a s") // links [2 3] before [4 0]
}

func TestParallelLinks(t *testing.T) {
	g := mustGraph(t, `
nodes: [{name: x, kind: router}, {name: y, kind: router}]
links:
  - {a: x, b: y, capacity: 1G, cost: 5}
  - {a: x, b: y, capacity: 1G, cost: 2}
  - {a: y, b: x, capacity: 1G, cost: 2}
  - {a: x, b: y, capacity: 1G, cost: 0}
`)
	r, err := pair(t, g, "x", "y", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.TotalCost != 2 || !slices.Equal(r.Paths[0].Links, []int{3}) || !slices.Equal(r.Paths[1].Links, []int{1}) {
		t.Fatalf("got %+v", r)
	}
	// Parallel direct links have no router in between: node-disjoint too.
	if r, err = pair(t, g, "x", "y", Options{Mode: NodeDisjoint, K: 4}); err != nil || r.TotalCost != 9 {
		t.Fatalf("4 parallel links: %+v %v", r, err)
	}
	_, err = pair(t, g, "x", "y", Options{K: 5})
	wantNoPair(t, err, ErrNoDisjointPair, ConstraintTopology, "only 4 link-disjoint paths exist")
	if names := []string{g.LinkName(0), g.LinkName(1), g.LinkName(2), g.LinkName(3)}; !slices.Equal(names, []string{"x-y", "x-y/2", "y-x", "x-y/3"}) {
		t.Fatalf("link names %v", names)
	}
}

func TestEqualCostTiesAreDeterministic(t *testing.T) {
	// A 4×4 grid of cost-1 links has many optimal pairs between corners.
	var b strings.Builder
	b.WriteString("nodes:\n")
	name := func(i, j int) string { return string(rune('a'+i)) + string(rune('0'+j)) }
	for i := range 4 {
		for j := range 4 {
			b.WriteString("  - {name: " + name(i, j) + ", kind: router}\n")
		}
	}
	b.WriteString("links:\n")
	for i := range 4 {
		for j := range 4 {
			if i < 3 {
				b.WriteString("  - {a: " + name(i, j) + ", b: " + name(i+1, j) + ", capacity: 1G}\n")
			}
			if j < 3 {
				b.WriteString("  - {a: " + name(i, j) + ", b: " + name(i, j+1) + ", capacity: 1G}\n")
			}
		}
	}
	g := mustGraph(t, b.String())
	first, err := pair(t, g, "a0", "d3", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if first.TotalCost != 12 || first.Paths[0].Cost != 6 || first.Paths[1].Cost != 6 {
		t.Fatalf("got %+v", first)
	}
	if slices.Compare(first.Paths[0].Links, first.Paths[1].Links) >= 0 {
		t.Fatalf("equal paths not in link order: %v", routes(g, first))
	}
	for range 20 {
		again, err := pair(t, g, "a0", "d3", Options{})
		if err != nil || !equalResults(first, again) {
			t.Fatalf("nondeterministic: %v vs %v", routes(g, first), routes(g, again))
		}
	}
	for _, k := range []int{1, 2} {
		r, err := pair(t, g, "a0", "d3", Options{K: k, Mode: NodeDisjoint})
		if err != nil || r.TotalCost != int64(6*k) {
			t.Fatalf("k=%d node-disjoint: %+v %v", k, r, err)
		}
	}
	// Three corners paths cannot exist: a corner has degree 2.
	_, err = pair(t, g, "a0", "d3", Options{K: 3})
	wantNoPair(t, err, ErrNoDisjointPair, ConstraintTopology, "only 2 link-disjoint paths exist")
}

func TestDisconnected(t *testing.T) {
	g := mustGraph(t, `
nodes: [{name: a, kind: host}, {name: r1, kind: router}, {name: b, kind: host}, {name: r2, kind: router}]
links:
  - {a: a, b: r1, capacity: 1G}
  - {a: b, b: r2, capacity: 1G}
`)
	_, err := pair(t, g, "a", "b", Options{})
	e := wantNoPair(t, err, ErrNoPath, ConstraintTopology, "a and b are not connected")
	if e.Found != 0 || e.Hint == "" {
		t.Fatalf("%+v", e)
	}
	if _, err := g.ShortestPath(idx(t, g, "a"), idx(t, g, "b"), Options{}); !errors.Is(err, ErrNoPath) {
		t.Fatalf("ShortestPath: %v", err)
	}
	// Isolated node, empty graph of links.
	g2, err := New([]string{"x", "y"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g2.Disjoint(0, 1, Options{}); !errors.Is(err, ErrNoPath) {
		t.Fatalf("no links: %v", err)
	}
}

const bridgeYAML = `
nodes:
  - {name: h1, kind: host}
  - {name: r1, kind: router}
  - {name: r2, kind: router}
  - {name: r3, kind: router}
  - {name: r4, kind: router}
  - {name: r5, kind: router}
  - {name: r6, kind: router}
  - {name: h2, kind: host}
links:
  - {a: h1, b: r1, capacity: 1G}
  - {a: h1, b: r2, capacity: 1G}
  - {a: r1, b: r3, capacity: 1G}
  - {a: r2, b: r3, capacity: 1G}
  - {a: r3, b: r4, capacity: 1G}
  - {a: r4, b: r5, capacity: 1G}
  - {a: r4, b: r6, capacity: 1G}
  - {a: r5, b: h2, capacity: 1G}
  - {a: r6, b: h2, capacity: 1G}
`

func TestBridgeLink(t *testing.T) {
	g := mustGraph(t, bridgeYAML)
	_, err := pair(t, g, "h1", "h2", Options{})
	e := wantNoPair(t, err, ErrNoDisjointPair, ConstraintTopology,
		"no second link-disjoint path: link r3-r4 is a bridge (every path from h1 to h2 crosses it)")
	if e.Found != 1 || !slices.Equal(e.Cut, []string{"r3-r4"}) {
		t.Fatalf("%+v", e)
	}
	// Node-disjoint: r3 (and r4) are cut routers; the error blames the
	// topology, since link-disjoint fails too.
	_, err = pair(t, g, "h1", "h2", Options{Mode: NodeDisjoint})
	wantNoPair(t, err, ErrNoDisjointPair, ConstraintTopology, "passes through router r3")
	// A single path is fine.
	if r, err := pair(t, g, "h1", "h2", Options{K: 1}); err != nil || r.TotalCost != 5 {
		t.Fatalf("K=1: %+v %v", r, err)
	}
}

func TestCutRouterButLinkDisjointPairExists(t *testing.T) {
	// Bow tie: two triangles meeting at router m.
	g := mustGraph(t, `
nodes: [{name: s, kind: host}, {name: a, kind: router}, {name: m, kind: router}, {name: b, kind: router}, {name: t, kind: host}]
links:
  - {a: s, b: a, capacity: 1G}
  - {a: s, b: m, capacity: 1G}
  - {a: a, b: m, capacity: 1G}
  - {a: m, b: b, capacity: 1G}
  - {a: m, b: t, capacity: 1G}
  - {a: b, b: t, capacity: 1G}
`)
	r, err := pair(t, g, "s", "t", Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantRoutes(t, g, r, 6, "s m t", "s a m b t")
	_, err = pair(t, g, "s", "t", Options{Mode: NodeDisjoint})
	e := wantNoPair(t, err, ErrNoDisjointPair, ConstraintNodeDisjoint, "every path from s to t passes through router m")
	if !strings.Contains(e.Hint, "2 link-disjoint paths exist") {
		t.Fatalf("hint %q", e.Hint)
	}
}

const capYAML = `
nodes: [{name: s, kind: host}, {name: a, kind: router}, {name: b, kind: router}, {name: t, kind: host}]
links:
  - {a: s, b: a, capacity: 100Mbit, reservable: 1}
  - {a: a, b: t, capacity: 100Mbit, reservable: 1}
  - {a: s, b: b, capacity: 100Mbit, reservable: 0.5, cost: 2}
  - {a: b, b: t, capacity: 100Mbit, reservable: 0.5, cost: 2}
  - {a: s, b: t, capacity: 50Mbit, reservable: 1, cost: 10}
`

func TestCapacity(t *testing.T) {
	g := mustGraph(t, capYAML)
	r, err := pair(t, g, "s", "t", Options{Rate: 40e6})
	if err != nil {
		t.Fatal(err)
	}
	wantRoutes(t, g, r, 6, "s a t", "s b t")
	// 60Mbit: s-b-t and s-t only have 50 reservable.
	_, err = pair(t, g, "s", "t", Options{Rate: 60e6})
	e := wantNoPair(t, err, ErrNoDisjointPair, ConstraintCapacity, "only 1 link-disjoint path has 60Mbit unreserved in both directions")
	if !strings.Contains(e.Reason, "s-b (50Mbit free)") || !strings.Contains(e.Reason, "s-t (50Mbit free)") {
		t.Fatalf("reason %q does not list the links lacking capacity", e.Reason)
	}
	// Reservations: 45Mbit reserved a→t in one direction only.
	res := make([]uint64, 2*g.NumLinks())
	res[2*1] = 65e6 // link a-t, A→B (a→t): 35Mbit left
	opt := Options{Rate: 40e6, Reserved: ReservedSlice(res)}
	r, err = pair(t, g, "s", "t", opt)
	if err != nil {
		t.Fatal(err)
	}
	wantRoutes(t, g, r, 14, "s b t", "s t")
	// Forward direction: traffic t→s crosses a-t in the B→A direction,
	// which is free, so the cheap pair is usable again.
	opt.Direction = Forward
	if r, err = pair(t, g, "t", "s", opt); err != nil || r.TotalCost != 6 {
		t.Fatalf("forward t→s: %+v %v", r, err)
	}
	if r, err = pair(t, g, "s", "t", opt); err != nil || r.TotalCost != 14 {
		t.Fatalf("forward s→t: %+v %v", r, err)
	}
	// Nothing carries 200Mbit.
	_, err = pair(t, g, "s", "t", Options{Rate: 200e6})
	wantNoPair(t, err, ErrNoPath, ConstraintCapacity, "no path has 200Mbit unreserved")
}

const srlgYAML = `
nodes:
  - {name: s, kind: host}
  - {name: a, kind: router}
  - {name: b, kind: router}
  - {name: c, kind: router}
  - {name: t, kind: host}
links:
  - {a: s, b: a, capacity: 1G, srlg: [duct-7]}
  - {a: a, b: t, capacity: 1G}
  - {a: s, b: b, capacity: 1G, srlg: [duct-7]}
  - {a: b, b: t, capacity: 1G}
  - {a: s, b: c, capacity: 1G, cost: 5}
  - {a: c, b: t, capacity: 1G, cost: 5}
`

func TestSRLG(t *testing.T) {
	g := mustGraph(t, srlgYAML)
	r, err := pair(t, g, "s", "t", Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantRoutes(t, g, r, 12, "s a t", "s c t")
	if r.Heuristic {
		t.Fatal("small search flagged heuristic")
	}
	r, err = pair(t, g, "s", "t", Options{IgnoreSRLG: true})
	if err != nil {
		t.Fatal(err)
	}
	wantRoutes(t, g, r, 4, "s a t", "s b t")
	// Without the detour every pair shares duct-7.
	_, err = pair(t, g, "s", "t", Options{ExcludeNodes: []int{idx(t, g, "c")}})
	e := wantNoPair(t, err, ErrNoDisjointPair, ConstraintSRLG, "shares SRLG duct-7")
	if !slices.Equal(e.Cut, []string{"duct-7"}) {
		t.Fatalf("cut %v", e.Cut)
	}
}

func TestSRLGSearchLimitIsFlagged(t *testing.T) {
	g := mustGraph(t, srlgYAML)
	// Too small a limit to find any SRLG-disjoint pair: an error that says
	// one may exist.
	_, err := pair(t, g, "s", "t", Options{SearchLimit: 3})
	e := wantNoPair(t, err, ErrSearchLimit, ConstraintSearchLimit, "may still exist")
	if !errors.Is(err, ErrNoDisjointPair) || !strings.Contains(e.Hint, "search limit") {
		t.Fatalf("%v (hint %q)", err, e.Hint)
	}
	// Enough to find the pair but not to prove it optimal: flagged.
	r, err := pair(t, g, "s", "t", Options{SearchLimit: 6})
	if err != nil || !r.Heuristic || !strings.Contains(r.Note, "may exist") {
		t.Fatalf("limit 6: %+v %v", r, err)
	}
	// Enough to prove it: exact.
	if r, err := pair(t, g, "s", "t", Options{SearchLimit: 8}); err != nil || r.Heuristic || r.TotalCost != 12 {
		t.Fatalf("limit 8: %+v %v", r, err)
	}
}

func TestBadRequests(t *testing.T) {
	g := mustGraph(t, capYAML)
	if _, err := g.Disjoint(0, 0, Options{}); !errors.Is(err, ErrSameNode) {
		t.Fatalf("same node: %v", err)
	}
	if _, err := g.Disjoint(0, 99, Options{}); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("unknown node: %v", err)
	}
	if _, err := g.NodeIndex("nope"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("NodeIndex: %v", err)
	}
	for _, opt := range []Options{{K: -1}, {K: 65}, {Mode: 7}, {Direction: 9}, {SearchLimit: -1},
		{ExcludeLinks: []int{99}}, {ExcludeNodes: []int{0}}, {ExcludeNodes: []int{-3}}} {
		if _, err := g.Disjoint(0, 3, opt); !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("%+v: %v", opt, err)
		}
	}
	for _, tc := range []struct {
		nodes []string
		links []Link
	}{
		{[]string{"a", "a"}, nil},
		{[]string{""}, nil},
		{[]string{"a", "b"}, []Link{{A: 0, B: 0}}},
		{[]string{"a", "b"}, []Link{{A: 0, B: 2}}},
		{[]string{"a", "b"}, []Link{{A: 0, B: 1, Reservable: 1.5}}},
		{[]string{"a", "b"}, []Link{{A: 0, B: 1, Name: "x"}, {A: 0, B: 1, Name: "x"}}},
	} {
		if _, err := New(tc.nodes, tc.links); !errors.Is(err, ErrInvalidGraph) {
			t.Fatalf("New(%v, %v): %v", tc.nodes, tc.links, err)
		}
	}
}

func TestShortestPathMatchesK1(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	g := randomLargeGraph(rng, 300, 4)
	for range 200 {
		a, b := rng.IntN(300), rng.IntN(300)
		if a == b {
			continue
		}
		p, err1 := g.ShortestPath(a, b, Options{})
		r, err2 := g.Disjoint(a, b, Options{K: 1})
		if (err1 == nil) != (err2 == nil) || (err1 == nil && !slices.Equal(p.Links, r.Paths[0].Links)) {
			t.Fatalf("ShortestPath %v %v, K=1 %v %v", p, err1, r, err2)
		}
	}
}

func TestConcurrentQueries(t *testing.T) {
	g := loadGraph(t, "testdata/isp.yaml")
	want := map[[2]int]int64{}
	hosts := []int{}
	for v := range g.NumNodes() {
		if strings.HasPrefix(g.NodeName(v), "h-") && !strings.HasSuffix(g.NodeName(v), "-9") {
			hosts = append(hosts, v)
		}
	}
	hosts = hosts[:20]
	for _, a := range hosts {
		for _, b := range hosts {
			if a != b {
				r, err := g.Disjoint(a, b, Options{Mode: NodeDisjoint})
				if err != nil {
					t.Fatal(err)
				}
				want[[2]int{a, b}] = r.TotalCost
			}
		}
	}
	errc := make(chan error, 4)
	for w := range 4 {
		go func() {
			for i, a := range hosts {
				for j, b := range hosts {
					if a == b || (i+j)%4 != w {
						continue
					}
					r, err := g.Disjoint(a, b, Options{Mode: NodeDisjoint})
					if err != nil || r.TotalCost != want[[2]int{a, b}] {
						errc <- fmt.Errorf("%d→%d: %v %v", a, b, r, err)
						return
					}
				}
			}
			errc <- nil
		}()
	}
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}
