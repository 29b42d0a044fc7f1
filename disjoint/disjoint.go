package disjoint

import (
	"fmt"
	"slices"
	"strings"
)

// Path is one path from the source to the target.
type Path struct {
	Nodes []int // node indices, source first, target last
	Links []int // link indices; len(Links) == len(Nodes)-1
	Cost  int64 // sum of the link costs
}

// Result is a set of disjoint paths.
type Result struct {
	// Paths in canonical order: cheaper first, then fewer links, then
	// lexicographically by link indices.
	Paths     []Path
	TotalCost int64
	Mode      Mode
	// Heuristic is true when the SRLG search stopped at its limit: the
	// paths satisfy every constraint but a cheaper set may exist. Note
	// says why.
	Heuristic bool
	Note      string
}

// ShortestPath returns a cheapest path from one node to another (Dijkstra;
// ties are broken by node and link index, so the answer is deterministic).
// It honours Options.Rate, Reserved, Direction, ExcludeLinks and
// ExcludeNodes; the other options are ignored.
func (g *Graph) ShortestPath(from, to int, opt Options) (Path, error) {
	opt.K, opt.Mode = 1, LinkDisjoint
	r, err := g.Disjoint(from, to, opt)
	if err != nil {
		return Path{}, err
	}
	return r.Paths[0], nil
}

// Disjoint returns opt.K (default 2) paths from one node to another that
// share no link (no node either with NodeDisjoint), meet the capacity
// requirement, share no SRLG (unless IgnoreSRLG), and have the least total
// cost. When no such set exists the error is a *NoPairError that says which
// constraint made it impossible.
func (g *Graph) Disjoint(from, to int, opt Options) (*Result, error) {
	if err := g.checkOptions(from, to, &opt); err != nil {
		return nil, err
	}
	k := opt.K
	if k == 0 {
		k = 2
	}
	q := g.newQuery(&opt)
	defer q.release(&opt)
	src, dst := int32(from), int32(to)

	arcs, cut, err := q.minSum(src, dst, k, true)
	if err != nil {
		return nil, err
	}
	if len(arcs) < k {
		return nil, q.diagnose(src, dst, k, len(arcs), cut)
	}
	res := &Result{Mode: opt.Mode}
	if k > 1 && !opt.IgnoreSRLG && len(g.srlgNames) > 0 {
		if shared := q.sharedGroups(arcs); len(shared) > 0 {
			best, _, ok, err := q.srlgSearch(src, dst, k, maxCost)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, q.srlgError(src, dst, k, shared)
			}
			arcs = best
			if q.limited {
				res.Heuristic = true
				res.Note = fmt.Sprintf("SRLG search stopped at its limit of %d shortest-path searches; "+
					"the paths share no SRLG but a cheaper SRLG-disjoint set may exist", q.limit)
			}
		}
	}
	for _, a := range arcs {
		p := g.pathOf(src, a)
		res.TotalCost += p.Cost
		res.Paths = append(res.Paths, p)
	}
	sortPaths(res.Paths)
	if err := q.validate(src, dst, res.Paths, !opt.IgnoreSRLG); err != nil {
		return nil, err
	}
	return res, nil
}

// maxCost is larger than any path set cost (2^28 links × 2^32 × 64 paths
// stays below it).
const maxCost = int64(1) << 62

func (g *Graph) pathOf(src int32, arcs []int32) Path {
	p := Path{Nodes: make([]int, 0, len(arcs)+1), Links: make([]int, 0, len(arcs))}
	p.Nodes = append(p.Nodes, int(src))
	for _, a := range arcs {
		p.Links = append(p.Links, int(a>>1))
		p.Nodes = append(p.Nodes, int(g.arcHead(a)))
		p.Cost += g.lcost[a>>1]
	}
	return p
}

func arcsCost(g *Graph, paths [][]int32) int64 {
	var c int64
	for _, p := range paths {
		for _, a := range p {
			c += g.lcost[a>>1]
		}
	}
	return c
}

func sortPaths(ps []Path) {
	slices.SortStableFunc(ps, func(a, b Path) int {
		if a.Cost != b.Cost {
			if a.Cost < b.Cost {
				return -1
			}
			return 1
		}
		if len(a.Links) != len(b.Links) {
			return len(a.Links) - len(b.Links)
		}
		return slices.Compare(a.Links, b.Links)
	})
}

// validate checks what the package promises about a result; a failure is a
// bug, reported as ErrInternal rather than returned silently.
func (q *query) validate(src, dst int32, ps []Path, srlg bool) error {
	s, g := q.s, q.g
	lg := s.nextLinkGen()
	var groups map[int32]int
	if srlg && len(g.srlgNames) > 0 {
		groups = map[int32]int{}
	}
	var internal map[int]struct{}
	if q.mode == NodeDisjoint {
		internal = map[int]struct{}{}
	}
	for pi, p := range ps {
		if len(p.Nodes) != len(p.Links)+1 || p.Nodes[0] != int(src) || p.Nodes[len(p.Nodes)-1] != int(dst) {
			return fmt.Errorf("%w: path %d does not join the ends", ErrInternal, pi)
		}
		pathGen := s.nextWalkGen() // nodes of this path
		for i, l := range p.Links {
			u, v := int32(p.Nodes[i]), int32(p.Nodes[i+1])
			if !(g.la[l] == u && g.lb[l] == v) && !(g.la[l] == v && g.lb[l] == u) {
				return fmt.Errorf("%w: path %d: link %s does not join its nodes", ErrInternal, pi, g.links[l].Name)
			}
			if s.linkStp[l] == lg {
				return fmt.Errorf("%w: link %s is used twice", ErrInternal, g.links[l].Name)
			}
			s.linkStp[l] = lg
			if s.linkOff[l] != 0 {
				return fmt.Errorf("%w: excluded link %s is used", ErrInternal, g.links[l].Name)
			}
			a := int32(2 * l)
			if g.la[l] != u {
				a++
			}
			if !q.arcUsable(a) {
				return fmt.Errorf("%w: link %s lacks capacity", ErrInternal, g.links[l].Name)
			}
			if groups != nil {
				for _, gr := range g.lsrlg[l] {
					if o, ok := groups[gr]; ok && o != pi {
						return fmt.Errorf("%w: paths share SRLG %s", ErrInternal, g.srlgNames[gr])
					}
					groups[gr] = pi
				}
			}
		}
		for i, v := range p.Nodes {
			if s.walkStp[v] == pathGen {
				return fmt.Errorf("%w: path %d repeats node %s", ErrInternal, pi, g.nodeNames[v])
			}
			s.walkStp[v] = pathGen
			if i == 0 || i == len(p.Nodes)-1 {
				continue
			}
			if s.nodeOff[v] != 0 {
				return fmt.Errorf("%w: excluded node %s is used", ErrInternal, g.nodeNames[v])
			}
			if internal != nil {
				if _, dup := internal[v]; dup {
					return fmt.Errorf("%w: node %s is used twice", ErrInternal, g.nodeNames[v])
				}
				internal[v] = struct{}{}
			}
		}
	}
	return nil
}

// sharedGroups returns the SRLGs used by more than one of the paths.
func (q *query) sharedGroups(paths [][]int32) []int32 {
	g := q.g
	owner := map[int32]int{}
	var shared []int32
	for pi, p := range paths {
		for _, a := range p {
			for _, gr := range g.lsrlg[a>>1] {
				if o, ok := owner[gr]; ok && o != pi {
					if !slices.Contains(shared, gr) {
						shared = append(shared, gr)
					}
					continue
				}
				owner[gr] = pi
			}
		}
	}
	slices.Sort(shared)
	return shared
}

func (g *Graph) linkNames(ls []int32) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		out = append(out, g.links[l].Name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (g *Graph) nodeNamesOf(vs []int32) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, g.nodeNames[v])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func joinNames(names []string, max int) string {
	if len(names) > max {
		return strings.Join(names[:max], ", ") + fmt.Sprintf(" and %d more", len(names)-max)
	}
	return strings.Join(names, ", ")
}
