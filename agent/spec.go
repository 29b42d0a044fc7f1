package agent

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/vonproject/von/partition"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// ifaceInfo is one kernel interface as the agent observed it.
type ifaceInfo struct {
	Name    string
	Addrs   []string // with prefix length
	Up      bool     // administratively and operationally up
	MTU     uint32
	Speed   uint64 // bit/s, 0 if unknown
	Foreign string // non-empty: a foreign root qdisc ("tbf 8001:")
}

func validIfName(n string) bool { return n != "" && len(n) <= 15 && !strings.ContainsAny(n, "/ \x00") }

// checkSpec validates a spec's syntax (ErrInvalid). It never looks at the kernel.
func checkSpec(spec *vonv1.PartitionSpec, maxTTL time.Duration) error {
	if spec == nil {
		return invalidf("partition spec is missing")
	}
	id := spec.GetOnId()
	if id == 0 {
		return invalidf("on_id 0 is not an allocated ON")
	}
	if c := spec.GetClassification(); c != nil {
		if c.GetDscp() > 63 {
			return invalidf("ON %d: dscp %d > 63", id, c.GetDscp())
		}
		if c.GetUdpPort() > 65535 {
			return invalidf("ON %d: udp_port %d > 65535", id, c.GetUdpPort())
		}
	}
	seen := map[string]bool{}
	for _, cl := range spec.GetClasses() {
		n := cl.GetInterface()
		if !validIfName(n) {
			return invalidf("ON %d: class interface name %q", id, n)
		}
		if seen[n] {
			return invalidf("ON %d: two classes on %s", id, n)
		}
		seen[n] = true
		if cl.GetRateBps() < 8 {
			return invalidf("ON %d: rate_bps %d on %s, need at least 8", id, cl.GetRateBps(), n)
		}
		if cl.GetCapacityBps() < 8000 {
			return invalidf("ON %d: capacity_bps %d on %s, need at least 8000", id, cl.GetCapacityBps(), n)
		}
		if cl.GetRateBps() > cl.GetCapacityBps() {
			return invalidf("ON %d: rate %s on %s exceeds the link capacity %s", id, fmtRate(cl.GetRateBps()), n, fmtRate(cl.GetCapacityBps()))
		}
	}
	pins := map[[2]any]bool{}
	for _, p := range spec.GetPins() {
		if p.GetPathIndex() > 1 {
			return invalidf("ON %d: pin path_index %d (0 or 1)", id, p.GetPathIndex())
		}
		dst, err := netip.ParseAddr(p.GetDestination())
		if err != nil || !dst.Is4() {
			return invalidf("ON %d: pin destination %q is not an IPv4 address", id, p.GetDestination())
		}
		if nh := p.GetNextHop(); nh != "" {
			if a, err := netip.ParseAddr(nh); err != nil || !a.Is4() {
				return invalidf("ON %d: pin next_hop %q is not an IPv4 address", id, nh)
			}
		}
		if !validIfName(p.GetEgressInterface()) {
			return invalidf("ON %d: pin egress interface %q", id, p.GetEgressInterface())
		}
		k := [2]any{p.GetPathIndex(), dst}
		if pins[k] {
			return invalidf("ON %d: path %d to %s pinned twice", id, p.GetPathIndex(), dst)
		}
		pins[k] = true
	}
	for _, e := range spec.GetEdgePolicies() {
		if !validIfName(e.GetAccessInterface()) {
			return invalidf("ON %d: edge policy access interface %q", id, e.GetAccessInterface())
		}
		for _, s := range e.GetAllowedSources() {
			if a, err := netip.ParseAddr(s); err != nil || !a.Is4() {
				return invalidf("ON %d: allowed source %q is not an IPv4 address", id, s)
			}
		}
	}
	if l := spec.GetLeaseTtl(); l != nil {
		if err := l.CheckValid(); err != nil || l.AsDuration() < 0 {
			return invalidf("ON %d: lease_ttl %v is not a valid non-negative duration", id, l)
		}
		if l.AsDuration() > maxTTL {
			return invalidf("ON %d: lease_ttl %v exceeds the agent's maximum %v", id, l.AsDuration(), maxTTL)
		}
	}
	return nil
}

// interfacesOf lists every interface a spec names, with its role.
func interfacesOf(spec *vonv1.PartitionSpec) (classes, others []string) {
	for _, c := range spec.GetClasses() {
		classes = append(classes, c.GetInterface())
	}
	for _, p := range spec.GetPins() {
		others = append(others, p.GetEgressInterface())
	}
	for _, e := range spec.GetEdgePolicies() {
		others = append(others, e.GetAccessInterface())
	}
	return classes, others
}

// problems lists why the router cannot enforce spec now. strict adds the
// checks of Prepare (interfaces up and configured as manageable); the
// reconciler uses the lenient form so a link that goes down does not remove
// a committed partition.
func (c Config) problems(spec *vonv1.PartitionSpec, ifs map[string]ifaceInfo, strict bool) []string {
	var out []string
	if cl := spec.GetClassification(); cl != nil {
		if (cl.GetDscp() != 0 && cl.GetDscp() != uint32(c.DSCP)) || (cl.GetUdpPort() != 0 && cl.GetUdpPort() != uint32(c.Port)) {
			out = append(out, fmt.Sprintf("classification dscp %d port %d differs from the agent's dscp %d port %d",
				cl.GetDscp(), cl.GetUdpPort(), c.DSCP, c.Port))
		}
	}
	classes, others := interfacesOf(spec)
	seen := map[string]bool{}
	for i, n := range append(classes, others...) {
		if seen[n] {
			continue
		}
		seen[n] = true
		info, ok := ifs[n]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: no such interface", n))
			continue
		case strict && !info.Up:
			out = append(out, fmt.Sprintf("%s is down", n))
		}
		if i >= len(classes) {
			continue
		}
		if strict && !c.manageable(n) {
			out = append(out, fmt.Sprintf("%s is not managed", n))
		}
		if info.Foreign != "" && !c.ForceRootQdisc {
			out = append(out, fmt.Sprintf("foreign root qdisc %s on %s (start the agent with --force-root-qdisc to replace it)", info.Foreign, n))
		}
	}
	return out
}

// toON translates a valid spec into partition's model.
func toON(spec *vonv1.PartitionSpec) partition.ON {
	on := partition.ON{ID: spec.GetOnId(), Rates: map[string]uint64{}}
	for _, c := range spec.GetClasses() {
		on.Rates[c.GetInterface()] = c.GetRateBps()
	}
	for _, p := range spec.GetPins() {
		dst := netip.MustParseAddr(p.GetDestination()) // checked by checkSpec
		nh := dst                                      // on-link: route via the destination itself
		if p.GetNextHop() != "" {
			nh = netip.MustParseAddr(p.GetNextHop())
		}
		on.Pins = append(on.Pins, partition.Pin{Path: uint8(p.GetPathIndex()), Dst: dst, NextHop: nh, Egress: p.GetEgressInterface()})
	}
	for _, e := range spec.GetEdgePolicies() {
		pol := partition.Policing{Access: e.GetAccessInterface()}
		for _, s := range e.GetAllowedSources() {
			pol.Members = append(pol.Members, netip.MustParseAddr(s))
		}
		on.Policing = append(on.Policing, pol)
	}
	return on
}

// bySeq returns the committed partitions in commit order.
func bySeq(m map[uint32]*committedON) []*committedON {
	out := make([]*committedON, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Seq != out[b].Seq {
			return out[a].Seq < out[b].Seq
		}
		return out[a].Spec.GetOnId() < out[b].Spec.GetOnId()
	})
	return out
}

// desired builds partition's desired state from the committed partitions.
// The managed interfaces are those a committed ON has a class on; an
// interface's capacity is the one of the most recently committed spec naming
// it (the manager's latest view of the topology). ONs the router cannot
// enforce now (missing interface, foreign qdisc, would overbook) are left out
// and returned in skipped with the reason; the reconciler retries them.
func (c Config) desired(committed map[uint32]*committedON, ifs map[string]ifaceInfo) (partition.Desired, map[uint32]string) {
	skipped := map[uint32]string{}
	order := bySeq(committed)
	capacity := map[string]uint64{}
	for _, on := range order {
		if len(c.problems(on.Spec, ifs, false)) > 0 {
			continue
		}
		for _, cl := range on.Spec.GetClasses() {
			capacity[cl.GetInterface()] = cl.GetCapacityBps()
		}
	}
	var d partition.Desired
	reserved := map[string]uint64{}
	classIDs := 0
	for _, on := range order {
		id := on.Spec.GetOnId()
		if p := c.problems(on.Spec, ifs, false); len(p) > 0 {
			skipped[id] = strings.Join(p, "; ")
			continue
		}
		var over []string
		for _, cl := range on.Spec.GetClasses() {
			n := cl.GetInterface()
			if reserved[n]+cl.GetRateBps() > capacity[n] {
				over = append(over, fmt.Sprintf("%s: %s reserved of %s, cannot add %s", n, fmtRate(reserved[n]), fmtRate(capacity[n]), fmtRate(cl.GetRateBps())))
			}
		}
		if len(over) == 0 && classIDs >= partition.MaxONs {
			over = append(over, "HTB class ids exhausted")
		}
		if len(over) > 0 {
			skipped[id] = strings.Join(over, "; ")
			continue
		}
		classIDs++
		for _, cl := range on.Spec.GetClasses() {
			reserved[cl.GetInterface()] += cl.GetRateBps()
		}
		d.ONs = append(d.ONs, toON(on.Spec))
	}
	for n, cp := range capacity {
		if reserved[n] > 0 {
			d.Interfaces = append(d.Interfaces, partition.Interface{Name: n, Capacity: cp})
		}
	}
	sort.Slice(d.Interfaces, func(a, b int) bool { return d.Interfaces[a].Name < d.Interfaces[b].Name })
	sort.Slice(d.ONs, func(a, b int) bool { return d.ONs[a].ID < d.ONs[b].ID })
	return d, skipped
}
