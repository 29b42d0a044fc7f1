package partition

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables/binaryutil"
)

// currentDesired reconstructs the desired state from what the kernel holds.
// Remove uses it when no state was applied or stored in this process's
// lifetime. A pin whose route the kernel dropped (egress down) cannot be
// recovered and is left out.
func (r *Router) currentDesired() (Desired, error) {
	var d Desired
	names := map[int]string{}
	name := func(idx int) (string, error) {
		if n, ok := names[idx]; ok {
			return n, nil
		}
		l, err := r.nl.LinkByIndex(idx)
		if err != nil {
			return "", fmt.Errorf("%w: ifindex %d: %w", ErrNoSuchInterface, idx, err)
		}
		names[idx] = l.Attrs().Name
		return names[idx], nil
	}
	ons := map[uint32]*ON{}
	on := func(id uint32) *ON {
		if ons[id] == nil {
			ons[id] = &ON{ID: id, Rates: map[string]uint64{}}
		}
		return ons[id]
	}
	roots, err := r.rootQdiscs()
	if err != nil {
		return d, err
	}
	for idx, q := range roots {
		if !r.isOurs(q) {
			continue
		}
		n, err := name(idx)
		if err != nil {
			return d, err
		}
		cs, err := r.classes(idx)
		if err != nil {
			return d, err
		}
		for _, o := range cs {
			s, ok := specOf(o)
			if !ok {
				continue
			}
			switch s.minor {
			case rootMinor:
				d.Interfaces = append(d.Interfaces, Interface{Name: n, Capacity: s.ceil * 8})
			case beMinor:
			default:
				if id, ok := r.alloc.id(s.minor); ok {
					on(id).Rates[n] = s.rate * 8
				}
			}
		}
	}
	st, err := r.readNft()
	if err != nil {
		return d, err
	}
	rs, err := r.readRoutes()
	if err != nil {
		return d, err
	}
	ne := binaryutil.NativeEndian
	for k := range st.elems[setAccess] {
		if len(k) == 4 {
			n, err := name(int(ne.Uint32([]byte(k))))
			if err == nil {
				d.Access = append(d.Access, n)
			}
		}
	}
	members := map[[2]any][]netip.Addr{}
	for k := range st.elems[setMembers] {
		b := []byte(k)
		if len(b) != 12 {
			continue
		}
		n, err := name(int(ne.Uint32(b[:4])))
		if err != nil {
			continue
		}
		id := ne.Uint32(b[4:8])
		key := [2]any{id, n}
		members[key] = append(members[key], netip.AddrFrom4([4]byte(b[8:12])))
	}
	for key, ms := range members {
		o := on(key[0].(uint32))
		o.Policing = append(o.Policing, Policing{Access: key[1].(string), Members: ms})
	}
	for k, v := range st.elems[mapPins] {
		b := []byte(k)
		if len(b) != 12 || len(v) != 4 {
			continue
		}
		slot := int(ne.Uint32(v) - r.cfg.MarkBase)
		pk, ok := rs.bySlot[slot]
		if !ok {
			continue
		}
		egress, err := name(pk.ifindex)
		if err != nil {
			continue
		}
		o := on(ne.Uint32(b[:4]))
		o.Pins = append(o.Pins, Pin{Path: b[4], Dst: netip.AddrFrom4([4]byte(b[8:12])), NextHop: pk.nh, Egress: egress})
	}
	for k := range st.elems[mapClasses] {
		if len(k) == 4 {
			on(ne.Uint32([]byte(k)))
		}
	}
	for _, o := range ons {
		d.ONs = append(d.ONs, *o)
	}
	return d.normalize()
}
