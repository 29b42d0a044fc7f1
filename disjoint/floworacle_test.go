package disjoint

import (
	"math"
	"math/rand/v2"
	"testing"
)

// bfMinCostFlow is an independent min-cost flow for k disjoint paths:
// explicit residual arcs, Bellman-Ford for every augmentation, no
// potentials, no early stop, explicit node splitting. It returns the
// minimum total cost and how many paths exist (≤ k).
func bfMinCostFlow(g *Graph, s, t, k int, mode Mode, usable func(l int, fromA bool) bool) (int64, int) {
	type arc struct {
		to, cap int
		cost    int64
	}
	n := g.NumNodes()
	in, out := func(v int) int { return v }, func(v int) int { return v }
	size := n
	if mode == NodeDisjoint {
		out = func(v int) int { return n + v }
		size = 2 * n
	}
	var arcs []arc
	adj := make([][]int, size)
	add := func(u, v, c int, cost int64) {
		adj[u] = append(adj[u], len(arcs))
		arcs = append(arcs, arc{v, c, cost})
		adj[v] = append(adj[v], len(arcs))
		arcs = append(arcs, arc{u, 0, -cost})
	}
	if mode == NodeDisjoint {
		for v := range n {
			if v != s && v != t {
				add(in(v), out(v), 1, 0)
			}
		}
	}
	for l, lk := range g.links {
		if usable == nil || usable(l, true) {
			add(out(lk.A), in(lk.B), 1, int64(lk.Cost))
		}
		if usable == nil || usable(l, false) {
			add(out(lk.B), in(lk.A), 1, int64(lk.Cost))
		}
	}
	src, dst := out(s), in(t)
	var total int64
	for f := 0; f < k; f++ {
		dist := make([]int64, size)
		prev := make([]int, size)
		for i := range dist {
			dist[i], prev[i] = math.MaxInt64, -1
		}
		dist[src] = 0
		for range size {
			changed := false
			for u := range size {
				if dist[u] == math.MaxInt64 {
					continue
				}
				for _, ai := range adj[u] {
					a := arcs[ai]
					if a.cap > 0 && dist[u]+a.cost < dist[a.to] {
						dist[a.to], prev[a.to], changed = dist[u]+a.cost, ai, true
					}
				}
			}
			if !changed {
				break
			}
		}
		if dist[dst] == math.MaxInt64 {
			return total, f
		}
		total += dist[dst]
		for v := dst; v != src; {
			ai := prev[v]
			arcs[ai].cap--
			arcs[ai^1].cap++
			v = arcs[ai^1].to
		}
	}
	return total, k
}

// TestMediumGraphsAgainstFlowOracle covers graphs too big for path
// enumeration: 20–150 nodes, both modes, k = 2 and 3, with capacity.
func TestMediumGraphsAgainstFlowOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	cases := 300
	if testing.Short() {
		cases = 60
	}
	for c := range cases {
		n := 20 + rng.IntN(130)
		g := randomLargeGraph(rng, n, 2+rng.Float64()*3)
		opt := Options{IgnoreSRLG: true, K: 2 + rng.IntN(2)}
		if rng.IntN(2) == 0 {
			opt.Mode = NodeDisjoint
		}
		var usable func(int, bool) bool
		if rng.IntN(2) == 0 {
			res := make([]uint64, 2*g.NumLinks())
			for i := range res {
				res[i] = uint64(rng.IntN(100)) * 1e7
			}
			opt.Rate, opt.Reserved, opt.Direction = 2e8, ReservedSlice(res), Direction(rng.IntN(2))
			usable = func(l int, fromA bool) bool { return oracleUsable(g, &opt, l, fromA) }
		}
		for range 5 {
			a, b := rng.IntN(n), rng.IntN(n)
			if a == b {
				continue
			}
			want, found := bfMinCostFlow(g, a, b, opt.K, opt.Mode, usable)
			r, err := g.Disjoint(a, b, opt)
			if found < opt.K {
				var e *NoPairError
				if err == nil || !asNoPair(err, &e) || e.Found != found {
					t.Fatalf("case %d %d→%d: got %v %v, oracle finds %d paths", c, a, b, r, err, found)
				}
				continue
			}
			if err != nil || r.TotalCost != want {
				t.Fatalf("case %d %d→%d %+v: got %v %v, oracle %d", c, a, b, opt, r, err, want)
			}
			checkResult(t, g, oracleReq{from: a, to: b, opt: opt}, opt.K, r)
		}
	}
}
