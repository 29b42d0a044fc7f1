package disjoint

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// The oracle enumerates every simple path and every set of k of them: slow,
// obviously right, and independent of the flow machinery.

type oPath struct {
	nodes []int
	links []int
	cost  int64
}

type oracleReq struct {
	from, to int
	opt      Options
}

func oracleUsable(g *Graph, opt *Options, l int, fromA bool) bool {
	if slices.Contains(opt.ExcludeLinks, l) {
		return false
	}
	if opt.Rate == 0 {
		return true
	}
	free := func(fa bool) uint64 {
		av := availOf(g.links[l].Capacity, g.links[l].Reservable)
		var r uint64
		if opt.Reserved != nil {
			r = opt.Reserved(l, fa)
		}
		if r >= av {
			return 0
		}
		return av - r
	}
	if free(fromA) < opt.Rate {
		return false
	}
	return opt.Direction == Forward || free(!fromA) >= opt.Rate
}

func oracleAllPaths(g *Graph, r oracleReq) []oPath {
	var out []oPath
	onPath := make([]bool, g.NumNodes())
	var nodes, links []int
	var dfs func(v int, cost int64)
	dfs = func(v int, cost int64) {
		if v == r.to {
			out = append(out, oPath{slices.Clone(nodes), slices.Clone(links), cost})
			return
		}
		for l, lk := range g.links {
			var u int
			var fromA bool
			switch v {
			case lk.A:
				u, fromA = lk.B, true
			case lk.B:
				u, fromA = lk.A, false
			default:
				continue
			}
			if onPath[u] || slices.Contains(r.opt.ExcludeNodes, u) || !oracleUsable(g, &r.opt, l, fromA) {
				continue
			}
			onPath[u] = true
			nodes, links = append(nodes, u), append(links, l)
			dfs(u, cost+int64(lk.Cost))
			nodes, links = nodes[:len(nodes)-1], links[:len(links)-1]
			onPath[u] = false
		}
	}
	onPath[r.from] = true
	nodes = []int{r.from}
	dfs(r.from, 0)
	sort.SliceStable(out, func(i, j int) bool { return out[i].cost < out[j].cost })
	return out
}

// oCompatible: may a and b both be in the set?
func oCompatible(g *Graph, a, b oPath, mode Mode, srlg bool) bool {
	for _, x := range a.links {
		if slices.Contains(b.links, x) {
			return false
		}
	}
	if mode == NodeDisjoint {
		for _, x := range a.nodes[1 : len(a.nodes)-1] {
			if slices.Contains(b.nodes[1:len(b.nodes)-1], x) {
				return false
			}
		}
	}
	if srlg {
		for _, x := range a.links {
			for _, y := range b.links {
				for _, gx := range g.links[x].SRLG {
					if slices.Contains(g.links[y].SRLG, gx) {
						return false
					}
				}
			}
		}
	}
	return true
}

// oracleBest returns the least total cost of k compatible paths, or -1, and
// the largest number of compatible paths (up to k).
func oracleBest(g *Graph, r oracleReq, k int) (best int64, most int) {
	paths := oracleAllPaths(g, r)
	srlg := !r.opt.IgnoreSRLG
	best = -1
	var chosen []int
	var rec func(start int, cost int64)
	rec = func(start int, cost int64) {
		most = max(most, len(chosen))
		if len(chosen) == k {
			if best < 0 || cost < best {
				best = cost
			}
			return
		}
		for i := start; i < len(paths); i++ {
			// Paths are sorted by cost: the rest cost at least this one each.
			if best >= 0 && cost+int64(k-len(chosen))*paths[i].cost >= best {
				break
			}
			ok := true
			for _, c := range chosen {
				if !oCompatible(g, paths[c], paths[i], r.opt.Mode, srlg) {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			chosen = append(chosen, i)
			rec(i+1, cost+paths[i].cost)
			chosen = chosen[:len(chosen)-1]
		}
	}
	rec(0, 0)
	return best, most
}

// checkResult verifies a result independently of the package's own checks.
func checkResult(t *testing.T, g *Graph, r oracleReq, k int, res *Result) {
	t.Helper()
	if len(res.Paths) != k {
		t.Fatalf("got %d paths, want %d", len(res.Paths), k)
	}
	var total int64
	op := make([]oPath, k)
	for i, p := range res.Paths {
		if len(p.Nodes) != len(p.Links)+1 || p.Nodes[0] != r.from || p.Nodes[len(p.Nodes)-1] != r.to {
			t.Fatalf("path %d %v does not join %d to %d", i, p, r.from, r.to)
		}
		var c int64
		seen := map[int]bool{}
		for j, l := range p.Links {
			lk := g.links[l]
			u, v := p.Nodes[j], p.Nodes[j+1]
			fromA := lk.A == u && lk.B == v
			if !fromA && !(lk.B == u && lk.A == v) {
				t.Fatalf("path %d: link %d does not join %d-%d", i, l, u, v)
			}
			if !oracleUsable(g, &r.opt, l, fromA) {
				t.Fatalf("path %d uses unusable link %d", i, l)
			}
			c += int64(lk.Cost)
		}
		for _, v := range p.Nodes {
			if seen[v] || (v != r.from && v != r.to && slices.Contains(r.opt.ExcludeNodes, v)) {
				t.Fatalf("path %d repeats or uses excluded node %d", i, v)
			}
			seen[v] = true
		}
		if c != p.Cost {
			t.Fatalf("path %d cost %d, links add to %d", i, p.Cost, c)
		}
		total += c
		op[i] = oPath{p.Nodes, p.Links, c}
		if i > 0 {
			prev := res.Paths[i-1]
			if prev.Cost > p.Cost || (prev.Cost == p.Cost && len(prev.Links) > len(p.Links)) {
				t.Fatalf("paths not in canonical order")
			}
		}
	}
	if total != res.TotalCost {
		t.Fatalf("TotalCost %d, paths add to %d", res.TotalCost, total)
	}
	if k > 1 {
		for i := range op {
			for j := i + 1; j < len(op); j++ {
				if !oCompatible(g, op[i], op[j], r.opt.Mode, !r.opt.IgnoreSRLG) {
					t.Fatalf("paths %d and %d are not disjoint: %v %v", i, j, op[i], op[j])
				}
			}
		}
	}
}

type randSpec struct {
	maxNodes, maxLinks int
	srlg, capacity     bool
}

func randomGraph(rng *rand.Rand, sp randSpec) *Graph {
	n := 2 + rng.IntN(sp.maxNodes-1)
	m := rng.IntN(sp.maxLinks + 1)
	if rng.IntN(4) != 0 && sp.maxLinks > n { // mostly connected enough to matter
		m = n + rng.IntN(sp.maxLinks-n+1)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i)
	}
	groups := []string{"g0", "g1", "g2", "g3"}
	links := make([]Link, 0, m)
	for range m {
		a := rng.IntN(n)
		b := rng.IntN(n - 1)
		if b >= a {
			b++
		}
		l := Link{A: a, B: b, Cost: uint32(rng.IntN(6)), Capacity: uint64(1+rng.IntN(10)) * 1000, Reservable: 1}
		if rng.IntN(4) == 0 {
			l.Reservable = 0.5
		}
		if sp.srlg && rng.IntN(2) == 0 {
			l.SRLG = []string{groups[rng.IntN(len(groups))]}
			if rng.IntN(4) == 0 {
				l.SRLG = append(l.SRLG, groups[rng.IntN(len(groups))])
			}
		}
		links = append(links, l)
	}
	g, err := New(names, links)
	if err != nil {
		panic(err)
	}
	return g
}

func randomRequest(rng *rand.Rand, g *Graph, sp randSpec) oracleReq {
	n := g.NumNodes()
	r := oracleReq{from: rng.IntN(n)}
	r.to = rng.IntN(n - 1)
	if r.to >= r.from {
		r.to++
	}
	if rng.IntN(2) == 0 {
		r.opt.Mode = NodeDisjoint
	}
	r.opt.IgnoreSRLG = !sp.srlg || rng.IntN(4) == 0
	if sp.capacity && rng.IntN(2) == 0 {
		r.opt.Rate = uint64(1+rng.IntN(6)) * 1000
		res := make([]uint64, 2*g.NumLinks())
		for i := range res {
			if rng.IntN(3) == 0 {
				res[i] = uint64(rng.IntN(5)) * 1000
			}
		}
		r.opt.Reserved = ReservedSlice(res)
		if rng.IntN(2) == 0 {
			r.opt.Direction = Forward
		}
	}
	if rng.IntN(8) == 0 && g.NumLinks() > 0 {
		r.opt.ExcludeLinks = []int{rng.IntN(g.NumLinks())}
	}
	if rng.IntN(8) == 0 && n > 2 {
		v := rng.IntN(n)
		if v != r.from && v != r.to {
			r.opt.ExcludeNodes = []int{v}
		}
	}
	return r
}

func runOracleCase(t *testing.T, g *Graph, r oracleReq, k int) {
	t.Helper()
	r.opt.K = k
	want, most := oracleBest(g, r, k)
	res, err := g.Disjoint(r.from, r.to, r.opt)
	if want < 0 {
		if err == nil {
			t.Fatalf("got %+v, oracle says impossible", res)
		}
		var npe *NoPairError
		if !errors.As(err, &npe) {
			t.Fatalf("error %v is not a *NoPairError", err)
		}
		if most == 0 && !errors.Is(err, ErrNoPath) {
			t.Fatalf("no single path exists, error %v does not wrap ErrNoPath", err)
		}
		if most > 0 && !errors.Is(err, ErrNoDisjointPair) {
			t.Fatalf("a path exists, error %v does not wrap ErrNoDisjointPair", err)
		}
		if npe.Constraint != ConstraintSRLG && npe.Constraint != ConstraintSearchLimit {
			// Found counts paths that meet every constraint but SRLG.
			noSRLG := r
			noSRLG.opt.IgnoreSRLG = true
			if _, m := oracleBest(g, noSRLG, k); npe.Found != m {
				t.Fatalf("Found = %d, oracle finds %d disjoint paths (%v)", npe.Found, m, err)
			}
		}
		return
	}
	if err != nil {
		t.Fatalf("error %v, oracle cost %d", err, want)
	}
	checkResult(t, g, r, k, res)
	if res.TotalCost != want {
		t.Fatalf("total cost %d, oracle %d (heuristic=%v)", res.TotalCost, want, res.Heuristic)
	}
	if res.Heuristic {
		t.Fatalf("small graph answered heuristically: %s", res.Note)
	}
	again, err := g.Disjoint(r.from, r.to, r.opt)
	if err != nil || !equalResults(res, again) {
		t.Fatalf("same input, different output: %+v vs %+v (%v)", res, again, err)
	}
}

func equalResults(a, b *Result) bool {
	if a.TotalCost != b.TotalCost || len(a.Paths) != len(b.Paths) {
		return false
	}
	for i := range a.Paths {
		if !slices.Equal(a.Paths[i].Links, b.Paths[i].Links) || !slices.Equal(a.Paths[i].Nodes, b.Paths[i].Nodes) {
			return false
		}
	}
	return true
}

func TestOracleLinkAndNodeDisjoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sp := randSpec{maxNodes: 8, maxLinks: 13}
	for i := range 10000 {
		g := randomGraph(rng, sp)
		r := randomRequest(rng, g, sp)
		t.Run("", func(t *testing.T) {
			defer reportCase(t, i, g, r)
			runOracleCase(t, g, r, 2)
		})
		if t.Failed() {
			return
		}
	}
}

func TestOracleCapacity(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	sp := randSpec{maxNodes: 8, maxLinks: 13, capacity: true}
	for i := range 6000 {
		g := randomGraph(rng, sp)
		r := randomRequest(rng, g, sp)
		t.Run("", func(t *testing.T) {
			defer reportCase(t, i, g, r)
			runOracleCase(t, g, r, 2)
		})
		if t.Failed() {
			return
		}
	}
}

func TestOracleSRLG(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	sp := randSpec{maxNodes: 8, maxLinks: 13, srlg: true, capacity: true}
	for i := range 6000 {
		g := randomGraph(rng, sp)
		r := randomRequest(rng, g, sp)
		t.Run("", func(t *testing.T) {
			defer reportCase(t, i, g, r)
			runOracleCase(t, g, r, 2)
		})
		if t.Failed() {
			return
		}
	}
}

func TestOracleKPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	sp := randSpec{maxNodes: 7, maxLinks: 12, srlg: true, capacity: true}
	for i := range 3000 {
		g := randomGraph(rng, sp)
		r := randomRequest(rng, g, sp)
		k := 1 + rng.IntN(4)
		t.Run("", func(t *testing.T) {
			defer reportCase(t, i, g, r)
			runOracleCase(t, g, r, k)
		})
		if t.Failed() {
			return
		}
	}
}

func reportCase(t *testing.T, i int, g *Graph, r oracleReq) {
	if !t.Failed() {
		return
	}
	t.Logf("case %d: %d nodes, from %d to %d, opts %+v", i, g.NumNodes(), r.from, r.to, r.opt)
	for l, lk := range g.links {
		t.Logf("  link %d: %d-%d cost %d cap %d res %.1f srlg %v", l, lk.A, lk.B, lk.Cost, lk.Capacity, lk.Reservable, lk.SRLG)
	}
}
