package partition

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"

	tc "github.com/florianl/go-tc"
	"golang.org/x/sys/unix"
)

// A root qdisc is ours when it is an HTB with handle Config.QdiscMajor:0.
// Everything under our qdisc is ours too. A root qdisc with handle 0 is the
// kernel's default (noqueue, pfifo_fast, mq, ...) and may be replaced freely;
// any other root qdisc is foreign.

// classSpec is an HTB class as we want it (rates in bytes/s).
type classSpec struct {
	minor   uint16
	parent  uint32
	rate    uint64
	ceil    uint64
	prio    uint32
	quantum uint32
	buffer  uint32
	cbuffer uint32
}

func (r *Router) handle(minor uint16) uint32 { return uint32(r.cfg.QdiscMajor)<<16 | uint32(minor) }

// spec builds a class from rates in bit/s. Burst is 2 ms at the rate (at
// least two full frames); quantum is rate/10 clamped to [1600, 200000] bytes.
func (r *Router) spec(minor uint16, parent uint32, rateBits, ceilBits uint64, prio uint32) classSpec {
	rate, ceil := max(rateBits/8, 1), max(ceilBits/8, 1)
	return classSpec{
		minor: minor, parent: parent, rate: rate, ceil: ceil, prio: prio,
		quantum: uint32(min(max(rate/10, 1600), 200000)),
		buffer:  burstTicks(rate), cbuffer: burstTicks(ceil),
	}
}

// burstTicks is the HTB buffer in psched ticks (64 ns) for a burst of
// max(3028 B, 2 ms of rate).
func burstTicks(rate uint64) uint32 {
	burst := max(3028, rate/500)
	ticks := float64(burst) * 1e9 / float64(rate) / 64
	return uint32(min(ticks, math.MaxUint32))
}

func rateSpec(bps uint64) tc.RateSpec {
	return tc.RateSpec{Linklayer: 1 /* TC_LINKLAYER_ETHERNET */, Rate: uint32(min(bps, math.MaxUint32))}
}

func (r *Router) classObject(ifindex int, s classSpec) *tc.Object {
	h := &tc.Htb{Parms: &tc.HtbOpt{
		Rate: rateSpec(s.rate), Ceil: rateSpec(s.ceil),
		Buffer: s.buffer, Cbuffer: s.cbuffer, Quantum: s.quantum, Prio: s.prio,
	}}
	if s.rate > math.MaxUint32 {
		h.Rate64 = &s.rate
	}
	if s.ceil > math.MaxUint32 {
		h.Ceil64 = &s.ceil
	}
	return &tc.Object{
		Msg:       tc.Msg{Family: unix.AF_UNSPEC, Ifindex: uint32(ifindex), Handle: r.handle(s.minor), Parent: s.parent},
		Attribute: tc.Attribute{Kind: "htb", Htb: h},
	}
}

// specOf reads a class back; ok is false for a non-HTB object.
func specOf(o tc.Object) (classSpec, bool) {
	if o.Kind != "htb" || o.Htb == nil || o.Htb.Parms == nil {
		return classSpec{}, false
	}
	p := o.Htb.Parms
	s := classSpec{
		minor: uint16(o.Handle & 0xFFFF), parent: o.Parent,
		rate: uint64(p.Rate.Rate), ceil: uint64(p.Ceil.Rate),
		prio: p.Prio, quantum: p.Quantum, buffer: p.Buffer, cbuffer: p.Cbuffer,
	}
	if o.Htb.Rate64 != nil {
		s.rate = *o.Htb.Rate64
	}
	if o.Htb.Ceil64 != nil {
		s.ceil = *o.Htb.Ceil64
	}
	return s, true
}

func (r *Router) qdiscObject(ifindex int) *tc.Object {
	return &tc.Object{
		Msg: tc.Msg{Family: unix.AF_UNSPEC, Ifindex: uint32(ifindex), Handle: r.handle(0), Parent: tc.HandleRoot},
		Attribute: tc.Attribute{Kind: "htb", Htb: &tc.Htb{Init: &tc.HtbGlob{
			Version: 3, Rate2Quantum: 10, Defcls: beMinor,
		}}},
	}
}

// rootQdiscs returns each interface's root qdisc.
func (r *Router) rootQdiscs() (map[int]tc.Object, error) {
	qs, err := r.tc.Qdisc().Get()
	if err != nil {
		return nil, fmt.Errorf("%w: list qdiscs: %w", ErrKernel, err)
	}
	out := map[int]tc.Object{}
	for _, q := range qs {
		if q.Parent == tc.HandleRoot {
			out[int(q.Ifindex)] = q
		}
	}
	return out, nil
}

func (r *Router) isOurs(q tc.Object) bool { return q.Kind == "htb" && q.Handle == r.handle(0) }

func (r *Router) classes(ifindex int) ([]tc.Object, error) {
	cs, err := r.tc.Class().Get(&tc.Msg{Family: unix.AF_UNSPEC, Ifindex: uint32(ifindex)})
	if err != nil {
		return nil, fmt.Errorf("%w: list classes of ifindex %d: %w", ErrKernel, ifindex, err)
	}
	return cs, nil
}

func (r *Router) putClass(ifname string, ifindex int, s classSpec) error {
	if err := r.tc.Class().Replace(r.classObject(ifindex, s)); err != nil {
		return fmt.Errorf("%w: set class %x:%x on %s: %w", ErrKernel, r.cfg.QdiscMajor, s.minor, ifname, err)
	}
	return nil
}

func (r *Router) delClass(ifname string, ifindex int, s classSpec) error {
	if err := r.tc.Class().Delete(r.classObject(ifindex, s)); err != nil {
		return fmt.Errorf("%w: delete class %x:%x on %s: %w", ErrKernel, r.cfg.QdiscMajor, s.minor, ifname, err)
	}
	return nil
}

func (r *Router) addQdisc(ifname string, ifindex int) error {
	if err := r.tc.Qdisc().Add(r.qdiscObject(ifindex)); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("%w: HTB qdisc (sch_htb) on %s: %w", ErrKernelFeature, ifname, err)
		}
		return fmt.Errorf("%w: add root htb on %s: %w", ErrKernel, ifname, err)
	}
	return nil
}

func (r *Router) delQdisc(ifname string, ifindex int, q *tc.Object) error {
	if err := r.tc.Qdisc().Delete(q); err != nil {
		return fmt.Errorf("%w: delete root qdisc on %s: %w", ErrKernel, ifname, err)
	}
	return nil
}

// wantClasses lists the classes interface ifc should carry, root first.
func (r *Router) wantClasses(d Desired, ifc Interface) []classSpec {
	var reserved uint64
	var ons []classSpec
	for _, on := range d.ONs {
		rate, ok := on.Rates[ifc.Name]
		if !ok {
			continue
		}
		m, _ := r.alloc.minor(on.ID)
		reserved += rate
		ons = append(ons, r.spec(m, r.handle(rootMinor), rate, rate, 0))
	}
	be := max(ifc.Capacity-reserved, 8000)
	out := []classSpec{
		r.spec(rootMinor, tc.HandleRoot, ifc.Capacity, ifc.Capacity, 0),
		r.spec(beMinor, r.handle(rootMinor), be, ifc.Capacity, 1),
	}
	return append(out, ons...)
}

// tcState is what the kernel holds of HTB: every root qdisc, and the classes
// under ours.
type tcState struct {
	roots   map[int]tc.Object
	classes map[int][]curClass
}

type curClass struct {
	spec classSpec
	leaf bool
}

// readTC dumps the root qdiscs and the classes under ours.
func (r *Router) readTC() (tcState, error) {
	st := tcState{classes: map[int][]curClass{}}
	var err error
	if st.roots, err = r.rootQdiscs(); err != nil {
		return st, err
	}
	for idx, q := range st.roots {
		if !r.isOurs(q) {
			continue
		}
		cs, err := r.classes(idx)
		if err != nil {
			return st, err
		}
		for _, o := range cs {
			if s, ok := specOf(o); ok {
				st.classes[idx] = append(st.classes[idx], curClass{spec: s, leaf: o.Htb.Parms.Level == 0})
			}
		}
	}
	return st, nil
}

// tcConverge installs and repairs the HTB trees of the managed interfaces and
// returns a function that deletes what is no longer wanted.
func (r *Router) tcConverge(ctx context.Context, d Desired, links map[string]linkInfo, st tcState, j *journal) (tcState, func() error, error) {
	roots := st.roots
	next := tcState{roots: map[int]tc.Object{}, classes: map[int][]curClass{}}
	type extra struct {
		ifname  string
		ifindex int
		s       classSpec
		leaf    bool
	}
	var extras []extra
	managed := map[int]bool{}
	for _, ifc := range d.Interfaces {
		idx := links[ifc.Name].index
		managed[idx] = true
		q, has := roots[idx]
		var cur []curClass
		switch {
		case has && r.isOurs(q):
			cur = st.classes[idx]
		case has && q.Handle != 0 && !r.cfg.ForceRootQdisc:
			return next, nil, fmt.Errorf("%w: %s has root qdisc %s %x:; set ForceRootQdisc to replace it",
				ErrForeignQdisc, ifc.Name, q.Kind, q.Handle>>16)
		default:
			if has && q.Handle != 0 {
				r.log.Warn("replacing foreign root qdisc (cannot be restored on rollback)", "iface", ifc.Name, "kind", q.Kind)
				if err := r.delQdisc(ifc.Name, idx, &q); err != nil {
					return next, nil, err
				}
			}
			if err := r.addQdisc(ifc.Name, idx); err != nil {
				return next, nil, err
			}
			name := ifc.Name
			j.add(func() error { return r.delQdisc(name, idx, r.qdiscObject(idx)) })
		}
		have := make(map[uint16]classSpec, len(cur))
		for _, c := range cur {
			have[c.spec.minor] = c.spec
		}
		want := r.wantClasses(d, ifc)
		next.roots[idx] = *r.qdiscObject(idx)
		nc := make([]curClass, len(want))
		for i, w := range want {
			nc[i] = curClass{spec: w, leaf: w.minor != rootMinor}
		}
		next.classes[idx] = nc
		wantSet := make(map[uint16]bool, len(want))
		for i, w := range want {
			if i%256 == 255 {
				if err := ctx.Err(); err != nil {
					return next, nil, err
				}
			}
			wantSet[w.minor] = true
			old, exists := have[w.minor]
			if exists && old == w {
				continue
			}
			name := ifc.Name
			if exists && old.parent != w.parent {
				// A class cannot move; delete and re-create it.
				if err := r.delClass(name, idx, old); err != nil {
					return next, nil, err
				}
				j.add(func() error { return r.putClass(name, idx, old) })
				exists = false
			}
			if err := r.putClass(name, idx, w); err != nil {
				return next, nil, err
			}
			if exists {
				j.add(func() error { return r.putClass(name, idx, old) })
			} else {
				j.add(func() error { return r.delClass(name, idx, w) })
			}
		}
		for _, c := range cur {
			if !wantSet[c.spec.minor] {
				extras = append(extras, extra{ifc.Name, idx, c.spec, c.leaf})
			}
		}
	}
	type oldTree struct {
		ifname  string
		ifindex int
		classes []classSpec
	}
	var dropQ []oldTree
	for idx, q := range roots {
		if managed[idx] || !r.isOurs(q) {
			continue
		}
		t := oldTree{ifname: fmt.Sprintf("ifindex %d", idx), ifindex: idx}
		if l, err := r.nl.LinkByIndex(idx); err == nil {
			t.ifname = l.Attrs().Name
		}
		for _, c := range st.classes[idx] {
			t.classes = append(t.classes, c.spec)
		}
		sort.Slice(t.classes, func(a, b int) bool { return t.classes[a].minor < t.classes[b].minor })
		dropQ = append(dropQ, t)
	}
	// Leaves first, so a hand-made child never blocks its parent's removal.
	sort.SliceStable(extras, func(a, b int) bool { return extras[a].leaf && !extras[b].leaf })
	del := func() error {
		for _, e := range extras {
			if err := r.delClass(e.ifname, e.ifindex, e.s); err != nil {
				return err
			}
			j.add(func() error { return r.putClass(e.ifname, e.ifindex, e.s) })
		}
		for _, t := range dropQ {
			if err := r.delQdisc(t.ifname, t.ifindex, r.qdiscObject(t.ifindex)); err != nil {
				return err
			}
			j.add(func() error {
				if err := r.addQdisc(t.ifname, t.ifindex); err != nil {
					return err
				}
				for _, s := range t.classes {
					if err := r.putClass(t.ifname, t.ifindex, s); err != nil {
						return err
					}
				}
				return nil
			})
		}
		return nil
	}
	return next, del, nil
}

// observeTC reads the counters of every interface carrying our qdisc.
func (r *Router) observeTC() (Observed, error) {
	obs := Observed{Interfaces: map[string]InterfaceStats{}}
	roots, err := r.rootQdiscs()
	if err != nil {
		return obs, err
	}
	for idx, q := range roots {
		if !r.isOurs(q) {
			continue
		}
		l, err := r.nl.LinkByIndex(idx)
		if err != nil {
			continue // interface vanished meanwhile
		}
		cs, err := r.classes(idx)
		if err != nil {
			return obs, err
		}
		st := InterfaceStats{ONs: map[uint32]Counters{}}
		for _, o := range cs {
			s, ok := specOf(o)
			if !ok {
				continue
			}
			c := countersOf(o)
			switch {
			case s.minor == rootMinor:
				st.Capacity = s.ceil * 8
			case s.minor == beMinor:
				st.BestEffort = c
			default:
				if id, ok := r.alloc.id(s.minor); ok {
					st.ONs[id] = c
				}
			}
		}
		obs.Interfaces[l.Attrs().Name] = st
	}
	return obs, nil
}

// countersOf reads the legacy TCA_STATS block (go-tc misreads the packed
// gnet_stats_basic inside TCA_STATS2; the legacy block carries the same
// bytes, packets, drops and overlimits).
func countersOf(o tc.Object) Counters {
	if s := o.Stats; s != nil {
		return Counters{Bytes: s.Bytes, Packets: uint64(s.Packets), Drops: uint64(s.Drops), Overlimits: uint64(s.Overlimits), Backlog: uint64(s.Backlog)}
	}
	return Counters{}
}
