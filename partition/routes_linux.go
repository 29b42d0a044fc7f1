package partition

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Path pinning. A pin slot s names one (next hop, egress) pair and owns:
//
//	ip rule pref RulePriority+s fwmark (MarkBase+s)/0xffffffff lookup TableBase+s
//	ip route table TableBase+s: default via <next hop> dev <egress>
//
// nftables sets the mark per (ON id, path index, destination). A rule is ours
// when its priority and its table are both in our ranges; every route in a
// table of our range is ours.

const routeProto = 86 // rtm_protocol of our routes (shows as "proto 86")

type pinKey struct {
	nh      netip.Addr
	ifindex int
}

var fullMask = uint32(0xffffffff)

func (r *Router) ourRule(ru vnl.Rule) (int, bool) {
	s := ru.Priority - int(r.cfg.RulePriority)
	t := ru.Table - int(r.cfg.TableBase)
	return s, s >= 0 && s < PinSlots && t >= 0 && t < PinSlots
}

func (r *Router) ourTable(table int) (int, bool) {
	s := table - int(r.cfg.TableBase)
	return s, s >= 0 && s < PinSlots
}

func (r *Router) wantRule(s int) *vnl.Rule {
	ru := vnl.NewRule()
	ru.Family = vnl.FAMILY_V4
	ru.Priority = int(r.cfg.RulePriority) + s
	ru.Table = int(r.cfg.TableBase) + s
	ru.Mark = r.cfg.MarkBase + uint32(s)
	ru.Mask = &fullMask
	return ru
}

func (r *Router) ruleIsExact(ru vnl.Rule, s int) bool {
	w := r.wantRule(s)
	return ru.Priority == w.Priority && ru.Table == w.Table && ru.Mark == w.Mark &&
		ru.Mask != nil && *ru.Mask == fullMask && ru.Src == nil && ru.Dst == nil &&
		ru.IifName == "" && ru.OifName == "" && !ru.Invert && ru.Goto <= 0 &&
		ru.Dport == nil && ru.Sport == nil && ru.IPProto <= 0 && ru.Tos == 0
}

func (r *Router) wantRoute(s int, k pinKey) *vnl.Route {
	return &vnl.Route{
		Table:     int(r.cfg.TableBase) + s,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        net.IP(k.nh.AsSlice()),
		LinkIndex: k.ifindex,
		Protocol:  routeProto,
		Family:    vnl.FAMILY_V4,
	}
}

func isDefault(d *net.IPNet) bool {
	if d == nil {
		return true
	}
	ones, _ := d.Mask.Size()
	return ones == 0
}

func routeKey(rt vnl.Route) (pinKey, bool) {
	gw, ok := netip.AddrFromSlice(rt.Gw)
	if !ok || !isDefault(rt.Dst) || len(rt.MultiPath) > 0 {
		return pinKey{}, false
	}
	return pinKey{nh: gw.Unmap(), ifindex: rt.LinkIndex}, true
}

type routeState struct {
	rules  map[int][]vnl.Rule  // slot → our rules at that priority
	routes map[int][]vnl.Route // slot → routes in our table
	bySlot map[int]pinKey      // slots whose table holds exactly one valid pin route
}

func (r *Router) readRoutes() (routeState, error) {
	st := routeState{rules: map[int][]vnl.Rule{}, routes: map[int][]vnl.Route{}, bySlot: map[int]pinKey{}}
	rules, err := r.nl.RuleList(vnl.FAMILY_V4)
	if err != nil {
		return st, fmt.Errorf("%w: list ip rules: %w", ErrKernel, err)
	}
	for _, ru := range rules {
		if s, ok := r.ourRule(ru); ok {
			st.rules[s] = append(st.rules[s], ru)
		}
	}
	routes, err := r.nl.RouteListFiltered(vnl.FAMILY_V4, &vnl.Route{Table: unix.RT_TABLE_UNSPEC}, vnl.RT_FILTER_TABLE)
	if err != nil {
		return st, fmt.Errorf("%w: list routes: %w", ErrKernel, err)
	}
	for _, rt := range routes {
		if s, ok := r.ourTable(rt.Table); ok {
			st.routes[s] = append(st.routes[s], rt)
		}
	}
	for s, rts := range st.routes {
		if len(rts) == 1 {
			if k, ok := routeKey(rts[0]); ok {
				st.bySlot[s] = k
			}
		}
	}
	return st, nil
}

func (r *Router) addRule(ru *vnl.Rule) error {
	if err := r.nl.RuleAdd(ru); err != nil {
		return fmt.Errorf("%w: add ip rule pref %d: %w", ErrKernel, ru.Priority, err)
	}
	return nil
}

func (r *Router) delRule(ru *vnl.Rule) error {
	if err := r.nl.RuleDel(ru); err != nil {
		return fmt.Errorf("%w: delete ip rule pref %d: %w", ErrKernel, ru.Priority, err)
	}
	return nil
}

func (r *Router) addRoute(rt *vnl.Route) error {
	if err := r.nl.RouteAdd(rt); err != nil {
		return fmt.Errorf("%w: add route table %d via %v ifindex %d: %w", ErrKernel, rt.Table, rt.Gw, rt.LinkIndex, err)
	}
	return nil
}

func (r *Router) delRoute(rt *vnl.Route) error {
	if err := r.nl.RouteDel(rt); err != nil {
		return fmt.Errorf("%w: delete route table %d via %v: %w", ErrKernel, rt.Table, rt.Gw, err)
	}
	return nil
}

// routesConverge installs the rules and tables of every (next hop, egress)
// pair the pins use and returns each pair's fwmark, plus a function that
// removes the slots no pin uses any more.
//
// Slots stay stable: a pair keeps the slot whose table routes via it, or else
// the slot its pins' marks name in the current pins map (hints), so repairing
// a deleted route or rule restores the same objects.
func (r *Router) routesConverge(ctx context.Context, d Desired, links map[string]linkInfo, st routeState, hints map[pinKey]int, j *journal) (map[pinKey]uint32, routeState, func() error, error) {
	next := routeState{rules: map[int][]vnl.Rule{}, routes: map[int][]vnl.Route{}, bySlot: map[int]pinKey{}}
	want := map[pinKey]bool{}
	var order []pinKey // first use in d, for deterministic slots
	up := map[int]bool{}
	for _, on := range d.ONs {
		for _, p := range on.Pins {
			li := links[p.Egress]
			k := pinKey{p.NextHop, li.index}
			if !want[k] {
				order = append(order, k)
			}
			want[k] = true
			up[li.index] = li.up
		}
	}
	slotOf := map[pinKey]int{}
	used := map[int]bool{}
	for s := range st.rules {
		used[s] = true
	}
	for s := range st.routes {
		used[s] = true
	}
	for s, k := range st.bySlot {
		if want[k] {
			if _, dup := slotOf[k]; !dup {
				slotOf[k] = s
			}
		}
	}
	taken := map[int]bool{}
	for _, s := range slotOf {
		taken[s] = true
	}
	for k, s := range hints {
		if _, ok := slotOf[k]; ok || !want[k] || taken[s] || s < 0 || s >= PinSlots {
			continue
		}
		if _, verified := st.bySlot[s]; verified {
			continue // that table routes elsewhere
		}
		slotOf[k], taken[s] = s, true
	}
	for _, k := range order {
		if _, ok := slotOf[k]; ok {
			continue
		}
		s := -1
		for pass := 0; pass < 2 && s < 0; pass++ {
			for c := 0; c < PinSlots; c++ {
				if !taken[c] && (pass == 1 || !used[c]) {
					s = c
					break
				}
			}
		}
		if s < 0 {
			return nil, next, nil, fmt.Errorf("%w: more than %d distinct (next hop, egress) pairs", ErrPinSlotsExhausted, PinSlots)
		}
		slotOf[k], taken[s] = s, true
	}
	marks := map[pinKey]uint32{}
	for k, s := range slotOf {
		if err := ctx.Err(); err != nil {
			return nil, next, nil, err
		}
		marks[k] = r.cfg.MarkBase + uint32(s)
		if err := r.ensureSlot(st, s, k, up[k.ifindex], j); err != nil {
			return nil, next, nil, err
		}
		next.rules[s] = []vnl.Rule{*r.wantRule(s)}
		if up[k.ifindex] {
			next.routes[s] = []vnl.Route{*r.wantRoute(s, k)}
			next.bySlot[s] = k
		}
	}
	del := func() error {
		for s := range used {
			if taken[s] {
				continue
			}
			for _, ru := range st.rules[s] {
				ru := ru
				if err := r.delRule(&ru); err != nil {
					return err
				}
				j.add(func() error { return r.addRule(&ru) })
			}
			for _, rt := range st.routes[s] {
				rt := rt
				if err := r.delRoute(&rt); err != nil {
					return err
				}
				j.add(func() error { return r.addRoute(&rt) })
			}
		}
		return nil
	}
	return marks, next, del, nil
}

// ensureSlot makes slot s hold exactly our rule and one route via k (the
// route only while the egress is up: the kernel flushes it when the link goes
// down, and marked packets then fall through to the main table).
func (r *Router) ensureSlot(st routeState, s int, k pinKey, up bool, j *journal) error {
	exact := false
	for _, ru := range st.rules[s] {
		if r.ruleIsExact(ru, s) && !exact {
			exact = true
			continue
		}
		ru := ru
		if err := r.delRule(&ru); err != nil {
			return err
		}
		j.add(func() error { return r.addRule(&ru) })
	}
	if !exact {
		w := r.wantRule(s)
		if err := r.addRule(w); err != nil {
			return err
		}
		j.add(func() error { return r.delRule(w) })
	}
	good := false
	for _, rt := range st.routes[s] {
		if got, ok := routeKey(rt); ok && got == k && up && !good {
			good = true
			continue
		}
		rt := rt
		if err := r.delRoute(&rt); err != nil {
			return err
		}
		j.add(func() error { return r.addRoute(&rt) })
	}
	if !good && up {
		w := r.wantRoute(s, k)
		if err := r.addRoute(w); err != nil {
			return err
		}
		j.add(func() error { return r.delRoute(w) })
	}
	return nil
}
