package disjoint

import (
	"fmt"
	"slices"
)

// PairPaths holds the paths between two ON members.
type PairPaths struct {
	From, To int // node indices, From listed before To in the member list
	Result   *Result
}

// Plan is what an ON needs from the network: the paths of every member pair
// and the union of their links, which the manager charges once per link (an
// ON is a network, not O(n²) circuits).
type Plan struct {
	// Pairs in member-list order: (m0,m1), (m0,m2), …, (m1,m2), …
	Pairs []PairPaths
	// Links is the union of the links of all pairs, ascending, each once.
	Links []int
	// Heuristic is true if any pair's answer was heuristic (see Result).
	Heuristic bool
}

// PlanMembers computes the paths for every pair of members (opt.K paths per
// pair: 2 by default, 1 for a non-redundant ON) and the union of their links.
// ON traffic flows both ways between members and the manager charges an ON
// link in both directions, so opt.Direction must be BothDirections. The first
// pair that cannot be served fails the whole plan; its error wraps the pair's
// *NoPairError. A single member needs no links.
func (g *Graph) PlanMembers(members []int, opt Options) (*Plan, error) {
	if opt.Direction != BothDirections {
		return nil, fmt.Errorf("%w: an ON carries traffic both ways: Direction must be BothDirections", ErrInvalidOptions)
	}
	seen := make(map[int]bool, len(members))
	for _, m := range members {
		if m < 0 || m >= len(g.nodeNames) {
			return nil, fmt.Errorf("%w: member index %d", ErrUnknownNode, m)
		}
		if seen[m] {
			return nil, fmt.Errorf("%w: %s is listed twice as a member", ErrSameNode, g.nodeNames[m])
		}
		seen[m] = true
	}
	plan := &Plan{}
	inUnion := make(map[int]bool)
	for i, a := range members {
		for _, b := range members[i+1:] {
			res, err := g.Disjoint(a, b, opt)
			if err != nil {
				return nil, fmt.Errorf("members %s and %s: %w", g.nodeNames[a], g.nodeNames[b], err)
			}
			plan.Pairs = append(plan.Pairs, PairPaths{From: a, To: b, Result: res})
			plan.Heuristic = plan.Heuristic || res.Heuristic
			for _, p := range res.Paths {
				for _, l := range p.Links {
					if !inUnion[l] {
						inUnion[l] = true
						plan.Links = append(plan.Links, l)
					}
				}
			}
		}
	}
	slices.Sort(plan.Links)
	return plan, nil
}
