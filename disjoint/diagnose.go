package disjoint

import (
	"fmt"
	"slices"

	"github.com/vonproject/von/topology"
)

// diagnose explains why only found < k paths exist, by relaxing one
// constraint at a time: capacity first, then node-disjointness; what is left
// is the topology itself (with the caller's exclusions).
func (q *query) diagnose(src, dst int32, k, found int, cut *cutInfo) error {
	g := q.g
	e := &NoPairError{From: g.nodeNames[src], To: g.nodeNames[dst], Want: k, Found: found}
	if cut == nil {
		cut = &cutInfo{}
	}
	what := "paths"
	if k == 1 {
		what = "path"
	} else if found == 1 {
		what = q.mode.String() + " path"
	} else {
		what = q.mode.String() + " paths"
	}

	if q.rate > 0 {
		rate := q.rate
		q.rate = 0
		free, _, err := q.minSum(src, dst, k, false)
		q.rate = rate
		if err != nil {
			return err
		}
		if len(free) > found {
			dirs := "in both directions"
			if q.dir == Forward {
				dirs = "in the direction of travel"
			}
			e.Constraint = ConstraintCapacity
			if found == 0 {
				e.Reason = fmt.Sprintf("no path has %s unreserved %s", topology.FormatRate(rate), dirs)
			} else {
				e.Reason = fmt.Sprintf("only %d %s %s %s unreserved %s (%d without the bandwidth requirement)",
					found, what, plural(found, "has", "have"), topology.FormatRate(rate), dirs, min(len(free), k))
			}
			if len(cut.capLinks) > 0 {
				e.Cut = g.linkNames(cut.capLinks)
				e.Reason += "; links on the cut without it: " + q.describeFree(cut.capLinks)
			}
			e.Hint = "ask for less bandwidth, or release reservations on those links"
			return e
		}
	}

	if q.mode == NodeDisjoint && found > 0 {
		q.mode = LinkDisjoint
		linkPaths, _, err := q.minSum(src, dst, k, false)
		q.mode = NodeDisjoint
		if err != nil {
			return err
		}
		if len(linkPaths) > found {
			e.Constraint = ConstraintNodeDisjoint
			e.Cut = g.nodeNamesOf(cut.nodes)
			if len(cut.nodes) == 1 && len(cut.flowLinks) == 0 {
				e.Reason = fmt.Sprintf("only %d %s: every path from %s to %s passes through router %s",
					found, what, e.From, e.To, e.Cut[0])
			} else {
				e.Reason = fmt.Sprintf("only %d %s exist: every further path passes through one of %s",
					found, what, joinNames(append(prefixed("router ", e.Cut), prefixed("link ", g.linkNames(cut.flowLinks))...), 8))
			}
			e.Hint = fmt.Sprintf("drop node-disjointness: %d link-disjoint paths exist", min(len(linkPaths), k))
			return e
		}
	}

	e.Constraint = ConstraintTopology
	excluded := ""
	if nx := len(cut.maskedLinks) + len(cut.maskedNodes); nx > 0 {
		excluded = " once the excluded " + joinNames(append(prefixed("link ", g.linkNames(cut.maskedLinks)),
			prefixed("router ", g.nodeNamesOf(cut.maskedNodes))...), 8) + plural(nx, " is", " are") + " removed"
	}
	if found == 0 {
		e.Reason = fmt.Sprintf("%s and %s are not connected%s", e.From, e.To, excluded)
		e.Hint = "check the topology: no link joins the part holding " + e.From + " to the part holding " + e.To
		return e
	}
	names := append(prefixed("router ", g.nodeNamesOf(cut.nodes)), prefixed("link ", g.linkNames(cut.flowLinks))...)
	e.Cut = append(g.nodeNamesOf(cut.nodes), g.linkNames(cut.flowLinks)...)
	switch {
	case found == 1 && len(cut.nodes) == 0 && len(cut.flowLinks) == 1:
		e.Reason = fmt.Sprintf("no second %s path: link %s is a bridge (every path from %s to %s crosses it)%s",
			q.mode, e.Cut[0], e.From, e.To, excluded)
	case found == 1 && len(cut.nodes) == 1 && len(cut.flowLinks) == 0:
		e.Reason = fmt.Sprintf("no second %s path: every path from %s to %s passes through router %s%s",
			q.mode, e.From, e.To, e.Cut[0], excluded)
	default:
		e.Reason = fmt.Sprintf("only %d %s exist: every further path would cross one of %s%s",
			found, what, joinNames(names, 8), excluded)
	}
	e.Hint = "add a link that bypasses " + joinNames(names, 8)
	return e
}

func (q *query) describeFree(links []int32) string {
	seen := map[int32]bool{}
	var parts []string
	for _, l := range links {
		if seen[l] {
			continue
		}
		seen[l] = true
		ab, ba := q.headroom(l, true), q.headroom(l, false)
		free := topology.FormatRate(min(ab, ba)) + " free"
		if ab != ba {
			free = fmt.Sprintf("%s free A→B, %s free B→A", topology.FormatRate(ab), topology.FormatRate(ba))
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", q.g.links[l].Name, free))
	}
	slices.Sort(parts)
	return joinNames(parts, 8)
}

func prefixed(p string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
