package disjoint

// cutInfo describes the minimum cut that stopped a search: the arcs leaving
// the set of search nodes still reachable from the source.
type cutInfo struct {
	flowLinks   []int32 // cut links already used by the paths found
	capLinks    []int32 // cut links without the requested rate unreserved
	maskedLinks []int32 // cut links excluded by the caller
	nodes       []int32 // node mode: routers already used by a path
	maskedNodes []int32 // excluded routers on the cut
}

// cutFromSPT reads the cut after spt failed: s.popped is everything reachable.
func (q *query) cutFromSPT() *cutInfo {
	s, g := q.s, q.g
	c := &cutInfo{}
	for _, v := range s.popped {
		for _, e := range g.adj[g.adjOff[v]:g.adjOff[v+1]] {
			if !s.settled(e.to) {
				c.classify(q, e.arc, e.to)
			}
		}
	}
	return c
}

func (c *cutInfo) classify(q *query, a, u int32) {
	s := q.s
	switch l := a >> 1; {
	case s.linkOff[l] != 0:
		c.maskedLinks = append(c.maskedLinks, l)
	case s.nodeOff[u] != 0:
		c.maskedNodes = appendUniq(c.maskedNodes, u)
	case s.flow[a] != 0:
		c.flowLinks = append(c.flowLinks, l)
	case !q.arcUsable(a):
		c.capLinks = append(c.capLinks, l)
	}
}

// cutFromResidual reads the cut after residualSearch failed.
func (q *query) cutFromResidual() *cutInfo {
	s, g := q.s, q.g
	c := &cutInfo{}
	reached := s.settled
	for _, x := range s.popped {
		if q.mode == LinkDisjoint {
			for _, e := range g.adj[g.adjOff[x]:g.adjOff[x+1]] {
				if !reached(e.to) {
					c.classify(q, e.arc, e.to)
				}
			}
			continue
		}
		v := x >> 1
		if x&1 == 0 {
			if !reached(2*v+1) && s.split[v] != 0 {
				c.nodes = append(c.nodes, v)
			}
			continue
		}
		for _, e := range g.adj[g.adjOff[v]:g.adjOff[v+1]] {
			if !reached(2*e.to) && e.to != q.srcNode {
				c.classify(q, e.arc, e.to)
			}
		}
	}
	return c
}

func appendUniq(s []int32, x int32) []int32 {
	for _, y := range s {
		if y == x {
			return s
		}
	}
	return append(s, x)
}
