package disjoint

// scratch holds the per-query working arrays. Graphs keep them in a
// sync.Pool so that a query allocates almost nothing but its result.
// ns is indexed by search node and has room for the split network of
// node-disjoint queries (2 × nodes): node v is 2v (in) and 2v+1 (out) there.
type scratch struct {
	gen    uint32 // search generation: see nstate.mark
	potGen uint32
	ns     []nstate
	heap   []hitem
	popped []int32

	flow    []uint8 // per arc: 1 carries flow
	split   []uint8 // per node: the split arc carries flow
	touched []int32 // links whose arcs may carry flow
	splits  []int32 // nodes whose split arcs may carry flow

	linkOff []int32 // > 0: link masked
	nodeOff []int32 // > 0: node masked

	walkGen uint32
	walkStp []uint32
	walkPos []int32

	linkGen uint32
	linkStp []uint32 // per link, for validation

	useGen uint32   // < 1<<30
	use    []uint32 // per link: useGen<<2 | usable A→B | usable B→A<<1
}

// nstate is the state of one search node, kept together so that a
// relaxation touches one cache line.
type nstate struct {
	dist    int64  // tentative or final distance (reduced, in residual searches)
	pot     int64  // potential minus the sum of the round distances
	prev    int32  // arc code that reached the node
	mark    uint32 // 2·gen: reached (in the heap); 2·gen+1: settled
	potMark uint32 // pot is valid iff potMark == potGen
	pos     int32  // position in the heap while reached
}

func newScratch(n, m int) *scratch {
	return &scratch{
		flow:    make([]uint8, 2*m),
		split:   make([]uint8, n),
		linkOff: make([]int32, m),
		nodeOff: make([]int32, n),
		walkStp: make([]uint32, n),
		walkPos: make([]int32, n),
		linkStp: make([]uint32, m),
	}
}

// ensure grows the search-node array to size entries.
func (s *scratch) ensure(size int) {
	if len(s.ns) >= size {
		return
	}
	s.ns = make([]nstate, size)
	s.gen, s.potGen = 0, 0
}

// nextGen starts a search; it returns the marks of reached and settled nodes.
func (s *scratch) nextGen() (reach, done uint32) {
	s.gen++
	if s.gen >= 1<<31-1 {
		for i := range s.ns {
			s.ns[i].mark = 0
		}
		s.gen = 1
	}
	return 2 * s.gen, 2*s.gen + 1
}

func (s *scratch) settled(x int32) bool { return s.ns[x].mark == 2*s.gen+1 }

func (s *scratch) nextPotGen() {
	s.potGen++
	if s.potGen == 0 {
		for i := range s.ns {
			s.ns[i].potMark = 0
		}
		s.potGen = 1
	}
}

func (s *scratch) nextUseGen(m int) {
	if len(s.use) < m {
		s.use = make([]uint32, m)
		s.useGen = 0
	}
	s.useGen++
	if s.useGen >= 1<<30 {
		clear(s.use)
		s.useGen = 1
	}
}

func (s *scratch) nextLinkGen() uint32 {
	s.linkGen++
	if s.linkGen == 0 {
		clear(s.linkStp)
		s.linkGen = 1
	}
	return s.linkGen
}

func (s *scratch) nextWalkGen() uint32 {
	s.walkGen++
	if s.walkGen == 0 {
		clear(s.walkStp)
		s.walkGen = 1
	}
	return s.walkGen
}

// hitem is a heap entry; the heap orders by (d, v) so ties are broken by
// node index and results are deterministic.
type hitem struct {
	d int64
	v int32
}

func less(a, b hitem) bool { return a.d < b.d || (a.d == b.d && a.v < b.v) }

// The heap is an indexed 4-ary heap with decrease-key: shallower than a
// binary heap, the four children share a cache line, and it never holds
// stale entries. nstate.pos is a node's position in it.

func (s *scratch) siftUp(i int, it hitem) {
	h, ns := s.heap, s.ns
	for i > 0 {
		p := (i - 1) / 4
		if !less(it, h[p]) {
			break
		}
		h[i] = h[p]
		ns[h[i].v].pos = int32(i)
		i = p
	}
	h[i] = it
	ns[it.v].pos = int32(i)
}

// hpush inserts a node that is not in the heap.
func (s *scratch) hpush(it hitem) {
	s.heap = append(s.heap, it)
	s.siftUp(len(s.heap)-1, it)
}

// hdecrease lowers the key of a node that is in the heap.
func (s *scratch) hdecrease(it hitem) { s.siftUp(int(s.ns[it.v].pos), it) }

func (s *scratch) hpop() hitem {
	h, ns := s.heap, s.ns
	top := h[0]
	n := len(h) - 1
	last := h[n]
	h = h[:n]
	s.heap = h
	if n == 0 {
		return top
	}
	i := 0
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		best := c
		end := min(c+4, n)
		for j := c + 1; j < end; j++ {
			if less(h[j], h[best]) {
				best = j
			}
		}
		if !less(h[best], last) {
			break
		}
		h[i] = h[best]
		ns[h[i].v].pos = int32(i)
		i = best
	}
	h[i] = last
	ns[last.v].pos = int32(i)
	return top
}

// query is the state of one request.
type query struct {
	g        *Graph
	s        *scratch
	mode     Mode
	rate     uint64
	reserved func(int, bool) uint64
	dir      Direction
	masks    int   // outstanding mask increments; 0 skips the mask checks
	srcNode  int32 // source of the current flow problem
	work     int   // shortest-path searches run so far
	limit    int   // work allowed for the SRLG search
	limited  bool  // the SRLG search hit limit
}

func (g *Graph) newQuery(opt *Options) *query {
	q := &query{
		g:        g,
		s:        g.getScratch(),
		mode:     opt.Mode,
		rate:     opt.Rate,
		reserved: opt.Reserved,
		dir:      opt.Direction,
		limit:    opt.SearchLimit,
	}
	if q.limit == 0 {
		q.limit = DefaultSearchLimit
	}
	size := len(g.nodeNames)
	if q.mode == NodeDisjoint {
		size *= 2
	}
	q.s.ensure(size)
	if q.rate > 0 {
		q.s.nextUseGen(len(g.links))
	}
	for _, l := range opt.ExcludeLinks {
		q.maskLink(int32(l), 1)
	}
	for _, v := range opt.ExcludeNodes {
		q.maskNode(int32(v), 1)
	}
	return q
}

// release undoes the exclusion masks and returns the scratch to the pool.
func (q *query) release(opt *Options) {
	for _, l := range opt.ExcludeLinks {
		q.maskLink(int32(l), -1)
	}
	for _, v := range opt.ExcludeNodes {
		q.maskNode(int32(v), -1)
	}
	q.g.putScratch(q.s)
	q.s = nil
}

func (q *query) maskLink(l int32, d int32) {
	q.s.linkOff[l] += d
	q.masks += int(d)
}

func (q *query) maskNode(v int32, d int32) {
	q.s.nodeOff[v] += d
	q.masks += int(d)
}

// spt is Dijkstra on the original graph from src, stopping when dst is
// settled. It honours masks and capacity (in the direction of travel, or
// both, per q.dir). prev[v] is the arc that reached v. On return s.popped
// lists the settled nodes in order.
func (q *query) spt(src, dst int32) (int64, bool) {
	s, g := q.s, q.g
	q.work++
	reach, done := s.nextGen()
	s.popped = s.popped[:0]
	s.heap = s.heap[:0]
	ns := s.ns
	ns[src].dist, ns[src].prev, ns[src].mark = 0, -1, reach
	s.hpush(hitem{0, src})
	adjOff, adj := g.adjOff, g.adj
	masked, capped := q.masks > 0, q.rate > 0
	for len(s.heap) > 0 {
		it := s.hpop()
		v := it.v
		ns[v].mark = done
		s.popped = append(s.popped, v)
		if v == dst {
			return it.d, true
		}
		for _, e := range adj[adjOff[v]:adjOff[v+1]] {
			u := e.to
			su := &ns[u]
			if su.mark == done {
				continue
			}
			if masked && (s.linkOff[e.arc>>1] != 0 || s.nodeOff[u] != 0) {
				continue
			}
			if capped && !q.arcUsable(e.arc) {
				continue
			}
			nd := it.d + int64(e.cost)
			if su.mark != reach {
				su.dist, su.prev, su.mark = nd, e.arc, reach
				s.hpush(hitem{nd, u})
			} else if nd < su.dist {
				su.dist, su.prev = nd, e.arc
				s.hdecrease(hitem{nd, u})
			}
		}
	}
	return 0, false
}

// rspt is Dijkstra backwards from dst over the arcs that lead to it,
// stopping when src is settled: dist is then the distance to dst and prev
// the next arc towards dst. Capacity is checked in the direction of travel.
func (q *query) rspt(src, dst int32) (int64, bool) {
	s, g := q.s, q.g
	q.work++
	reach, done := s.nextGen()
	s.popped = s.popped[:0]
	s.heap = s.heap[:0]
	ns := s.ns
	ns[dst].dist, ns[dst].prev, ns[dst].mark = 0, -1, reach
	s.hpush(hitem{0, dst})
	adjOff, adj := g.adjOff, g.adj
	masked, capped := q.masks > 0, q.rate > 0
	for len(s.heap) > 0 {
		it := s.hpop()
		v := it.v
		ns[v].mark = done
		s.popped = append(s.popped, v)
		if v == src {
			return it.d, true
		}
		for _, e := range adj[adjOff[v]:adjOff[v+1]] {
			u, a := e.to, e.arc^1 // the arc u→v
			su := &ns[u]
			if su.mark == done {
				continue
			}
			if masked && (s.linkOff[a>>1] != 0 || s.nodeOff[u] != 0) {
				continue
			}
			if capped && !q.arcUsable(a) {
				continue
			}
			nd := it.d + int64(e.cost)
			if su.mark != reach {
				su.dist, su.prev, su.mark = nd, a, reach
				s.hpush(hitem{nd, u})
			} else if nd < su.dist {
				su.dist, su.prev = nd, a
				s.hdecrease(hitem{nd, u})
			}
		}
	}
	return 0, false
}

// rsptArcs extracts the src→dst path found by the last rspt call.
func (q *query) rsptArcs(src, dst int32) []int32 {
	var out []int32
	for v := src; v != dst; {
		a := q.s.ns[v].prev
		out = append(out, a)
		v = q.g.arcHead(a)
		if len(out) > len(q.g.nodeNames) {
			return nil // cannot happen: prev forms a tree
		}
	}
	return out
}

// arcTail and arcHead return the ends of arc a in the original graph.
func (g *Graph) arcTail(a int32) int32 {
	if a&1 == 0 {
		return g.la[a>>1]
	}
	return g.lb[a>>1]
}

func (g *Graph) arcHead(a int32) int32 {
	if a&1 == 0 {
		return g.lb[a>>1]
	}
	return g.la[a>>1]
}

// sptArcs extracts the path to dst found by the last spt call, as arcs in
// order from the source.
func (q *query) sptArcs(src, dst int32, buf []int32) []int32 {
	buf = buf[:0]
	for v := dst; v != src; {
		a := q.s.ns[v].prev
		buf = append(buf, a)
		v = q.g.arcTail(a)
		if len(buf) > len(q.g.nodeNames) {
			return nil // cannot happen: prev forms a tree
		}
	}
	for i, j := 0, len(buf)-1; i < j; i, j = i+1, j-1 {
		buf[i], buf[j] = buf[j], buf[i]
	}
	return buf
}
