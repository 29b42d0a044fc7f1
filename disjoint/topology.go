package disjoint

import (
	"fmt"

	"github.com/vonproject/von/topology"
)

// FromTopology builds the graph of a topology. Node i and link i of the graph
// are Nodes[i] and Links[i] of the topology, so link indices (for
// Options.Reserved, ExcludeLinks and results) are the topology's.
func FromTopology(t *topology.Topology) (*Graph, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: nil topology", ErrInvalidGraph)
	}
	names := make([]string, len(t.Nodes))
	for i, n := range t.Nodes {
		names[i] = n.Name
	}
	links := make([]Link, len(t.Links))
	for i, l := range t.Links {
		a, okA := t.NodeIndex(l.A.Node)
		b, okB := t.NodeIndex(l.B.Node)
		if !okA || !okB {
			return nil, fmt.Errorf("%w: link %s joins an unknown node", ErrInvalidGraph, l.Name)
		}
		links[i] = Link{
			Name:       l.Name,
			A:          a,
			B:          b,
			Cost:       l.Cost,
			Capacity:   l.Capacity,
			Reservable: l.Reservable,
			SRLG:       l.SRLG,
		}
	}
	return New(names, links)
}
