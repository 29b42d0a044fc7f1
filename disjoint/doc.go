// Package disjoint computes paths over a VON topology: plain shortest paths
// and optimal (min-sum) sets of k link-disjoint or node-disjoint paths, the
// "router- and link-disjoint independent paths" an ON needs so that every
// packet can travel twice.
//
// # Algorithm
//
// The min-sum pair is Suurballe's algorithm in Bhandari's form, run as a
// successive-shortest-path min-cost flow with Johnson potentials, so it
// generalises to k paths. Links are undirected and full duplex: link l gives
// two arcs of capacity 1 (A→B, B→A). A flow that uses both arcs of a link is
// never cheaper than one that cancels them (costs are ≥ 0), so cancelling
// them and then removing flow cycles yields k simple, link-disjoint paths of
// the same optimal cost. Node-disjoint (router-disjoint) sets split every
// router v into v_in → v_out with capacity 1; the split network is implicit
// (search node 2v and 2v+1), nothing is copied.
//
// Speed comes from two choices. The first path is found by a Dijkstra search
// backwards from the target that stops as soon as the source is settled; its
// distances to the target h(v), capped at D = h(source), give the potential
// D − min(h(v), D). That potential keeps every reduced cost non-negative
// (h is consistent, and so is its minimum with a constant), makes the first
// path and its reversal cost 0, and acts as an A* heuristic: the residual
// search for the second path settles a few dozen nodes where a plain
// Dijkstra settles thousands. A pair therefore costs little more than one
// Dijkstra (docs/benchmarks.md). Searches use an indexed 4-ary heap and
// generation stamps, so nothing is cleared between queries, and per-query
// arrays come from a pool: a query allocates only its result.
//
// # Constraints
//
// Capacity: a link direction is usable if floor(Capacity × Reservable) minus
// what Options.Reserved says is already reserved is at least Options.Rate.
// By default (BothDirections) a link needs that headroom in both directions:
// ON members send to each other, so an ON's traffic crosses each of its
// links both ways and the manager charges both directions. Forward checks
// only the direction of travel, for one-way flows.
//
// SRLGs: by default no two paths may share a shared-risk link group. Finding
// the cheapest SRLG-disjoint pair is NP-hard in general. It is solved
// exactly by a best-first branch and bound: the two paths get roles, each
// search node forbids some links/groups/routers to each role, the bound is
// the larger of the two roles' shortest paths and the min-sum pair that
// ignores the per-role bans, and a conflict (a shared group, link or router)
// between the roles' shortest paths branches into "the first avoids it" and
// "the second avoids it". On the example ISPs (270 and 378 nodes, dozens of
// groups) every host pair is solved exactly in milliseconds. For k > 2 the
// cheapest path is enumerated in cost order (Yen) and the rest solved
// recursively. The work is bounded (Options.SearchLimit shortest-path
// searches); past the bound the best set found is returned with
// Result.Heuristic set and a Note, or, if none was found, an error with
// ConstraintSearchLimit.
//
// # Output
//
// Output is deterministic: ties are broken by node index (heap order) and
// link order, and paths are returned cheapest first, then by hop count, then
// by link indices. When no set exists the error is a *NoPairError naming the
// constraint that made it impossible (topology, node-disjointness, capacity,
// SRLG) and the cut that limits the paths, e.g. "no second link-disjoint
// path: link r3-r4 is a bridge". A Graph is immutable once built and safe for
// concurrent queries.
package disjoint
