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

// inNode and outNode map a graph node to its search-network node(s).
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
	if st := &q.s.ns[x]; st.potMark == q.s.potGen {
		return st.pot
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
	if k == 1 {
		if _, ok := q.spt(src, dst); !ok {
			if wantCut {
				cut = q.cutFromSPT()
			}
			return nil, cut, nil
		}
		return [][]int32{q.sptArcs(src, dst, nil)}, nil, nil
	}
	// The first path comes from a search backwards from the target: its
	// distances to the target, h, give the potential D − min(h, D), which
	// keeps reduced costs non-negative, makes the first path's arcs (and
	// their reversals) cost 0, and steers the residual searches towards the
	// target like an A* heuristic.
	D, ok := q.rspt(src, dst)
	if !ok {
		if wantCut {
			q.spt(src, dst) // the forward reachable set gives the cut
			cut = q.cutFromSPT()
		}
		return nil, cut, nil
	}
	first := q.rsptArcs(src, dst)
	defer q.resetFlow()
	s.nextPotGen()
	for _, v := range s.popped {
		p := D - s.ns[v].dist
		if q.mode == NodeDisjoint {
			s.ns[2*v].pot, s.ns[2*v].potMark = p, s.potGen
			s.ns[2*v+1].pot, s.ns[2*v+1].potMark = p, s.potGen
		} else {
			s.ns[v].pot, s.ns[v].potMark = p, s.potGen
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
			st := &s.ns[x]
			st.pot = q.pot(x) + st.dist - D
			st.potMark = s.potGen
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
	reach, done := s.nextGen()
	s.popped = s.popped[:0]
	s.heap = s.heap[:0]
	ns := s.ns
	ns[xs].dist, ns[xs].prev, ns[xs].mark = 0, -1, reach
	s.hpush(hitem{0, xs})
	potGen := s.potGen
	flow, split := s.flow, s.split
	adjOff, adj := g.adjOff, g.adj
	masked, capped := q.masks > 0, q.rate > 0
	nodeMode := q.mode == NodeDisjoint
	m2 := int32(2 * len(g.links))
	for len(s.heap) > 0 {
		it := s.hpop()
		x := it.v
		sx := &ns[x]
		sx.mark = done
		s.popped = append(s.popped, x)
		if x == xt {
			return it.d, true
		}
		base := it.d
		if sx.potMark == potGen {
			base += sx.pot
		}
		if !nodeMode {
			for _, e := range adj[adjOff[x]:adjOff[x+1]] {
				y := e.to
				sy := &ns[y]
				if sy.mark == done {
					continue
				}
				a := e.arc
				if masked && (s.linkOff[a>>1] != 0 || s.nodeOff[y] != 0) {
					continue
				}
				var nd int64
				var code int32
				switch {
				case flow[a^1] != 0: // y→x carries flow: cancel it
					nd, code = base-int64(e.cost), (a^1)<<1|1
				case flow[a] == 0 && (!capped || q.arcUsable(a)):
					nd, code = base+int64(e.cost), a<<1
				default:
					continue
				}
				if sy.potMark == potGen {
					nd -= sy.pot
				}
				if sy.mark != reach {
					sy.dist, sy.prev, sy.mark = nd, code, reach
					s.hpush(hitem{nd, y})
				} else if nd < sy.dist {
					sy.dist, sy.prev = nd, code
					s.hdecrease(hitem{nd, y})
				}
			}
			continue
		}
		v := x >> 1
		if x&1 == 0 { // v_in
			if v != src && v != dst && split[v] == 0 {
				q.relax(2*v+1, base, (m2+v)<<1)
			}
			for _, e := range adj[adjOff[v]:adjOff[v+1]] {
				if flow[e.arc^1] != 0 { // u→v carries flow: cancel it, to u_out
					q.relax(2*e.to+1, base-int64(e.cost), (e.arc^1)<<1|1)
				}
			}
			continue
		}
		// v_out
		if split[v] != 0 {
			q.relax(2*v, base, (m2+v)<<1|1)
		}
		for _, e := range adj[adjOff[v]:adjOff[v+1]] {
			u, a := e.to, e.arc
			if u == src || flow[a] != 0 {
				continue
			}
			if masked && (s.linkOff[a>>1] != 0 || s.nodeOff[u] != 0) {
				continue
			}
			if capped && !q.arcUsable(a) {
				continue
			}
			q.relax(2*u, base+int64(e.cost), a<<1)
		}
	}
	return 0, false
}

// relax offers y the reduced distance nd − pot(y) through arc code.
func (q *query) relax(y int32, nd int64, code int32) {
	s := q.s
	sy := &s.ns[y]
	reach := 2 * s.gen
	if sy.mark == reach+1 {
		return
	}
	if sy.potMark == s.potGen {
		nd -= sy.pot
	}
	if sy.mark != reach {
		sy.dist, sy.prev, sy.mark = nd, code, reach
		s.hpush(hitem{nd, y})
	} else if nd < sy.dist {
		sy.dist, sy.prev = nd, code
		s.hdecrease(hitem{nd, y})
	}
}

// augment pushes one unit along the path found by residualSearch.
func (q *query) augment(xs, xt int32) error {
	s, g := q.s, q.g
	m2 := int32(2 * len(g.links))
	for x, steps := xt, 0; x != xs; steps++ {
		if steps > len(s.ns)+1 {
			return fmt.Errorf("%w: augmenting path does not end", ErrInternal)
		}
		code := s.ns[x].prev
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
			for _, e := range g.adj[g.adjOff[v]:g.adjOff[v+1]] {
				if s.flow[e.arc] == 1 {
					a = e.arc
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
