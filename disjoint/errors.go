package disjoint

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of them; test
// with errors.Is. Failures to find paths are *NoPairError values that also
// say which constraint made the request impossible.
var (
	// ErrUnknownNode: a node name or index is not in the graph.
	ErrUnknownNode = errors.New("disjoint: unknown node")
	// ErrSameNode: source and target are the same node.
	ErrSameNode = errors.New("disjoint: source and target are the same node")
	// ErrNoPath: not even one usable path joins source and target.
	ErrNoPath = errors.New("disjoint: no path")
	// ErrNoDisjointPair: a path exists but not k disjoint ones that meet
	// every constraint.
	ErrNoDisjointPair = errors.New("disjoint: no disjoint paths")
	// ErrSearchLimit: the bounded SRLG search stopped before it could
	// prove that no SRLG-disjoint set exists. Wrapped together with
	// ErrNoDisjointPair.
	ErrSearchLimit = errors.New("disjoint: search limit reached")
	// ErrInvalidGraph: the graph given to New is malformed.
	ErrInvalidGraph = errors.New("disjoint: invalid graph")
	// ErrInvalidOptions: a query option is out of range.
	ErrInvalidOptions = errors.New("disjoint: invalid options")
	// ErrInternal: an internal consistency check failed. It is a bug;
	// please report it with the input.
	ErrInternal = errors.New("disjoint: internal error")
)

// Constraint names what made a request impossible.
type Constraint string

// The constraints a NoPairError can blame.
const (
	// ConstraintTopology: the graph itself (after excluded links and
	// nodes are removed) does not have enough disjoint paths.
	ConstraintTopology Constraint = "topology"
	// ConstraintNodeDisjoint: enough link-disjoint paths exist, but not
	// enough node-disjoint ones.
	ConstraintNodeDisjoint Constraint = "node-disjoint"
	// ConstraintCapacity: enough paths exist, but not enough of them have
	// the requested rate unreserved.
	ConstraintCapacity Constraint = "capacity"
	// ConstraintSRLG: enough disjoint paths exist, but every such set
	// shares a shared-risk link group.
	ConstraintSRLG Constraint = "srlg"
	// ConstraintSearchLimit: the SRLG search hit its bound without
	// finding a set; one may still exist.
	ConstraintSearchLimit Constraint = "search-limit"
)

// NoPairError reports why fewer than the requested number of paths could be
// found. It unwraps to ErrNoPath (not even one path) or ErrNoDisjointPair
// (and ErrSearchLimit for ConstraintSearchLimit).
type NoPairError struct {
	From, To   string     // node names
	Want       int        // paths requested
	Found      int        // disjoint paths that satisfy the other constraints
	Constraint Constraint // what made it impossible
	Reason     string     // human-readable explanation
	Hint       string     // what the user may try, may be empty
	// Cut lists link (or, for node-disjoint requests, node) names on the
	// cut that limits the number of paths, when known.
	Cut []string
}

// Error implements error.
func (e *NoPairError) Error() string {
	base := ErrNoDisjointPair
	if e.Found == 0 {
		base = ErrNoPath
	}
	return fmt.Sprintf("%v from %s to %s: %s", base, e.From, e.To, e.Reason)
}

// Unwrap returns the sentinel errors this error matches.
func (e *NoPairError) Unwrap() []error {
	if e.Found == 0 {
		return []error{ErrNoPath}
	}
	if e.Constraint == ConstraintSearchLimit {
		return []error{ErrNoDisjointPair, ErrSearchLimit}
	}
	return []error{ErrNoDisjointPair}
}
