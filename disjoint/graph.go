package disjoint

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
)

// Link is one undirected, full-duplex link given to New. Parallel links
// (same ends) are distinct links.
type Link struct {
	// Name identifies the link in output. Empty means "A-B" (node names),
	// with "/2", "/3", ... appended for further parallel links.
	Name string
	// A and B are node indices (positions in the names given to New).
	A, B int
	// Cost is the routing metric; 0 is allowed.
	Cost uint32
	// Capacity in bit/s, per direction.
	Capacity uint64
	// Reservable is the fraction of Capacity that reservations may use,
	// in [0, 1].
	Reservable float64
	// SRLG lists the shared-risk link groups the link belongs to.
	SRLG []string
}

// Graph is a compact, immutable undirected multigraph: int node ids, link
// arrays and a CSR adjacency. Build it with New or FromTopology. It is safe
// for concurrent use.
type Graph struct {
	nodeNames []string
	nodeIndex map[string]int32
	links     []Link

	la, lb []int32  // link ends
	lcost  []int64  // link cost
	avail  []uint64 // floor(Capacity × Reservable), per direction
	lsrlg  [][]int32

	srlgNames []string
	srlgLinks [][]int32

	// CSR adjacency: for node v, adj[adjOff[v]:adjOff[v+1]], in link order.
	adjOff []int32
	adj    []adjEntry

	pool sync.Pool // *scratch
}

// maxElems bounds node and link counts so that arc codes fit in an int32.
const maxElems = 1 << 28

// New builds a graph from node names and links. Node names must be unique
// and non-empty; links must join two different existing nodes.
func New(nodes []string, links []Link) (*Graph, error) {
	if len(nodes) > maxElems || len(links) > maxElems {
		return nil, fmt.Errorf("%w: too many nodes or links", ErrInvalidGraph)
	}
	g := &Graph{
		nodeNames: append([]string(nil), nodes...),
		nodeIndex: make(map[string]int32, len(nodes)),
		links:     make([]Link, len(links)),
		la:        make([]int32, len(links)),
		lb:        make([]int32, len(links)),
		lcost:     make([]int64, len(links)),
		avail:     make([]uint64, len(links)),
		lsrlg:     make([][]int32, len(links)),
	}
	for i, n := range nodes {
		if n == "" {
			return nil, fmt.Errorf("%w: node %d has an empty name", ErrInvalidGraph, i)
		}
		if _, dup := g.nodeIndex[n]; dup {
			return nil, fmt.Errorf("%w: duplicate node name %q", ErrInvalidGraph, n)
		}
		g.nodeIndex[n] = int32(i)
	}
	srlgIndex := map[string]int32{}
	linkNames := make(map[string]int, len(links))
	pairCount := map[[2]int32]int{}
	deg := make([]int32, len(nodes)+1)
	for i, l := range links {
		if l.A < 0 || l.A >= len(nodes) || l.B < 0 || l.B >= len(nodes) {
			return nil, fmt.Errorf("%w: link %d joins a node that does not exist", ErrInvalidGraph, i)
		}
		if l.A == l.B {
			return nil, fmt.Errorf("%w: link %d is a self-loop on %s", ErrInvalidGraph, i, nodes[l.A])
		}
		if math.IsNaN(l.Reservable) || l.Reservable < 0 || l.Reservable > 1 {
			return nil, fmt.Errorf("%w: link %d: reservable fraction %v is not in [0,1]", ErrInvalidGraph, i, l.Reservable)
		}
		name := l.Name
		if name == "" {
			key := [2]int32{int32(l.A), int32(l.B)}
			pairCount[key]++
			name = nodes[l.A] + "-" + nodes[l.B]
			if c := pairCount[key]; c > 1 {
				name += "/" + strconv.Itoa(c)
			}
		}
		if j, dup := linkNames[name]; dup {
			return nil, fmt.Errorf("%w: links %d and %d are both named %q", ErrInvalidGraph, j, i, name)
		}
		linkNames[name] = i
		l.Name = name
		l.SRLG = append([]string(nil), l.SRLG...)
		g.links[i] = l
		g.la[i], g.lb[i] = int32(l.A), int32(l.B)
		g.lcost[i] = int64(l.Cost)
		g.avail[i] = availOf(l.Capacity, l.Reservable)
		var groups []int32
		for _, s := range l.SRLG {
			id, ok := srlgIndex[s]
			if !ok {
				id = int32(len(g.srlgNames))
				srlgIndex[s] = id
				g.srlgNames = append(g.srlgNames, s)
				g.srlgLinks = append(g.srlgLinks, nil)
			}
			groups = append(groups, id)
		}
		sort.Slice(groups, func(a, b int) bool { return groups[a] < groups[b] })
		groups = uniq(groups)
		for _, id := range groups {
			g.srlgLinks[id] = append(g.srlgLinks[id], int32(i))
		}
		g.lsrlg[i] = groups
		deg[l.A+1]++
		deg[l.B+1]++
	}
	for v := 1; v < len(deg); v++ {
		deg[v] += deg[v-1]
	}
	g.adjOff = deg
	g.adj = make([]adjEntry, 2*len(links))
	fill := append([]int32(nil), deg[:len(nodes)]...)
	for i := range links {
		a, b := g.la[i], g.lb[i]
		p := fill[a]
		fill[a]++
		g.adj[p] = adjEntry{to: b, arc: int32(2 * i), cost: links[i].Cost}
		p = fill[b]
		fill[b]++
		g.adj[p] = adjEntry{to: a, arc: int32(2*i + 1), cost: links[i].Cost}
	}
	g.pool.New = func() any { return newScratch(len(nodes), len(links)) }
	return g, nil
}

// adjEntry is one arc leaving a node: arc 2l goes A→B on link l, 2l+1 B→A.
type adjEntry struct {
	to   int32
	arc  int32
	cost uint32
}

func availOf(capacity uint64, reservable float64) uint64 {
	f := float64(capacity) * reservable
	if f >= math.MaxUint64 {
		return math.MaxUint64
	}
	return uint64(f)
}

func uniq(s []int32) []int32 {
	if len(s) < 2 {
		return s
	}
	out := s[:1]
	for _, x := range s[1:] {
		if x != out[len(out)-1] {
			out = append(out, x)
		}
	}
	return out
}

// NumNodes returns the number of nodes.
func (g *Graph) NumNodes() int { return len(g.nodeNames) }

// NumLinks returns the number of links.
func (g *Graph) NumLinks() int { return len(g.links) }

// NodeName returns the name of node i, or "" if i is out of range.
func (g *Graph) NodeName(i int) string {
	if i < 0 || i >= len(g.nodeNames) {
		return ""
	}
	return g.nodeNames[i]
}

// NodeIndex returns the index of the named node, or ErrUnknownNode.
func (g *Graph) NodeIndex(name string) (int, error) {
	i, ok := g.nodeIndex[name]
	if !ok {
		return -1, fmt.Errorf("%w: %q", ErrUnknownNode, name)
	}
	return int(i), nil
}

// Link returns a copy of link i (with its resolved Name). It returns the
// zero Link if i is out of range.
func (g *Graph) Link(i int) Link {
	if i < 0 || i >= len(g.links) {
		return Link{}
	}
	l := g.links[i]
	l.SRLG = append([]string(nil), l.SRLG...)
	return l
}

// LinkName returns the name of link i, or "" if i is out of range.
func (g *Graph) LinkName(i int) string {
	if i < 0 || i >= len(g.links) {
		return ""
	}
	return g.links[i].Name
}

// Available returns floor(Capacity × Reservable) of link i: what
// reservations may use in each direction before any is made.
func (g *Graph) Available(i int) uint64 {
	if i < 0 || i >= len(g.links) {
		return 0
	}
	return g.avail[i]
}

func (g *Graph) getScratch() *scratch  { return g.pool.Get().(*scratch) }
func (g *Graph) putScratch(s *scratch) { g.pool.Put(s) }
