// Package disjoint computes paths over a VON topology: plain shortest paths
// and optimal (min-sum) sets of k link-disjoint or node-disjoint paths, the
// "router- and link-disjoint independent paths" an ON needs so that every
// packet can travel twice.
//
// The pair algorithm is Suurballe's, in Bhandari's form, as a successive
// shortest path min-cost flow with Johnson potentials: one Dijkstra for the
// first path, one Dijkstra per further path on the residual graph (reduced
// costs stay non-negative, so no Bellman-Ford is needed), then a path
// decomposition that cancels links used in both directions. Both searches stop
// as soon as the target is settled. Node-disjoint (router-disjoint) pairs use
// node splitting, done implicitly so no second graph is built.
//
// Graphs are undirected multigraphs with non-negative integer costs; parallel
// links are distinct links. Each query may ask for capacity (only links whose
// unreserved capacity carries the requested rate, per direction, see
// Direction) and avoids shared-risk link groups (SRLGs) unless told not to.
// SRLG-disjointness is NP-hard in general; it is solved exactly by a bounded
// branch-and-bound over the cheapest path (Yen enumeration) and, when the
// bound is hit, the answer is flagged Result.Heuristic.
//
// Output is deterministic: ties are broken by node and link index, and paths
// are returned cheapest first, then by hop count, then by link indices.
// A Graph is immutable once built and safe for concurrent queries.
package disjoint
