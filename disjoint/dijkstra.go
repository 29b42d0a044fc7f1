package disjoint

// scratch holds the per-query working arrays. Graphs keep them in a
// sync.Pool so that a query allocates almost nothing but its result.
// Arrays indexed by search node have room for the split network of
// node-disjoint queries (2 × nodes): node v is 2v (in) and 2v+1 (out) there.
type scratch struct {
	gen    uint32
	stamp  []uint32 // dist and prev are valid iff stamp == gen
	done   []uint32 // settled iff done == gen
	dist   []int64
	prev   []int32
	potGen uint32
	potStp []uint32 // potAdj valid iff potStp == potGen
	potAdj []int64  // potential minus the sum of the round distances
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

// ensure grows the search-node arrays to size entries.
func (s *scratch) ensure(size int) {
	if len(s.stamp) >= size {
		return
	}
	s.stamp = make([]uint32, size)
	s.done = make([]uint32, size)
	s.dist = make([]int64, size)
	s.prev = make([]int32, size)
	s.potStp = make([]uint32, size)
	s.potAdj = make([]int64, size)
	s.gen, s.potGen = 0, 0
}

func (s *scratch) nextGen() uint32 {
	s.gen++
	if s.gen == 0 {
		clear(s.stamp)
		clear(s.done)
		s.gen = 1
	}
	return s.gen
}

func (s *scratch) nextPotGen() {
	s.potGen++
	if s.potGen == 0 {
		clear(s.potStp)
		s.potGen = 1
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

func heapPush(h []hitem, it hitem) []hitem {
	h = append(h, it)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !less(h[i], h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	return h
}

func heapPop(h []hitem) (hitem, []hitem) {
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && less(h[r], h[l]) {
			c = r
		}
		if !less(h[c], h[i]) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	return top, h
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
	for _, l := range opt.ExcludeLinks {
		q.maskLink(int32(l), 1)
	}
	for _, v := range opt.ExcludeNodes {
		q.maskNode(int32(v), 1)
	}
	return q
}

// release returns the scratch to the pool; masks must be cleared first.
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
	gen := s.nextGen()
	s.popped = s.popped[:0]
	h := s.heap[:0]
	s.stamp[src], s.dist[src], s.prev[src] = gen, 0, -1
	h = heapPush(h, hitem{0, src})
	stamp, done, dist, prev := s.stamp, s.done, s.dist, s.prev
	adjOff, adjArc, adjTo, adjCost := g.adjOff, g.adjArc, g.adjTo, g.adjCost
	masked, capped := q.masks > 0, q.rate > 0
	for len(h) > 0 {
		var it hitem
		it, h = heapPop(h)
		v := it.v
		if done[v] == gen {
			continue
		}
		done[v] = gen
		s.popped = append(s.popped, v)
		if v == dst {
			s.heap = h
			return it.d, true
		}
		for i := adjOff[v]; i < adjOff[v+1]; i++ {
			u := adjTo[i]
			if done[u] == gen {
				continue
			}
			a := adjArc[i]
			if masked && (s.linkOff[a>>1] != 0 || s.nodeOff[u] != 0) {
				continue
			}
			if capped && !q.arcUsable(a) {
				continue
			}
			nd := it.d + adjCost[i]
			if stamp[u] != gen || nd < dist[u] {
				stamp[u], dist[u], prev[u] = gen, nd, a
				h = heapPush(h, hitem{nd, u})
			}
		}
	}
	s.heap = h
	return 0, false
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

// sptPath extracts the path to dst found by the last spt call, as arcs in
// order from the source.
func (q *query) sptArcs(src, dst int32, buf []int32) []int32 {
	buf = buf[:0]
	for v := dst; v != src; {
		a := q.s.prev[v]
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
