package reservation

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/vonproject/von/disjoint"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// placement is where an ON goes: its paths, the links charged, and what each router on
// the paths must install.
type placement struct {
	Members      []*vonv1.Member
	Pairs        []*vonv1.MemberPairPaths
	Charges      []Charge
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
// redundant, else one shortest path) over links with Rate unreserved in both
// directions, and derives each router's partition: an HTB class on its interface of
// every ON link it touches, pins so each copy follows its path, and edge policing on
// its host-facing interfaces.
func place(ts *TopologyState, req placeRequest, reserved map[Charge]uint64, agents map[string]*vonv1.Agent) (*placement, error) {
	t, g := ts.Topo, ts.Graph
	p := &placement{Specs: map[string]*vonv1.PartitionSpec{}}
	idx := make([]int, 0, len(req.Members))
	for _, name := range req.Members {
		n, ok := t.Node(name)
		if !ok {
			return nil, fmt.Errorf("%w: member %q is not a node of the topology", ErrInvalid, name)
		}
		if n.Kind != topology.KindHost || !n.Address.IsValid() {
			return nil, fmt.Errorf("%w: member %q must be a host with an address in the topology", ErrInvalid, name)
		}
		i, _ := t.NodeIndex(name)
		idx = append(idx, i)
		p.Members = append(p.Members, &vonv1.Member{Name: name, Address: n.Address.String()})
	}
	opt := disjoint.Options{K: 1, Rate: req.Rate, Reserved: func(link int, fromA bool) uint64 {
		d := AtoB
		if !fromA {
			d = BtoA
		}
		return reserved[Charge{Link: t.Links[link].Name, Dir: d}]
	}}
	if req.Redundant {
		opt.K = 2
		if req.NodeDisjoint {
			opt.Mode = disjoint.NodeDisjoint
		}
	}
	plan, err := planPairs(ts, idx, opt)
	if err != nil {
		var npe *disjoint.NoPairError
		var ce *CapacityError
		if errors.As(err, &npe) && npe.Constraint == disjoint.ConstraintCapacity || errors.As(err, &ce) {
			return nil, fmt.Errorf("%w: %w", ErrInsufficientCapacity, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnplaceable, err)
	}
	for _, li := range plan.Links {
		name := t.Links[li].Name
		p.Charges = append(p.Charges, Charge{name, AtoB}, Charge{name, BtoA})
		p.Charged = append(p.Charged,
			&vonv1.ChargedLink{Link: name, Direction: vonv1.LinkDirection_LINK_DIRECTION_A_TO_B, RateBps: req.Rate},
			&vonv1.ChargedLink{Link: name, Direction: vonv1.LinkDirection_LINK_DIRECTION_B_TO_A, RateBps: req.Rate})
	}
	for _, pp := range plan.Pairs {
		mp := &vonv1.MemberPairPaths{SrcMember: g.NodeName(pp.From), DstMember: g.NodeName(pp.To)}
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

// planPairs finds the paths of every member pair. Hosts never forward, so paths avoid
// every host but the pair's own two. A host with a single link (the usual case) cannot
// have two link-disjoint paths of its own: for a redundant ON the pair is computed
// between the routers the hosts hang off, and the access links are added to both
// paths — they are the one part of the ON redundancy cannot cover.
func planPairs(ts *TopologyState, members []int, opt disjoint.Options) (*disjoint.Plan, error) {
	t, g := ts.Topo, ts.Graph
	var hosts []int
	for i, n := range t.Nodes {
		if n.Kind == topology.KindHost {
			hosts = append(hosts, i)
		}
	}
	// attach returns the node to plan from and the access link (or -1).
	attach := func(m int) (int, int) {
		links := t.LinksOf(t.Nodes[m].Name)
		if opt.K < 2 || len(links) != 1 {
			return m, -1
		}
		far, _ := t.Links[links[0]].Other(t.Nodes[m].Name)
		r, _ := t.NodeIndex(far.Node)
		return r, links[0]
	}
	plan := &disjoint.Plan{}
	inUnion := map[int]bool{}
	for i, a := range members {
		for _, b := range members[i+1:] {
			na, la := attach(a)
			nb, lb := attach(b)
			pairName := t.Nodes[a].Name + " and " + t.Nodes[b].Name
			if na == nb {
				return nil, fmt.Errorf("members %s both hang off router %s: no two disjoint paths exist between them", pairName, t.Nodes[na].Name)
			}
			o := opt
			o.ExcludeNodes = nil
			for _, h := range hosts {
				if h != a && h != b {
					o.ExcludeNodes = append(o.ExcludeNodes, h)
				}
			}
			for _, l := range []int{la, lb} {
				if l >= 0 && opt.Rate > 0 {
					for _, fromA := range []bool{true, false} {
						if r := opt.Reserved(l, fromA); g.Available(l) < r+opt.Rate {
							d := AtoB
							if !fromA {
								d = BtoA
							}
							return nil, fmt.Errorf("members %s: access %w", pairName, &CapacityError{Charge: Charge{t.Links[l].Name, d}, Limit: g.Available(l), Reserved: r, Rate: opt.Rate})
						}
					}
				}
			}
			res, err := g.Disjoint(na, nb, o)
			if err != nil {
				return nil, fmt.Errorf("members %s: %w", pairName, err)
			}
			if la >= 0 || lb >= 0 {
				for pi := range res.Paths {
					p := &res.Paths[pi]
					if la >= 0 {
						p.Nodes = append([]int{a}, p.Nodes...)
						p.Links = append([]int{la}, p.Links...)
						p.Cost += int64(t.Links[la].Cost)
						res.TotalCost += int64(t.Links[la].Cost)
					}
					if lb >= 0 {
						p.Nodes = append(p.Nodes, b)
						p.Links = append(p.Links, lb)
						p.Cost += int64(t.Links[lb].Cost)
						res.TotalCost += int64(t.Links[lb].Cost)
					}
				}
			}
			plan.Pairs = append(plan.Pairs, disjoint.PairPaths{From: a, To: b, Result: res})
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
	sort.Ints(plan.Links)
	return plan, nil
}

// placeRecorded rebuilds the routers' partitions of a reservation from its recorded
// paths (not re-planned: capacity has been charged for exactly these).
func placeRecorded(ts *TopologyState, r *vonv1.Reservation, dscp, port uint32, agents map[string]*vonv1.Agent) (*placement, error) {
	p := &placement{Members: r.GetMembers(), Pairs: r.GetPaths(), Charged: r.GetLinks(), Charges: chargesOf(r)}
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
			s := spec(e.Node)
			s.Classes = append(s.Classes, &vonv1.InterfaceClass{Interface: name, RateBps: req.Rate, CapacityBps: l.Capacity, Link: l.Name})
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
