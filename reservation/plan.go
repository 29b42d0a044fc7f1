package reservation

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/vonproject/von/disjoint"
	"github.com/vonproject/von/onpath"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// placement is where an ON goes: its paths, the links charged, and what each router on
// the paths must install.
type placement struct {
	Members      []*vonv1.Member
	Pairs        []*vonv1.MemberPairPaths
	Charges      []Charge
	Amounts      map[Charge]uint64 // bit/s charged per link direction (copies × rate)
	Charged      []*vonv1.ChargedLink
	Specs        map[string]*vonv1.PartitionSpec // by router
	Participants []string                        // routers, sorted
	Heuristic    bool
}

// placeRequest is what placement needs from a reservation request.
type placeRequest struct {
	Name         string
	Members      []string
	Rate         uint64
	Redundant    bool
	NodeDisjoint bool
	DSCP         uint32
	Port         uint32
}

// place computes paths for every member pair (a link-disjoint pair each when
// redundant, else one shortest path) with onpath — the planner `vonctl paths` uses —
// over links with room for every copy in both directions, and derives each router's
// partition: an HTB class on its interface of every ON link it touches (rate = the
// copies of one message that cross the link × the ON's rate), pins so each copy follows
// its path, and edge policing on its host-facing interfaces.
func place(ts *TopologyState, req placeRequest, reserved map[Charge]uint64, agents map[string]*vonv1.Agent) (*placement, error) {
	t, g := ts.Topo, ts.Graph
	p := &placement{Specs: map[string]*vonv1.PartitionSpec{}}
	for _, name := range req.Members {
		n, ok := t.Node(name)
		if !ok {
			return nil, fmt.Errorf("%w: member %q is not a node of the topology", ErrInvalid, name)
		}
		if n.Kind != topology.KindHost || !n.Address.IsValid() {
			return nil, fmt.Errorf("%w: member %q must be a host with an address in the topology", ErrInvalid, name)
		}
		p.Members = append(p.Members, &vonv1.Member{Name: name, Address: n.Address.String()})
	}
	preq := onpath.Request{Members: req.Members, Paths: 1, Rate: req.Rate, Reserved: reservedFunc(t, reserved)}
	if req.Redundant {
		preq.Paths, preq.NodeDisjoint = 2, req.NodeDisjoint
	}
	plan, err := onpath.PlanON(t, g, preq)
	if err != nil {
		var npe *disjoint.NoPairError
		var ce *onpath.CapacityError
		switch {
		case errors.As(err, &npe) && npe.Constraint == disjoint.ConstraintCapacity, errors.As(err, &ce):
			return nil, fmt.Errorf("%w: %w", ErrInsufficientCapacity, err)
		case errors.Is(err, onpath.ErrInput):
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnplaceable, err)
	}
	p.Heuristic = plan.Heuristic
	p.Amounts = map[Charge]uint64{}
	for _, li := range plan.Links {
		name, copies := t.Links[li].Name, plan.Copies[li]
		amt := uint64(copies) * req.Rate
		for _, d := range []Direction{AtoB, BtoA} {
			c := Charge{name, d}
			p.Charges = append(p.Charges, c)
			p.Amounts[c] = amt
			p.Charged = append(p.Charged, &vonv1.ChargedLink{Link: name, Direction: d.proto(), RateBps: amt, Copies: uint32(copies)})
		}
	}
	for _, pp := range plan.Pairs {
		mp := &vonv1.MemberPairPaths{SrcMember: pp.From, DstMember: pp.To}
		for pi, path := range pp.Result.Paths {
			out := &vonv1.Path{Index: uint32(pi), Cost: uint64(path.Cost)}
			for _, n := range path.Nodes {
				out.Nodes = append(out.Nodes, g.NodeName(n))
			}
			for _, l := range path.Links {
				out.Links = append(out.Links, t.Links[l].Name)
			}
			mp.Paths = append(mp.Paths, out)
		}
		p.Pairs = append(p.Pairs, mp)
	}
	if err := p.derive(ts, req, agents); err != nil {
		return nil, err
	}
	return p, nil
}

// reservedFunc adapts the ledger's reservations to the planner.
func reservedFunc(t *topology.Topology, reserved map[Charge]uint64) func(int, bool) uint64 {
	return func(link int, fromA bool) uint64 {
		d := AtoB
		if !fromA {
			d = BtoA
		}
		return reserved[Charge{Link: t.Links[link].Name, Dir: d}]
	}
}

func (d Direction) proto() vonv1.LinkDirection {
	if d == BtoA {
		return vonv1.LinkDirection_LINK_DIRECTION_B_TO_A
	}
	return vonv1.LinkDirection_LINK_DIRECTION_A_TO_B
}

// placeRecorded rebuilds the routers' partitions of a reservation from its recorded
// paths (not re-planned: capacity has been charged for exactly these).
func placeRecorded(ts *TopologyState, r *vonv1.Reservation, dscp, port uint32, agents map[string]*vonv1.Agent) (*placement, error) {
	p := &placement{Members: r.GetMembers(), Pairs: r.GetPaths(), Charged: r.GetLinks(), Charges: chargesOf(r), Amounts: amountsOf(r)}
	req := placeRequest{Name: r.GetName(), Rate: r.GetRateBps(), DSCP: dscp, Port: port}
	for _, m := range r.GetMembers() {
		req.Members = append(req.Members, m.GetName())
	}
	if err := p.derive(ts, req, agents); err != nil {
		return nil, err
	}
	return p, nil
}

// derive computes each router's partition from p.Pairs: an HTB class on the router's
// end of every ON link, pins so each copy follows its path in both directions, and
// edge policing on its host-facing interfaces.
func (p *placement) derive(ts *TopologyState, req placeRequest, agents map[string]*vonv1.Agent) error {
	t := ts.Topo
	p.Specs = map[string]*vonv1.PartitionSpec{}
	addrs := map[string]netip.Addr{}
	members := map[string]bool{}
	for _, m := range req.Members {
		n, ok := t.Node(m)
		if !ok {
			return fmt.Errorf("%w: member %q is not in the topology", ErrUnplaceable, m)
		}
		addrs[m] = n.Address
		members[m] = true
	}
	spec := func(router string) *vonv1.PartitionSpec {
		s := p.Specs[router]
		if s == nil {
			s = &vonv1.PartitionSpec{Reservation: req.Name, Classification: &vonv1.Classification{Dscp: req.DSCP, UdpPort: req.Port}}
			p.Specs[router] = s
		}
		return s
	}
	iface := func(node string, li int) (string, error) {
		e, _ := t.Links[li].End(node)
		if e.Interface == "" {
			return "", fmt.Errorf("%w: link %s names no interface on router %s; write it as %s:IFNAME in the topology", ErrUnplaceable, t.Links[li].Name, node, node)
		}
		return e.Interface, nil
	}
	linkIdx := func(name string) (int, error) {
		li, ok := t.LinkIndex(name)
		if !ok {
			return 0, fmt.Errorf("%w: link %s is not in the topology", ErrUnplaceable, name)
		}
		return li, nil
	}
	isRouter := func(node string) bool {
		n, _ := t.Node(node)
		return n.Kind == topology.KindRouter
	}
	// Classes: a router sends ON traffic out of its end of every ON link it touches.
	seenLink := map[int]bool{}
	for _, c := range p.Charges {
		li, err := linkIdx(c.Link)
		if err != nil {
			return err
		}
		if seenLink[li] {
			continue
		}
		seenLink[li] = true
		l := t.Links[li]
		for _, e := range []topology.Endpoint{l.A, l.B} {
			if !isRouter(e.Node) {
				continue
			}
			name, err := iface(e.Node, li)
			if err != nil {
				return err
			}
			// The class shapes what leaves this end: the charge of that direction.
			d := AtoB
			if e.Node == l.B.Node && e.Interface == l.B.Interface {
				d = BtoA
			}
			rate := req.Rate
			if amt, ok := p.Amounts[Charge{l.Name, d}]; ok {
				rate = amt
			}
			s := spec(e.Node)
			s.Classes = append(s.Classes, &vonv1.InterfaceClass{Interface: name, RateBps: rate, CapacityBps: l.Capacity, Link: l.Name})
		}
	}
	// Pins: every copy follows its path, in both directions of every pair.
	type pinKey struct {
		router string
		path   uint32
		dst    string
	}
	pinned := map[pinKey]bool{}
	for _, mp := range p.Pairs {
		for _, path := range mp.GetPaths() {
			for _, fwd := range []bool{true, false} {
				nodes, links := path.GetNodes(), path.GetLinks()
				if !fwd {
					nodes, links = reversed(nodes), reversed(links)
				}
				if len(nodes) != len(links)+1 {
					return fmt.Errorf("%w: malformed recorded path %v", ErrUnplaceable, nodes)
				}
				dst := nodes[len(nodes)-1]
				for i := 1; i < len(nodes)-1; i++ {
					router, next := nodes[i], nodes[i+1]
					if next == dst {
						continue // the last hop to the member: base routing delivers it
					}
					k := pinKey{router, path.GetIndex(), dst}
					if pinned[k] {
						continue // another pair already pinned this (path, destination) here
					}
					pinned[k] = true
					li, err := linkIdx(links[i])
					if err != nil {
						return err
					}
					egress, err := iface(router, li)
					if err != nil {
						return err
					}
					hop, err := nextHop(t, li, next, agents)
					if err != nil {
						return err
					}
					s := spec(router)
					s.Pins = append(s.Pins, &vonv1.PinningEntry{PathIndex: path.GetIndex(), Destination: addrs[dst].String(), NextHop: hop.String(), EgressInterface: egress})
				}
			}
		}
	}
	// Edge policing: on each host-facing interface of the ON's routers, only the member
	// attached there may send the ON's packets.
	p.Participants = p.Participants[:0]
	for router, s := range p.Specs {
		for _, li := range t.LinksOf(router) {
			far, _ := t.Links[li].Other(router)
			if isRouter(far.Node) {
				continue
			}
			near, _ := t.Links[li].End(router)
			if near.Interface == "" {
				continue
			}
			ep := &vonv1.EdgePolicy{AccessInterface: near.Interface}
			if members[far.Node] {
				ep.AllowedSources = []string{addrs[far.Node].String()}
			}
			s.EdgePolicies = append(s.EdgePolicies, ep)
		}
		p.Participants = append(p.Participants, router)
	}
	sort.Strings(p.Participants)
	return nil
}

// nextHop is the address of node's end of link li: from the topology (a_addr/b_addr)
// or else from the interfaces node's agent registered.
func nextHop(t *topology.Topology, li int, node string, agents map[string]*vonv1.Agent) (netip.Addr, error) {
	e, _ := t.Links[li].End(node)
	if e.Addr.IsValid() {
		return e.Addr, nil
	}
	if a := agents[node]; a != nil {
		for _, in := range a.GetInterfaces() {
			if in.GetName() != e.Interface {
				continue
			}
			for _, s := range in.GetAddresses() {
				pfx, err := netip.ParsePrefix(s)
				if err != nil {
					if ad, err2 := netip.ParseAddr(s); err2 == nil {
						pfx = netip.PrefixFrom(ad, 32)
					} else {
						continue
					}
				}
				if pfx.Addr().Is4() {
					return pfx.Addr(), nil
				}
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("%w: no address known for %s on link %s (the next hop of a path): start von-agent on %s or give %s_addr in the topology",
		ErrUnplaceable, e.String(), t.Links[li].Name, node, strings.ToLower(sideOf(t.Links[li], node)))
}

func sideOf(l topology.Link, node string) string {
	if l.A.Node == node {
		return "a"
	}
	return "b"
}

func reversed[T any](s []T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}
