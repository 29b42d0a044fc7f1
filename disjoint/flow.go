package disjoint

import "fmt"

// This file is the min-sum core: successive shortest paths on the residual
// network with Johnson potentials (Suurballe/Bhandari generalised to k).
//
// Search network. Link mode: the nodes of the graph; link l gives arcs 2l
// (A→B) and 2l+1 (B→A), each of capacity 1. Node mode: node v is split into
// v_in = 2v and v_out = 2v+1 joined by a split arc of capacity 1 (arc id
// 2m+v); link arcs go from u_out to v_in. The source starts at s_out, the
// target is t_in, and s and t have no split arc.
//
// Arc codes in prev: arc<<1 for a forward traversal, arc<<1|1 for a
// backward one (cancelling flow).

// searchNode maps a graph node to its search-network node.
func (q *query) inNode(v int32) int32 {
	if q.mode == NodeDisjoint {
		return 2 * v
	}
	return v
}

func (q *query) outNode(v int32) int32 {
	if q.mode == NodeDisjoint {
		return 2*v + 1
	}
	return v
}

func (q *query) pot(x int32) int64 {
	if q.s.potStp[x] == q.s.potGen {
		return q.s.potAdj[x]
	}
	return 0
}

// minSum finds up to k disjoint src→dst paths of minimum total cost in the
// current (masked, capacity-filtered) graph, as arc lists. If fewer than k
// exist it returns the ones that do, and cut (when wantCut) describes the
// minimum cut that limits them.
func (q *query) minSum(src, dst int32, k int, wantCut bool) (paths [][]int32, cut *cutInfo, err error) {
	s, g := q.s, q.g
	q.srcNode = src
	D, ok := q.spt(src, dst)
	if !ok {
		if wantCut {
			cut = q.cutFromSPT()
		}
		return nil, cut, nil
	}
	first := q.sptArcs(src, dst, nil)
	if k == 1 {
		return [][]int32{first}, nil, nil
	}
	defer q.resetFlow()
	// Potentials from the first search: min(d(v), D) for every node.
	s.nextPotGen()
	for _, v := range s.popped {
		adj := s.dist[v] - D
		if q.mode == NodeDisjoint {
			s.potStp[2*v], s.potAdj[2*v] = s.potGen, adj
			s.potStp[2*v+1], s.potAdj[2*v+1] = s.potGen, adj
		} else {
			s.potStp[v], s.potAdj[v] = s.potGen, adj
		}
	}
	for i, a := range first {
		l := a >> 1
		s.flow[a] = 1
		s.touched = append(s.touched, l)
		if q.mode == NodeDisjoint && i < len(first)-1 {
			v := g.arcHead(a)
			s.split[v] = 1
			s.splits = append(s.splits, v)
		}
	}
	xs, xt := q.outNode(src), q.inNode(dst)
	found := 1
	for ; found < k; found++ {
		D, ok := q.residualSearch(xs, xt, src, dst)
		if !ok {
			break
		}
		for _, x := range s.popped {
			s.potAdj[x] = q.pot(x) + s.dist[x] - D
			s.potStp[x] = s.potGen
		}
		if err := q.augment(xs, xt); err != nil {
			return nil, nil, err
		}
	}
	if found < k && wantCut {
		cut = q.cutFromResidual()
	}
	paths, err = q.decompose(src, dst, found)
	return paths, cut, err
}

func (q *query) resetFlow() {
	s := q.s
	for _, l := range s.touched {
		s.flow[2*l], s.flow[2*l+1] = 0, 0
	}
	for _, v := range s.splits {
		s.split[v] = 0
	}
	s.touched, s.splits = s.touched[:0], s.splits[:0]
}

// residualSearch is Dijkstra on the residual network with reduced costs,
// from xs until xt is settled. src and dst are the graph nodes of the ends.
func (q *query) residualSearch(xs, xt, src, dst int32) (int64, bool) {
	s, g := q.s, q.g
	q.work++
	gen := s.nextGen()
	s.popped = s.popped[:0]
	h := s.heap[:0]
	s.stamp[xs], s.dist[xs], s.prev[xs] = gen, 0, -1
	h = heapPush(h, hitem{0, xs})
	stamp, done, dist, prev := s.stamp, s.done, s.dist, s.prev
	potStp, potAdj, potGen := s.potStp, s.potAdj, s.potGen
	flow, split := s.flow, s.split
	adjOff, adjArc, adjTo, adjCost := g.adjOff, g.adjArc, g.adjTo, g.adjCost
	masked, capped := q.masks > 0, q.rate > 0
	nodeMode := q.mode == NodeDisjoint
	m2 := int32(2 * len(g.links))
	for len(h) > 0 {
		var it hitem
		it, h = heapPop(h)
		x := it.v
		if done[x] == gen {
			continue
		}
		done[x] = gen
		s.popped = append(s.popped, x)
		if x == xt {
			s.heap = h
			return it.d, true
		}
		base := it.d
		if potStp[x] == potGen {
			base += potAdj[x]
		}
		// relax inlined below: y, nd (before subtracting pot(y)), code.
		if !nodeMode {
			for i := adjOff[x]; i < adjOff[x+1]; i++ {
				y := adjTo[i]
				if done[y] == gen {
					continue
				}
				a := adjArc[i]
				if masked && (s.linkOff[a>>1] != 0 || s.nodeOff[y] != 0) {
					continue
				}
				var nd int64
				var code int32
				switch {
				case flow[a^1] != 0:
					nd, code = base-adjCost[i], (a^1)<<1|1
				case flow[a] == 0 && (!capped || q.arcUsable(a)):
					nd, code = base+adjCost[i], a<<1
				default:
					continue
				}
				if potStp[y] == potGen {
					nd -= potAdj[y]
				}
				if stamp[y] != gen || nd < dist[y] {
					stamp[y], dist[y], prev[y] = gen, nd, code
					h = heapPush(h, hitem{nd, y})
				}
			}
			continue
		}
		v := x >> 1
		if x&1 == 0 { // v_in
			if v != src && v != dst && split[v] == 0 {
				h = q.relax(h, 2*v+1, base, (m2+v)<<1)
			}
			for i := adjOff[v]; i < adjOff[v+1]; i++ {
				a := adjArc[i]
				if flow[a^1] != 0 { // u→v carries flow: cancel it, to u_out
					h = q.relax(h, 2*adjTo[i]+1, base-adjCost[i], (a^1)<<1|1)
				}
			}
			continue
		}
		// v_out
		if split[v] != 0 {
			h = q.relax(h, 2*v, base, (m2+v)<<1|1)
		}
		for i := adjOff[v]; i < adjOff[v+1]; i++ {
			u := adjTo[i]
			a := adjArc[i]
			if u == src || flow[a] != 0 {
				continue
			}
			if masked && (s.linkOff[a>>1] != 0 || s.nodeOff[u] != 0) {
				continue
			}
			if capped && !q.arcUsable(a) {
				continue
			}
			h = q.relax(h, 2*u, base+adjCost[i], a<<1)
		}
	}
	s.heap = h
	return 0, false
}

// relax offers y the reduced distance nd − pot(y) through arc code.
func (q *query) relax(h []hitem, y int32, nd int64, code int32) []hitem {
	s := q.s
	if s.done[y] == s.gen {
		return h
	}
	if s.potStp[y] == s.potGen {
		nd -= s.potAdj[y]
	}
	if s.stamp[y] != s.gen || nd < s.dist[y] {
		s.stamp[y], s.dist[y], s.prev[y] = s.gen, nd, code
		h = heapPush(h, hitem{nd, y})
	}
	return h
}

// augment pushes one unit along the path found by residualSearch.
func (q *query) augment(xs, xt int32) error {
	s, g := q.s, q.g
	m2 := int32(2 * len(g.links))
	for x, steps := xt, 0; x != xs; steps++ {
		if steps > len(s.stamp)+1 {
			return fmt.Errorf("%w: augmenting path does not end", ErrInternal)
		}
		code := s.prev[x]
		arc, back := code>>1, code&1 == 1
		switch {
		case arc < m2 && back:
			s.flow[arc] = 0
			x = q.inNode(g.arcHead(arc))
		case arc < m2:
			s.flow[arc] = 1
			s.touched = append(s.touched, arc>>1)
			x = q.outNode(g.arcTail(arc))
		case back:
			v := arc - m2
			s.split[v] = 0
			x = 2*v + 1
		default:
			v := arc - m2
			s.split[v] = 1
			s.splits = append(s.splits, v)
			x = 2 * v
		}
	}
	return nil
}

// decompose turns the flow into k simple paths. A link carrying flow in both
// directions is cancelled first (it never helps: its cost is ≥ 0); flow
// cycles met on the way are skipped (their cost is 0 in an optimal flow).
func (q *query) decompose(src, dst int32, k int) ([][]int32, error) {
	s, g := q.s, q.g
	if q.mode == LinkDisjoint {
		for _, l := range s.touched {
			if s.flow[2*l] != 0 && s.flow[2*l+1] != 0 {
				s.flow[2*l], s.flow[2*l+1] = 0, 0
			}
		}
	}
	paths := make([][]int32, 0, k)
	var nodes []int32
	for p := 0; p < k; p++ {
		wg := s.nextWalkGen()
		var arcs []int32
		nodes = append(nodes[:0], src)
		s.walkStp[src], s.walkPos[src] = wg, 0
		for v, steps := src, 0; v != dst; steps++ {
			if steps > 2*len(g.links)+1 {
				return nil, fmt.Errorf("%w: flow decomposition does not end", ErrInternal)
			}
			a := int32(-1)
			for i := g.adjOff[v]; i < g.adjOff[v+1]; i++ {
				if s.flow[g.adjArc[i]] == 1 {
					a = g.adjArc[i]
					break
				}
			}
			if a < 0 {
				return nil, fmt.Errorf("%w: flow is not conserved at %s", ErrInternal, g.nodeNames[v])
			}
			s.flow[a] = 2 // consumed
			u := g.arcHead(a)
			if q.mode == NodeDisjoint && u != dst {
				if s.split[u] != 1 {
					return nil, fmt.Errorf("%w: split flow missing at %s", ErrInternal, g.nodeNames[u])
				}
				s.split[u] = 2
			}
			if s.walkStp[u] == wg { // cycle: cut it out
				pos := s.walkPos[u]
				for _, w := range nodes[pos+1:] {
					s.walkStp[w] = 0
				}
				nodes, arcs = nodes[:pos+1], arcs[:pos]
				v = u
				continue
			}
			arcs = append(arcs, a)
			nodes = append(nodes, u)
			s.walkStp[u], s.walkPos[u] = wg, int32(len(nodes)-1)
			v = u
		}
		paths = append(paths, arcs)
	}
	return paths, nil
}
