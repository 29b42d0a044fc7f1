package reservation

import (
	"fmt"
	"net/netip"

	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// TopologyToProto converts the model to its API form.
func TopologyToProto(t *topology.Topology) *vonv1.Topology {
	out := &vonv1.Topology{}
	addr := func(a netip.Addr) string {
		if a.IsValid() {
			return a.String()
		}
		return ""
	}
	for _, n := range t.Nodes {
		k := vonv1.NodeKind_NODE_KIND_ROUTER
		if n.Kind == topology.KindHost {
			k = vonv1.NodeKind_NODE_KIND_HOST
		}
		out.Nodes = append(out.Nodes, &vonv1.Node{Name: n.Name, Kind: k, Address: addr(n.Address)})
	}
	for _, l := range t.Links {
		out.Links = append(out.Links, &vonv1.Link{
			Name:        l.Name,
			A:           &vonv1.LinkEnd{Node: l.A.Node, Interface: l.A.Interface, Address: addr(l.A.Addr)},
			B:           &vonv1.LinkEnd{Node: l.B.Node, Interface: l.B.Interface, Address: addr(l.B.Addr)},
			CapacityBps: l.Capacity, Reservable: l.Reservable, Cost: l.Cost, Srlg: l.SRLG,
		})
	}
	return out
}

// TopologyFromProto validates an API topology with the file's rules.
func TopologyFromProto(p *vonv1.Topology) (*topology.Topology, error) {
	parse := func(s, what string) (netip.Addr, error) {
		if s == "" {
			return netip.Addr{}, nil
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return a, fmt.Errorf("%w: %s %q is not an IP address", ErrInvalid, what, s)
		}
		return a, nil
	}
	var nodes []topology.Node
	for _, n := range p.GetNodes() {
		a, err := parse(n.GetAddress(), "node "+n.GetName()+" address")
		if err != nil {
			return nil, err
		}
		k := topology.KindRouter
		if n.GetKind() == vonv1.NodeKind_NODE_KIND_HOST {
			k = topology.KindHost
		}
		nodes = append(nodes, topology.Node{Name: n.GetName(), Kind: k, Address: a})
	}
	var links []topology.Link
	for _, l := range p.GetLinks() {
		aa, err := parse(l.GetA().GetAddress(), "link "+l.GetName()+" a address")
		if err != nil {
			return nil, err
		}
		ba, err := parse(l.GetB().GetAddress(), "link "+l.GetName()+" b address")
		if err != nil {
			return nil, err
		}
		links = append(links, topology.Link{
			Name:     l.GetName(),
			A:        topology.Endpoint{Node: l.GetA().GetNode(), Interface: l.GetA().GetInterface(), Addr: aa},
			B:        topology.Endpoint{Node: l.GetB().GetNode(), Interface: l.GetB().GetInterface(), Addr: ba},
			Capacity: l.GetCapacityBps(), Reservable: l.GetReservable(), Cost: l.GetCost(), SRLG: l.GetSrlg(),
		})
	}
	t, err := topology.New(nodes, links)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return t, nil
}
