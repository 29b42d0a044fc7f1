package testbed

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/vonproject/von/topology"
)

var (
	// AddressSpace holds every address a testbed uses.
	AddressSpace = netip.MustParsePrefix("10.77.0.0/16")
	// LinkPool is where the /30 link subnets come from: link i gets the i-th /30.
	LinkPool = netip.MustParsePrefix("10.77.128.0/17")
	// hostPool is where hosts without an address in the file get one.
	hostPool = netip.MustParsePrefix("10.77.100.0/24")
)

// Plan is the addressing and routing a testbed derives from a topology.
type Plan struct {
	Topology *topology.Topology
	Nodes    []NodePlan // same order as Topology.Nodes
	Links    []LinkPlan // same order as Topology.Links
	index    map[string]int
}

// NodePlan is one node's addresses and base routes.
type NodePlan struct {
	Name string
	Kind topology.Kind
	// Addr is the node's own address (hosts always have one; routers only if the file
	// gives one). It sits on the loopback interface as a /32.
	Addr    netip.Addr
	Forward bool
	Routes  []Route
}

// LinkPlan is one link's subnet and interface names.
type LinkPlan struct {
	Name     string
	Subnet   netip.Prefix
	A, B     EndPlan
	Capacity uint64
	Cost     uint32
}

// EndPlan is one end of a link as built.
type EndPlan struct {
	Node  string
	Iface string
	Addr  netip.Addr
}

// Route is a static route: Dst via Via on Dev (Src sets the preferred source).
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
	Dev string
	Src netip.Addr
}

// String renders the route as `ip route add` arguments.
func (r Route) String() string {
	s := fmt.Sprintf("%s via %s dev %s", r.Dst, r.Via, r.Dev)
	if r.Src.IsValid() {
		s += " src " + r.Src.String()
	}
	return s
}

// NewPlan derives addresses, interface names and shortest-path base routes. Hosts
// terminate traffic but never forward it, so no route transits a host.
func NewPlan(topo *topology.Topology) (*Plan, error) {
	nl := len(topo.Links)
	if max := 1 << (30 - LinkPool.Bits()); nl > max {
		return nil, fmt.Errorf("testbed: %d links, the addressing plan holds %d", nl, max)
	}
	p := &Plan{Topology: topo, index: map[string]int{}}
	used := map[netip.Addr]string{}
	for i, n := range topo.Nodes {
		p.index[n.Name] = i
		np := NodePlan{Name: n.Name, Kind: n.Kind, Addr: n.Address, Forward: n.Kind == topology.KindRouter}
		if np.Addr.IsValid() {
			if !AddressSpace.Contains(np.Addr) || LinkPool.Contains(np.Addr) {
				return nil, fmt.Errorf("testbed: node %s address %s must be in %s and outside the link pool %s", n.Name, np.Addr, AddressSpace, LinkPool)
			}
			used[np.Addr] = n.Name
		}
		p.Nodes = append(p.Nodes, np)
	}
	next := hostPool.Addr().Next()
	for i := range p.Nodes {
		if p.Nodes[i].Kind != topology.KindHost || p.Nodes[i].Addr.IsValid() {
			continue
		}
		for used[next] != "" {
			next = next.Next()
		}
		if !hostPool.Contains(next) {
			return nil, fmt.Errorf("testbed: more hosts without an address than %s holds", hostPool)
		}
		p.Nodes[i].Addr = next
		used[next] = p.Nodes[i].Name
	}
	ifaces := map[string]bool{}
	for _, l := range topo.Links {
		for _, e := range []topology.Endpoint{l.A, l.B} {
			if e.Interface != "" {
				ifaces[e.Node+":"+e.Interface] = true
			}
		}
	}
	base := LinkPool.Addr().As4()
	for i, l := range topo.Links {
		off := uint32(i) * 4
		a4 := base
		a4[2] += byte(off >> 8)
		a4[3] += byte(off)
		sub := netip.PrefixFrom(netip.AddrFrom4(a4), 30)
		lp := LinkPlan{Name: l.Name, Subnet: sub, Capacity: l.Capacity, Cost: l.Cost}
		for side, e := range []topology.Endpoint{l.A, l.B} {
			name := e.Interface
			if name == "" {
				for k := 0; name == "" || ifaces[e.Node+":"+name]; k++ {
					name = fmt.Sprintf("l%d", i)
					if k > 0 {
						name = fmt.Sprintf("l%dx%d", i, k)
					}
				}
				ifaces[e.Node+":"+name] = true
			}
			addr := sub.Addr().Next()
			if side == 1 {
				addr = addr.Next()
			}
			ep := EndPlan{Node: e.Node, Iface: name, Addr: addr}
			if side == 0 {
				lp.A = ep
			} else {
				lp.B = ep
			}
		}
		p.Links = append(p.Links, lp)
	}
	for i := range p.Nodes {
		p.Nodes[i].Routes = p.routesFrom(i)
	}
	return p, nil
}

// Node returns the plan of the named node.
func (p *Plan) Node(name string) (*NodePlan, bool) {
	i, ok := p.index[name]
	if !ok {
		return nil, false
	}
	return &p.Nodes[i], true
}

// Link returns the plan of the named link.
func (p *Plan) Link(name string) (*LinkPlan, bool) {
	i, ok := p.Topology.LinkIndex(name)
	if !ok {
		return nil, false
	}
	return &p.Links[i], true
}

// end returns the ends of link l as seen from node: (near, far).
func (l *LinkPlan) end(node string) (near, far EndPlan) {
	if l.A.Node == node {
		return l.A, l.B
	}
	return l.B, l.A
}

// shortest runs Dijkstra from src. It returns the distance to each node and the first
// link taken from src towards it (-1 if unreachable or src). Ties go to the lower node
// index and then the lower link index, so the result is deterministic. Hosts other than
// src are never transited.
func (p *Plan) shortest(src int) (dist []uint64, first []int) {
	const inf = ^uint64(0)
	n := len(p.Nodes)
	dist = make([]uint64, n)
	first = make([]int, n)
	done := make([]bool, n)
	for i := range dist {
		dist[i], first[i] = inf, -1
	}
	dist[src] = 0
	adj := make([][]int, n)
	for li, l := range p.Links {
		a, b := p.index[l.A.Node], p.index[l.B.Node]
		adj[a] = append(adj[a], li)
		adj[b] = append(adj[b], li)
	}
	for {
		u := -1
		for i := range n {
			if !done[i] && dist[i] != inf && (u < 0 || dist[i] < dist[u]) {
				u = i
			}
		}
		if u < 0 {
			return dist, first
		}
		done[u] = true
		if u != src && p.Nodes[u].Kind == topology.KindHost {
			continue
		}
		for _, li := range adj[u] {
			l := &p.Links[li]
			_, far := l.end(p.Nodes[u].Name)
			v := p.index[far.Node]
			if nd := dist[u] + uint64(l.Cost); !done[v] && nd < dist[v] {
				dist[v] = nd
				if u == src {
					first[v] = li
				} else {
					first[v] = first[u]
				}
			}
		}
	}
}

func (p *Plan) routesFrom(src int) []Route {
	me := &p.Nodes[src]
	_, first := p.shortest(src)
	hop := func(dst int) (Route, bool) {
		li := first[dst]
		if li < 0 {
			return Route{}, false
		}
		near, far := p.Links[li].end(me.Name)
		return Route{Via: far.Addr, Dev: near.Iface}, true
	}
	var routes []Route
	if me.Kind == topology.KindHost {
		for _, l := range p.Links {
			if l.A.Node == me.Name || l.B.Node == me.Name {
				near, far := l.end(me.Name)
				routes = append(routes, Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: far.Addr, Dev: near.Iface, Src: me.Addr})
				return routes
			}
		}
		return nil
	}
	// One /32 per remote interface address: a /30 route towards the nearer end would
	// not reach the far end when the nearer end is a host (hosts do not forward).
	for _, l := range p.Links {
		for _, e := range []EndPlan{l.A, l.B} {
			if e.Node == me.Name {
				continue
			}
			if r, ok := hop(p.index[e.Node]); ok {
				r.Dst = netip.PrefixFrom(e.Addr, 32)
				routes = append(routes, r)
			}
		}
	}
	for i, n := range p.Nodes {
		if i == src || !n.Addr.IsValid() {
			continue
		}
		if r, ok := hop(i); ok {
			r.Dst = netip.PrefixFrom(n.Addr, 32)
			routes = append(routes, r)
		}
	}
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Dst.Addr().Less(routes[j].Dst.Addr()) })
	return routes
}
