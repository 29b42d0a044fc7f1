package disjoint

import "fmt"

// Mode selects what the paths must not share.
type Mode uint8

const (
	// LinkDisjoint paths share no link (they may cross the same router).
	LinkDisjoint Mode = iota
	// NodeDisjoint paths share no link and no node other than the two
	// ends (router-disjoint).
	NodeDisjoint
)

// String returns "link-disjoint" or "node-disjoint".
func (m Mode) String() string {
	if m == NodeDisjoint {
		return "node-disjoint"
	}
	return "link-disjoint"
}

// Direction says in which directions a link must have the requested rate
// unreserved to be usable.
type Direction uint8

const (
	// BothDirections (the default): a link is usable only if both of its
	// directions can carry Rate. This is what an ON needs: members send
	// to each other, so traffic crosses every link of its paths both ways,
	// and the manager charges an ON link in both directions.
	BothDirections Direction = iota
	// Forward: a link is usable in the direction a path crosses it, from
	// the source towards the target, if that direction can carry Rate.
	// For one-way flows.
	Forward
)

// DefaultSearchLimit bounds the shortest-path computations an SRLG-disjoint
// search may spend before it settles for the best set found (and says so).
const DefaultSearchLimit = 20000

// Options tune a query. The zero value asks for a min-sum link-disjoint pair,
// SRLG-disjoint, with no capacity requirement.
type Options struct {
	// Mode: link-disjoint (default) or node-disjoint.
	Mode Mode
	// K is the number of paths; 0 means 2. K = 1 is a plain shortest path.
	K int
	// Rate in bit/s the paths must carry; 0 disables the capacity check.
	Rate uint64
	// Reserved returns the bandwidth already reserved on link in one
	// direction (fromA: the A→B direction). Nil means nothing is reserved.
	// A link direction is usable if Available(link) − Reserved ≥ Rate.
	Reserved func(link int, fromA bool) uint64
	// Direction: which directions need Rate (default both).
	Direction Direction
	// IgnoreSRLG allows the paths to share shared-risk link groups.
	IgnoreSRLG bool
	// SearchLimit bounds the SRLG search (shortest-path computations);
	// 0 means DefaultSearchLimit.
	SearchLimit int
	// ExcludeLinks and ExcludeNodes are treated as absent (failed links,
	// routers in maintenance). Excluding the source or target is an error.
	ExcludeLinks []int
	ExcludeNodes []int
}

// ReservedSlice adapts a slice to Options.Reserved: r[2*link] is reserved in
// the A→B direction, r[2*link+1] in the B→A direction. Missing entries are 0.
func ReservedSlice(r []uint64) func(link int, fromA bool) uint64 {
	return func(link int, fromA bool) uint64 {
		i := 2 * link
		if !fromA {
			i++
		}
		if i < 0 || i >= len(r) {
			return 0
		}
		return r[i]
	}
}

func (g *Graph) checkOptions(from, to int, opt *Options) error {
	n := len(g.nodeNames)
	if from < 0 || from >= n {
		return fmt.Errorf("%w: source index %d", ErrUnknownNode, from)
	}
	if to < 0 || to >= n {
		return fmt.Errorf("%w: target index %d", ErrUnknownNode, to)
	}
	if from == to {
		return fmt.Errorf("%w: %s", ErrSameNode, g.nodeNames[from])
	}
	if opt.K < 0 || opt.K > 64 {
		return fmt.Errorf("%w: K = %d, want 1..64", ErrInvalidOptions, opt.K)
	}
	if opt.Mode > NodeDisjoint {
		return fmt.Errorf("%w: unknown mode %d", ErrInvalidOptions, opt.Mode)
	}
	if opt.Direction > Forward {
		return fmt.Errorf("%w: unknown direction %d", ErrInvalidOptions, opt.Direction)
	}
	if opt.SearchLimit < 0 {
		return fmt.Errorf("%w: negative search limit", ErrInvalidOptions)
	}
	for _, l := range opt.ExcludeLinks {
		if l < 0 || l >= len(g.links) {
			return fmt.Errorf("%w: excluded link %d does not exist", ErrInvalidOptions, l)
		}
	}
	for _, v := range opt.ExcludeNodes {
		if v < 0 || v >= n {
			return fmt.Errorf("%w: excluded node %d does not exist", ErrInvalidOptions, v)
		}
		if v == from || v == to {
			return fmt.Errorf("%w: excluded node %s is an end of the request", ErrInvalidOptions, g.nodeNames[v])
		}
	}
	return nil
}

// headroom returns what link l can still take in one direction.
func (q *query) headroom(l int32, fromA bool) uint64 {
	av := q.g.avail[l]
	if q.reserved == nil {
		return av
	}
	r := q.reserved(int(l), fromA)
	if r >= av {
		return 0
	}
	return av - r
}

// arcUsable reports whether arc a (2l: A→B, 2l+1: B→A) can carry the rate.
// The answer for both directions of a link is computed once per query and
// cached (s.use), so Reserved is called at most twice per link touched.
func (q *query) arcUsable(a int32) bool {
	if q.rate == 0 {
		return true
	}
	l := a >> 1
	u := q.s.use[l]
	if u>>2 != q.s.useGen {
		ab, ba := q.headroom(l, true) >= q.rate, q.headroom(l, false) >= q.rate
		if q.dir == BothDirections {
			ab, ba = ab && ba, ab && ba
		}
		u = q.s.useGen << 2
		if ab {
			u |= 1
		}
		if ba {
			u |= 2
		}
		q.s.use[l] = u
	}
	return u&(1<<(a&1)) != 0
}
