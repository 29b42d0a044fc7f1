// Package topology parses and validates the VON topology file (docs/topology.md) into a
// typed model of nodes and full-duplex links. The path algorithms, the manager and the
// testbed all read the network through this model.
package topology

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Kind says what runs on a node.
type Kind string

const (
	// KindRouter is a Linux router running von-agent.
	KindRouter Kind = "router"
	// KindHost is an end system whose applications are ON members.
	KindHost Kind = "host"
)

// DefaultReservable is the fraction of a link's capacity ONs may reserve when the file
// does not say.
const DefaultReservable = 0.8

// DefaultCost is a link's routing cost when the file does not say.
const DefaultCost = 1

// Node is a router or a host.
type Node struct {
	Name string
	Kind Kind
	// Address is the address ON members on a host send from and to (zero if none).
	Address netip.Addr
	// Line is where the node is declared in the source file (0 if built in code).
	Line int
}

// Endpoint is one end of a link: a node and, optionally, its interface and address.
type Endpoint struct {
	Node string
	// Interface is needed to enforce a reservation, not to plan one; may be empty.
	Interface string
	// Addr is the interface address (a_addr/b_addr), the next hop for path pinning when
	// planning offline; zero if not given (agents report it when they register).
	Addr netip.Addr
}

// String renders the endpoint as in the file: node or node:interface.
func (e Endpoint) String() string {
	if e.Interface == "" {
		return e.Node
	}
	return e.Node + ":" + e.Interface
}

// Link is an undirected full-duplex link: Capacity applies in each direction.
type Link struct {
	// Name is unique: the file's `name:` or "A-B" from the node names, with "/2", "/3"…
	// appended for further parallel links between the same two nodes.
	Name string
	A, B Endpoint
	// Capacity in bit/s, per direction.
	Capacity uint64
	// Reservable is the fraction (0,1] of Capacity that ONs may reserve.
	Reservable float64
	// Cost is the routing cost (non-negative).
	Cost uint32
	// SRLG lists the shared-risk link groups the link belongs to.
	SRLG []string
	Line int
}

// ReservableRate is the capacity ONs may reserve on the link, in bit/s per direction.
func (l Link) ReservableRate() uint64 {
	return uint64(float64(l.Capacity) * l.Reservable)
}

// Other returns the endpoint of l opposite to node, and whether node is on l.
func (l Link) Other(node string) (Endpoint, bool) {
	switch node {
	case l.A.Node:
		return l.B, true
	case l.B.Node:
		return l.A, true
	}
	return Endpoint{}, false
}

// End returns the endpoint of l on node, and whether node is on l.
func (l Link) End(node string) (Endpoint, bool) {
	switch node {
	case l.A.Node:
		return l.A, true
	case l.B.Node:
		return l.B, true
	}
	return Endpoint{}, false
}

// Topology is a validated network model. Nodes and Links keep file order.
type Topology struct {
	Nodes []Node
	Links []Link

	nodeIndex map[string]int
	linkIndex map[string]int
	nodeLinks map[string][]int // node → its links, in file order
}

// NodeIndex returns the position of the named node in Nodes.
func (t *Topology) NodeIndex(name string) (int, bool) {
	i, ok := t.nodeIndex[name]
	return i, ok
}

// Node returns the named node.
func (t *Topology) Node(name string) (Node, bool) {
	i, ok := t.nodeIndex[name]
	if !ok {
		return Node{}, false
	}
	return t.Nodes[i], true
}

// IsRouter says whether name is a router of the topology.
func (t *Topology) IsRouter(name string) bool {
	n, ok := t.Node(name)
	return ok && n.Kind == KindRouter
}

// LinkIndex returns the position of the named link in Links.
func (t *Topology) LinkIndex(name string) (int, bool) {
	i, ok := t.linkIndex[name]
	return i, ok
}

// Link returns the named link.
func (t *Topology) Link(name string) (Link, bool) {
	i, ok := t.linkIndex[name]
	if !ok {
		return Link{}, false
	}
	return t.Links[i], true
}

// LinksOf returns the indices of the links attached to node, in file order
// (shared: do not change the slice).
func (t *Topology) LinksOf(node string) []int {
	if t.nodeLinks != nil {
		return t.nodeLinks[node]
	}
	var out []int
	for i, l := range t.Links {
		if l.A.Node == node || l.B.Node == node {
			out = append(out, i)
		}
	}
	return out
}

// Load reads and parses a topology file; errors carry the file name and line.
func Load(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		if ve, ok := err.(*ValidationError); ok {
			ve.File = path
			return nil, ve
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// New validates nodes and links built in code (the same rules as the file parser) and
// returns the model. Zero Reservable means DefaultReservable; link names are derived
// where empty.
func New(nodes []Node, links []Link) (*Topology, error) {
	t := &Topology{Nodes: append([]Node(nil), nodes...), Links: append([]Link(nil), links...)}
	for i := range t.Links {
		if t.Links[i].Reservable == 0 {
			t.Links[i].Reservable = DefaultReservable
		}
	}
	ve := &ValidationError{}
	t.index(ve)
	if len(ve.Problems) > 0 {
		return nil, ve
	}
	return t, nil
}

// index validates cross references and builds the name indexes, recording problems.
func (t *Topology) index(ve *ValidationError) {
	t.nodeIndex = make(map[string]int, len(t.Nodes))
	for i, n := range t.Nodes {
		if msg := checkName(n.Name); msg != "" {
			ve.add(n.Line, "node %q: %s", n.Name, msg)
			continue
		}
		if n.Kind != KindRouter && n.Kind != KindHost {
			ve.add(n.Line, "node %q: kind %q is not router or host", n.Name, n.Kind)
		}
		if j, dup := t.nodeIndex[n.Name]; dup {
			ve.add(n.Line, "duplicate node name %q (first declared on line %d)", n.Name, t.Nodes[j].Line)
			continue
		}
		t.nodeIndex[n.Name] = i
	}
	addrs := map[netip.Addr]string{}
	for _, n := range t.Nodes {
		if n.Address.IsValid() && !n.Address.Is4() {
			ve.add(n.Line, "node %q: address %s is not IPv4 (wire format v1 carries IPv4 only)", n.Name, n.Address)
		}
		if n.Address.IsValid() {
			if other, dup := addrs[n.Address]; dup && other != n.Name {
				ve.add(n.Line, "node %q: address %s is already node %q's", n.Name, n.Address, other)
			}
			addrs[n.Address] = n.Name
		}
	}

	t.linkIndex = make(map[string]int, len(t.Links))
	ifaces := map[string]int{} // "node:iface" → line
	pairs := map[string]int{}  // "A-B" → count of unnamed links so far
	for i := range t.Links {
		l := &t.Links[i]
		bad := false
		for _, e := range []Endpoint{l.A, l.B} {
			if e.Addr.IsValid() && !e.Addr.Is4() {
				ve.add(l.Line, "link %s: address %s of %s is not IPv4 (wire format v1 carries IPv4 only)", linkLabel(l), e.Addr, e.Node)
			}
			if _, ok := t.nodeIndex[e.Node]; !ok {
				ve.add(l.Line, "link %s: unknown node %q", linkLabel(l), e.Node)
				bad = true
				continue
			}
			if e.Interface != "" {
				if msg := checkIface(e.Interface); msg != "" {
					ve.add(l.Line, "link %s: interface %q: %s", linkLabel(l), e.Interface, msg)
				}
				key := e.Node + ":" + e.Interface
				if first, dup := ifaces[key]; dup {
					ve.add(l.Line, "link %s: interface %s is already used by the link on line %d", linkLabel(l), key, first)
				}
				ifaces[key] = l.Line
			}
		}
		if l.A.Node == l.B.Node && l.A.Node != "" {
			ve.add(l.Line, "link %s: self-loop: both ends are on node %q", linkLabel(l), l.A.Node)
			bad = true
		}
		if l.Capacity == 0 {
			ve.add(l.Line, "link %s: capacity must be positive", linkLabel(l))
		}
		if !(l.Reservable > 0 && l.Reservable <= 1) {
			ve.add(l.Line, "link %s: reservable %v must be in (0, 1]", linkLabel(l), l.Reservable)
		}
		for _, g := range l.SRLG {
			if strings.TrimSpace(g) == "" {
				ve.add(l.Line, "link %s: empty srlg name", linkLabel(l))
			}
		}
		if l.Name == "" && !bad {
			base := l.A.Node + "-" + l.B.Node
			pairs[base]++
			l.Name = base
			if n := pairs[base]; n > 1 {
				l.Name = fmt.Sprintf("%s/%d", base, n)
			}
		}
		if l.Name != "" {
			if j, dup := t.linkIndex[l.Name]; dup {
				ve.add(l.Line, "duplicate link name %q (first on line %d)", l.Name, t.Links[j].Line)
				continue
			}
			t.linkIndex[l.Name] = i
		}
	}
	if len(t.Nodes) == 0 && len(ve.Problems) == 0 {
		ve.add(0, "no nodes: a topology needs a `nodes:` list")
	}
	t.nodeLinks = make(map[string][]int, len(t.Nodes))
	for i, l := range t.Links {
		t.nodeLinks[l.A.Node] = append(t.nodeLinks[l.A.Node], i)
		if l.B.Node != l.A.Node {
			t.nodeLinks[l.B.Node] = append(t.nodeLinks[l.B.Node], i)
		}
	}
}

func linkLabel(l *Link) string {
	if l.Name != "" {
		return fmt.Sprintf("%q", l.Name)
	}
	return l.A.String() + "--" + l.B.String()
}

// checkName returns why a node name is unusable, or "".
func checkName(s string) string {
	if s == "" {
		return "name is empty"
	}
	if len(s) > 63 {
		return "name is longer than 63 characters"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Sprintf("character %q not allowed (use letters, digits, '-', '_', '.')", r)
		}
	}
	return ""
}

// checkIface returns why a Linux interface name is unusable, or "".
func checkIface(s string) string {
	if len(s) > 15 {
		return "Linux interface names have at most 15 characters"
	}
	if s == "." || s == ".." {
		return "not a valid interface name"
	}
	for _, r := range s {
		if r <= ' ' || r == '/' || r == ':' || r > '~' {
			return fmt.Sprintf("character %q not allowed in an interface name", r)
		}
	}
	return ""
}
