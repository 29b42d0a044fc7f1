package disjoint

import "container/heap"

// Exact SRLG-disjoint pair search: best-first branch and bound over roles.
//
// The two paths get roles, P and Q. A search node forbids some links and
// routers to P and some to Q. Its lower bound is the larger of
//   (i)  SP(G − forbidden to P) + SP(G − forbidden to Q), and
//   (ii) the min-sum disjoint pair of G − (forbidden to both);
// if the two shortest paths of (i), or the pair of (ii) in some role
// assignment, are compatible (disjoint and sharing no SRLG) they are the
// node's optimum. Otherwise the shortest paths of (i) conflict on some SRLG,
// link or router x, and every feasible pair has x on at most one path: the
// children are "P avoids x" and "Q avoids x" (only the first while the roles
// are still symmetric). Each branch forbids something the role's path used,
// so the search terminates; it is exact unless the work limit stops it.

type roleSet struct {
	links []int32 // forbidden links (duplicates allowed)
	nodes []int32 // forbidden routers
}

type bbNode struct {
	lb   int64
	p, q roleSet
	sym  bool
	seq  int // insertion order: deterministic tie-break
}

type bbHeap []*bbNode

func (h bbHeap) Len() int { return len(h) }
func (h bbHeap) Less(i, j int) bool {
	if h[i].lb != h[j].lb {
		return h[i].lb < h[j].lb
	}
	return h[i].seq < h[j].seq
}
func (h bbHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *bbHeap) Push(x any)   { *h = append(*h, x.(*bbNode)) }
func (h *bbHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (q *query) applyRole(r *roleSet, d int32) {
	for _, l := range r.links {
		q.maskLink(l, d)
	}
	for _, v := range r.nodes {
		q.maskNode(v, d)
	}
}

// roleSP is the shortest path avoiding what r forbids.
func (q *query) roleSP(src, dst int32, r *roleSet) ([]int32, int64, bool) {
	q.applyRole(r, 1)
	d, ok := q.spt(src, dst)
	var arcs []int32
	if ok {
		arcs = q.sptArcs(src, dst, nil)
	}
	q.applyRole(r, -1)
	return arcs, d, ok
}

// srlgPair returns the cheapest compatible pair in the current masked graph
// costing less than ub.
func (q *query) srlgPair(src, dst int32, ub int64) ([][]int32, int64, bool, error) {
	var best [][]int32
	bestCost := ub
	offer := func(a, b []int32) {
		if c := arcsCost(q.g, [][]int32{a, b}); c < bestCost && q.compatible(a, b) {
			best, bestCost = [][]int32{a, b}, c
		}
	}
	h := &bbHeap{{sym: true}}
	seq := 0
	for h.Len() > 0 {
		nd := heap.Pop(h).(*bbNode)
		if nd.lb >= bestCost {
			break // best-first: every open node is at least as bad
		}
		if q.outOfBudget() {
			break
		}
		pr, cp, ok := q.roleSP(src, dst, &nd.p)
		if !ok {
			continue
		}
		qr, cq, ok := pr, cp, true
		if !nd.sym {
			if qr, cq, ok = q.roleSP(src, dst, &nd.q); !ok {
				continue
			}
		}
		lb := max(nd.lb, cp+cq)
		if lb >= bestCost {
			continue
		}
		if q.compatible(pr, qr) {
			offer(pr, qr)
			continue
		}
		// (ii): the min-sum pair where only what both roles forbid is gone.
		both := intersectRoles(&nd.p, &nd.q, nd.sym)
		q.applyRole(&both, 1)
		flow, _, err := q.minSum(src, dst, 2, false)
		q.applyRole(&both, -1)
		if err != nil {
			return nil, 0, false, err
		}
		if len(flow) < 2 {
			continue
		}
		lb = max(lb, arcsCost(q.g, flow))
		if lb >= bestCost {
			continue
		}
		if q.compatible(flow[0], flow[1]) &&
			(q.fits(flow[0], &nd.p) && q.fits(flow[1], &nd.q) || q.fits(flow[1], &nd.p) && q.fits(flow[0], &nd.q)) {
			offer(flow[0], flow[1])
			continue
		}
		// Incumbents: keep one relaxed path, route the other around it.
		q.tryAround(src, dst, pr, &nd.q, offer)
		if !nd.sym {
			q.tryAround(src, dst, qr, &nd.p, offer)
		}
		if lb >= bestCost {
			continue
		}
		x := q.firstConflict(pr, qr)
		for side := 0; side < 2; side++ {
			if side == 1 && nd.sym {
				break
			}
			child := &bbNode{lb: lb, p: nd.p, q: nd.q}
			if nd.sym {
				child.q = nd.p
			}
			target := &child.p
			if side == 1 {
				target = &child.q
			}
			*target = q.with(*target, x)
			seq++
			child.seq = seq
			heap.Push(h, child)
		}
	}
	return best, bestCost, best != nil, nil
}

// tryAround offers the pair (fixed, shortest path avoiding fixed's links,
// SRLGs and routers plus what r forbids).
func (q *query) tryAround(src, dst int32, fixed []int32, r *roleSet, offer func(a, b []int32)) {
	if q.outOfBudget() {
		return
	}
	around := roleSet{links: q.conflicts(fixed, append([]int32(nil), r.links...)), nodes: r.nodes}
	if q.mode == NodeDisjoint {
		around.nodes = append(append([]int32(nil), r.nodes...), q.innerNodes(fixed)...)
	}
	if other, _, ok := q.roleSP(src, dst, &around); ok {
		offer(fixed, other)
	}
}

func (q *query) innerNodes(arcs []int32) []int32 {
	var out []int32
	for _, a := range arcs[:max(len(arcs)-1, 0)] {
		out = append(out, q.g.arcHead(a))
	}
	return out
}

// conflictItem is what two paths share: an SRLG, a link or a router.
type conflictItem struct {
	kind byte // 'g', 'l' or 'n'
	id   int32
}

// with returns r forbidding x as well (a copy: siblings share parents).
func (q *query) with(r roleSet, x conflictItem) roleSet {
	out := roleSet{links: append([]int32(nil), r.links...), nodes: append([]int32(nil), r.nodes...)}
	switch x.kind {
	case 'g':
		out.links = append(out.links, q.g.srlgLinks[x.id]...)
	case 'n':
		out.nodes = append(out.nodes, x.id)
	default:
		out.links = append(out.links, x.id)
	}
	return out
}

// firstConflict returns what a and b share, preferring SRLGs (they forbid
// many links at once), then links, then routers; in path order of a.
func (q *query) firstConflict(a, b []int32) conflictItem {
	g := q.g
	groupsB := map[int32]bool{}
	linksB := map[int32]bool{}
	for _, x := range b {
		linksB[x>>1] = true
		for _, gr := range g.lsrlg[x>>1] {
			groupsB[gr] = true
		}
	}
	for _, x := range a {
		for _, gr := range g.lsrlg[x>>1] {
			if groupsB[gr] {
				return conflictItem{'g', gr}
			}
		}
	}
	for _, x := range a {
		if linksB[x>>1] {
			return conflictItem{'l', x >> 1}
		}
	}
	inner := map[int32]bool{}
	for _, v := range q.innerNodes(b) {
		inner[v] = true
	}
	for _, v := range q.innerNodes(a) {
		if inner[v] {
			return conflictItem{'n', v}
		}
	}
	return conflictItem{'l', a[0] >> 1} // unreachable when a and b conflict
}

// compatible reports whether two paths may form a pair.
func (q *query) compatible(a, b []int32) bool {
	g := q.g
	links := map[int32]bool{}
	groups := map[int32]bool{}
	for _, x := range a {
		links[x>>1] = true
		for _, gr := range g.lsrlg[x>>1] {
			groups[gr] = true
		}
	}
	for _, x := range b {
		if links[x>>1] {
			return false
		}
		for _, gr := range g.lsrlg[x>>1] {
			if groups[gr] {
				return false
			}
		}
	}
	if q.mode == NodeDisjoint {
		inner := map[int32]bool{}
		for _, v := range q.innerNodes(a) {
			inner[v] = true
		}
		for _, v := range q.innerNodes(b) {
			if inner[v] {
				return false
			}
		}
	}
	return true
}

// fits reports whether path arcs avoids everything r forbids.
func (q *query) fits(arcs []int32, r *roleSet) bool {
	if len(r.links) == 0 && len(r.nodes) == 0 {
		return true
	}
	bad := map[int32]bool{}
	for _, l := range r.links {
		bad[l] = true
	}
	for _, a := range arcs {
		if bad[a>>1] {
			return false
		}
	}
	badN := map[int32]bool{}
	for _, v := range r.nodes {
		badN[v] = true
	}
	for _, v := range q.innerNodes(arcs) {
		if badN[v] {
			return false
		}
	}
	return true
}

func intersectRoles(p, r *roleSet, sym bool) roleSet {
	if sym {
		return *p
	}
	inter := func(a, b []int32) []int32 {
		in := map[int32]bool{}
		for _, x := range a {
			in[x] = true
		}
		var out []int32
		for _, x := range b {
			if in[x] {
				out = append(out, x)
				delete(in, x)
			}
		}
		return out
	}
	return roleSet{links: inter(p.links, r.links), nodes: inter(p.nodes, r.nodes)}
}
