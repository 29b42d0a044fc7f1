package disjoint

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"slices"
)

// SRLG-disjoint search: exact branch and bound on the cheapest path.
//
// In an optimal set of k paths let P1 be the cheapest; the set costs at
// least k·cost(P1). Enumerating candidate first paths P1 in order of cost
// (Yen's k shortest simple paths) and, for each, solving the (k−1)-path
// problem on the graph without P1's links, without every link that shares an
// SRLG with P1 (and, node-disjoint, without P1's routers) finds the optimum;
// the enumeration stops once k·cost(P1) reaches the best set found. Every
// subproblem is first bounded below by the min-sum flow that ignores SRLGs:
// if that is not cheaper than the incumbent it is pruned, and if its paths
// happen to share no SRLG it is the subproblem's optimum. The work is bounded
// by Options.SearchLimit shortest-path searches; past it the best set found
// is returned and flagged heuristic.

func (q *query) outOfBudget() bool {
	if q.work >= q.limit {
		q.limited = true
	}
	return q.limited
}

// srlgSearch returns the cheapest k mutually disjoint, SRLG-disjoint paths
// in the current masked graph that cost less than ub.
func (q *query) srlgSearch(src, dst int32, k int, ub int64) ([][]int32, int64, bool, error) {
	g := q.g
	if q.outOfBudget() {
		return nil, 0, false, nil
	}
	if k == 1 {
		d, ok := q.spt(src, dst)
		if !ok || d >= ub {
			return nil, 0, false, nil
		}
		return [][]int32{q.sptArcs(src, dst, nil)}, d, true, nil
	}
	if k == 2 {
		return q.srlgPair(src, dst, ub)
	}
	lb, _, err := q.minSum(src, dst, k, false)
	if err != nil || len(lb) < k {
		return nil, 0, false, err
	}
	lbCost := arcsCost(g, lb)
	if lbCost >= ub {
		return nil, 0, false, nil
	}
	if len(q.sharedGroups(lb)) == 0 {
		return lb, lbCost, true, nil
	}
	best, bestCost := [][]int32(nil), ub
	y := newYen(q, src, dst)
	var masked []int32
	for {
		p1, ok := y.next()
		if !ok || int64(k)*p1.cost >= bestCost {
			break
		}
		masked = q.conflicts(p1.arcs, masked[:0])
		for _, l := range masked {
			q.maskLink(l, 1)
		}
		var inner []int32
		if q.mode == NodeDisjoint {
			for _, a := range p1.arcs[:len(p1.arcs)-1] {
				v := g.arcHead(a)
				inner = append(inner, v)
				q.maskNode(v, 1)
			}
		}
		sub, subCost, ok, err := q.srlgSearch(src, dst, k-1, bestCost-p1.cost)
		for _, l := range masked {
			q.maskLink(l, -1)
		}
		for _, v := range inner {
			q.maskNode(v, -1)
		}
		if err != nil {
			return nil, 0, false, err
		}
		if ok && p1.cost+subCost < bestCost {
			best = append([][]int32{p1.arcs}, sub...)
			bestCost = p1.cost + subCost
		}
		if q.limited {
			break
		}
	}
	return best, bestCost, best != nil, nil
}

// conflicts lists the links a second path may not use: the path's own links
// and every link sharing an SRLG with one of them (duplicates allowed).
func (q *query) conflicts(arcs []int32, out []int32) []int32 {
	g := q.g
	for _, a := range arcs {
		l := a >> 1
		out = append(out, l)
		for _, gr := range g.lsrlg[l] {
			out = append(out, g.srlgLinks[gr]...)
		}
	}
	return out
}

// yen enumerates simple src→dst paths in order of cost (then hop count,
// then link indices) in the current masked graph.
type yen struct {
	q        *query
	src, dst int32
	found    []yenPath
	cands    candHeap
	seen     map[string]struct{}
	started  bool
}

type yenPath struct {
	arcs []int32
	cost int64
}

func newYen(q *query, src, dst int32) *yen {
	return &yen{q: q, src: src, dst: dst, seen: map[string]struct{}{}}
}

func arcsKey(arcs []int32) string {
	b := make([]byte, 0, 4*len(arcs))
	for _, a := range arcs {
		b = binary.LittleEndian.AppendUint32(b, uint32(a))
	}
	return string(b)
}

func (y *yen) next() (yenPath, bool) {
	q, g := y.q, y.q.g
	if !y.started {
		y.started = true
		if q.outOfBudget() {
			return yenPath{}, false
		}
		d, ok := q.spt(y.src, y.dst)
		if !ok {
			return yenPath{}, false
		}
		p := yenPath{arcs: slices.Clone(q.sptArcs(y.src, y.dst, nil)), cost: d}
		y.found = append(y.found, p)
		y.seen[arcsKey(p.arcs)] = struct{}{}
		return p, true
	}
	last := y.found[len(y.found)-1]
	var rootCost int64
	var masked []int32
	for i, spur := 0, y.src; i < len(last.arcs); i++ {
		if q.outOfBudget() {
			break
		}
		masked = masked[:0]
		for _, p := range y.found {
			if len(p.arcs) > i && slices.Equal(p.arcs[:i], last.arcs[:i]) {
				masked = append(masked, p.arcs[i]>>1)
			}
		}
		for _, l := range masked {
			q.maskLink(l, 1)
		}
		for _, a := range last.arcs[:i] {
			q.maskNode(g.arcTail(a), 1)
		}
		d, ok := q.spt(spur, y.dst)
		if ok {
			tail := q.sptArcs(spur, y.dst, nil)
			arcs := make([]int32, 0, i+len(tail))
			arcs = append(append(arcs, last.arcs[:i]...), tail...)
			if key := arcsKey(arcs); !mapHas(y.seen, key) {
				y.seen[key] = struct{}{}
				heap.Push(&y.cands, yenPath{arcs: arcs, cost: rootCost + d})
			}
		}
		for _, l := range masked {
			q.maskLink(l, -1)
		}
		for _, a := range last.arcs[:i] {
			q.maskNode(g.arcTail(a), -1)
		}
		rootCost += g.lcost[last.arcs[i]>>1]
		spur = g.arcHead(last.arcs[i])
	}
	if len(y.cands) == 0 {
		return yenPath{}, false
	}
	p := heap.Pop(&y.cands).(yenPath)
	y.found = append(y.found, p)
	return p, true
}

func mapHas(m map[string]struct{}, k string) bool { _, ok := m[k]; return ok }

type candHeap []yenPath

func (h candHeap) Len() int { return len(h) }
func (h candHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.cost != b.cost {
		return a.cost < b.cost
	}
	if len(a.arcs) != len(b.arcs) {
		return len(a.arcs) < len(b.arcs)
	}
	return slices.Compare(a.arcs, b.arcs) < 0
}
func (h candHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *candHeap) Push(x any)   { *h = append(*h, x.(yenPath)) }
func (h *candHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// srlgError explains why no SRLG-disjoint set was found.
func (q *query) srlgError(src, dst int32, k int, shared []int32) error {
	g := q.g
	names := make([]string, len(shared))
	for i, gr := range shared {
		names[i] = g.srlgNames[gr]
	}
	e := &NoPairError{
		From: g.nodeNames[src], To: g.nodeNames[dst], Want: k, Found: 1,
		Constraint: ConstraintSRLG, Cut: names,
	}
	if q.limited {
		e.Constraint = ConstraintSearchLimit
		e.Reason = fmt.Sprintf("no %d %s paths sharing no SRLG were found within the search limit "+
			"(%d shortest-path searches); the cheapest %d %s paths share SRLG %s, and a set without shared risk may still exist",
			k, q.mode, q.limit, k, q.mode, joinNames(names, 5))
		e.Hint = "raise the search limit, or accept shared risk (ignore SRLGs)"
		return e
	}
	e.Reason = fmt.Sprintf("%d %s paths exist, but every such set shares a shared-risk link group; the cheapest shares SRLG %s",
		k, q.mode, joinNames(names, 5))
	e.Hint = "accept shared risk (ignore SRLGs), or add a link outside " + joinNames(names, 5)
	return e
}
