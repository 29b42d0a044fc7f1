// Package onpath plans where an ON's traffic goes: the paths of every member pair over
// a topology, and how many copies of one message each link carries. It is the one
// planner behind the manager's admission, its ComputePaths RPC and `vonctl paths`, so
// what `paths` prints is what `reserve` installs.
//
// Rules:
//   - Hosts never forward: a pair's paths avoid every host but the pair's own two.
//   - A host with a single link (the usual, single-homed case) cannot have two
//     link-disjoint paths of its own. For a redundant plan the pair's paths are computed
//     between the routers the hosts hang off and the access links are added to every
//     path: they are the one part of the ON redundancy cannot cover.
//   - Copies: with redundancy every message is sent once per path, so a link that k of
//     one pair's paths cross carries k copies of each message of that pair. A link is
//     charged (and shaped) for the most copies any pair puts on it — 2·R on a
//     single-homed member's access link, R elsewhere. An ON is a network, not n²
//     circuits: the charge never grows with the number of pairs.
//   - Capacity: a link direction is usable only if it can carry copies × rate on top of
//     what is reserved.
package onpath

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vonproject/von/disjoint"
	"github.com/vonproject/von/topology"
)

// Request is what to plan.
type Request struct {
	// Members are node names; every pair of them gets paths. Usually hosts; routers
	// work too (vonctl paths between any two nodes).
	Members []string
	// Paths per pair: 1 (non-redundant) or more (2 for a redundant ON); 0 means 1.
	Paths int
	// NodeDisjoint asks for router-disjoint paths.
	NodeDisjoint bool
	// IgnoreSRLG lets a pair's paths share shared-risk link groups.
	IgnoreSRLG bool
	// Rate in bit/s every copy needs; 0 disables capacity checks.
	Rate uint64
	// Reserved is what is already reserved on a link direction (fromA: A→B); nil
	// means nothing.
	Reserved func(link int, fromA bool) uint64
}

// Pair is the paths of one member pair.
type Pair struct {
	From, To string // member names, From listed first
	Result   *disjoint.Result
}

// Plan is where an ON goes.
type Plan struct {
	Pairs []Pair // in member-list order: (m0,m1), (m0,m2), …, (m1,m2), …
	// Links is the union of the pairs' links, ascending, each once.
	Links []int
	// Copies of one message that cross each link of Links (≥ 1): the link's charge
	// is Copies × rate in each direction.
	Copies map[int]int
	// Heuristic is true if any pair's answer was heuristic (see disjoint.Result).
	Heuristic bool
}

// CapacityError says a single-homed member's access link cannot carry every copy.
type CapacityError struct {
	Link     string
	FromA    bool
	Limit    uint64 // reservable bit/s of the link
	Reserved uint64 // already reserved in that direction
	Need     uint64 // copies × rate
	Copies   int
}

func (e *CapacityError) Error() string {
	dir := "a->b"
	if !e.FromA {
		dir = "b->a"
	}
	return fmt.Sprintf("access link %s (%s): %s reservable, %s already reserved, cannot add %s (%d copies of every message cross it)",
		e.Link, dir, topology.FormatRate(e.Limit), topology.FormatRate(e.Reserved), topology.FormatRate(e.Need), e.Copies)
}

// ErrSameRouter: two single-homed members hang off one router, so no two disjoint
// paths exist between them.
var ErrSameRouter = errors.New("no two disjoint paths exist between them")

// ErrInput: a member is unknown or listed twice.
var ErrInput = errors.New("bad plan request")

// PlanON computes the paths of every pair of req.Members over t (g must be
// disjoint.FromTopology(t)).
func PlanON(t *topology.Topology, g *disjoint.Graph, req Request) (*Plan, error) {
	k := req.Paths
	if k <= 0 {
		k = 1
	}
	idx := make([]int, 0, len(req.Members))
	seen := map[string]bool{}
	for _, name := range req.Members {
		i, ok := t.NodeIndex(name)
		if !ok {
			return nil, fmt.Errorf("%w: %q is not a node of the topology", ErrInput, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: %s is listed twice", ErrInput, name)
		}
		seen[name] = true
		idx = append(idx, i)
	}
	var hosts []int
	for i, n := range t.Nodes {
		if n.Kind == topology.KindHost {
			hosts = append(hosts, i)
		}
	}
	reserved := req.Reserved
	if reserved == nil {
		reserved = func(int, bool) uint64 { return 0 }
	}
	// attach returns the node to plan from and its access link (or -1).
	attach := func(m int) (int, int) {
		n := t.Nodes[m]
		links := t.LinksOf(n.Name)
		if k < 2 || n.Kind != topology.KindHost || len(links) != 1 {
			return m, -1
		}
		far, _ := t.Links[links[0]].Other(n.Name)
		r, _ := t.NodeIndex(far.Node)
		return r, links[0]
	}
	opt := disjoint.Options{K: k, Rate: req.Rate, Reserved: req.Reserved, IgnoreSRLG: req.IgnoreSRLG}
	if req.NodeDisjoint && k > 1 {
		opt.Mode = disjoint.NodeDisjoint
	}
	plan := &Plan{Copies: map[int]int{}}
	for i, a := range idx {
		for _, b := range idx[i+1:] {
			na, la := attach(a)
			nb, lb := attach(b)
			pairName := t.Nodes[a].Name + " and " + t.Nodes[b].Name
			if na == nb {
				return nil, fmt.Errorf("members %s both hang off router %s: %w", pairName, t.Nodes[na].Name, ErrSameRouter)
			}
			o := opt
			o.ExcludeNodes = nil
			for _, h := range hosts {
				if h != a && h != b && h != na && h != nb {
					o.ExcludeNodes = append(o.ExcludeNodes, h)
				}
			}
			for _, l := range []int{la, lb} {
				if l < 0 || req.Rate == 0 {
					continue
				}
				need := uint64(k) * req.Rate
				for _, fromA := range []bool{true, false} {
					if r := reserved(l, fromA); g.Available(l) < r+need || r+need < r {
						return nil, fmt.Errorf("members %s: %w", pairName, &CapacityError{Link: t.Links[l].Name, FromA: fromA,
							Limit: g.Available(l), Reserved: r, Need: need, Copies: k})
					}
				}
			}
			res, err := g.Disjoint(na, nb, o)
			if err != nil {
				return nil, fmt.Errorf("members %s: %w", pairName, err)
			}
			if la >= 0 || lb >= 0 {
				res.TotalCost = 0
				for pi := range res.Paths {
					p := &res.Paths[pi]
					if la >= 0 {
						p.Nodes = append([]int{a}, p.Nodes...)
						p.Links = append([]int{la}, p.Links...)
						p.Cost += int64(t.Links[la].Cost)
					}
					if lb >= 0 {
						p.Nodes = append(p.Nodes, b)
						p.Links = append(p.Links, lb)
						p.Cost += int64(t.Links[lb].Cost)
					}
					res.TotalCost += p.Cost
				}
			}
			plan.Pairs = append(plan.Pairs, Pair{From: t.Nodes[a].Name, To: t.Nodes[b].Name, Result: res})
			plan.Heuristic = plan.Heuristic || res.Heuristic
			plan.account(res)
		}
	}
	for l := range plan.Copies {
		plan.Links = append(plan.Links, l)
	}
	slices.Sort(plan.Links)
	return plan, nil
}

// account records how many copies of one message of this pair cross each link.
func (p *Plan) account(res *disjoint.Result) {
	n := map[int]int{}
	for _, path := range res.Paths {
		for _, l := range path.Links {
			n[l]++
		}
	}
	for l, c := range n {
		p.Copies[l] = max(p.Copies[l], c)
	}
}

// CopiesOfPaths counts, from recorded paths (link names per path, grouped by pair),
// the copies of one message that cross each link: the most paths of one pair that
// cross it.
func CopiesOfPaths(pairs [][][]string) map[string]int {
	out := map[string]int{}
	for _, paths := range pairs {
		n := map[string]int{}
		for _, links := range paths {
			for _, l := range links {
				n[l]++
			}
		}
		for l, c := range n {
			out[l] = max(out[l], c)
		}
	}
	return out
}
