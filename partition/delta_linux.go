package partition

import (
	"bytes"
	"context"
	"maps"
	"slices"

	"github.com/google/nftables/binaryutil"
)

// An Update that changes a few ONs of many is done as a patch: the HTB
// classes and nftables entries of the changed ONs are written and the view is
// patched, instead of diffing every ON's classes and entries (which costs
// tens of milliseconds at 10,000 ONs). What it writes is what the full diff
// would write (TestUpdateMatchesApply and TestPatchMatchesApply compare the
// kernel after each against a full Apply).

// change is one ON added, removed or modified since the last converge.
type change struct {
	id       uint32
	old, cur *ON    // nil: the ON is new (old) or removed (cur)
	oldMinor uint16 // old's class minor
}

// delta lists the ONs that differ between the last converged state and d.
type delta struct {
	changes []change
}

// patchShare bounds a patch: with more changes than 1/patchShare of the ONs
// (plus patchMin), the full diff is as cheap.
const (
	patchShare = 8
	patchMin   = 16
)

// deltaFor returns what changed from the last converge to d (normalized,
// same[i] set where d.ONs[i] is the last state's copy), or nil when d must
// be diffed in full: nothing trusted, interfaces or access list changed, or
// too much changed.
func (r *Router) deltaFor(d Desired, same []bool) *delta {
	if r.view == nil || r.last == nil || !slices.Equal(d.Interfaces, r.last.Interfaces) || !slices.Equal(d.Access, r.last.Access) {
		return nil
	}
	prev := r.last.ONs
	limit := len(d.ONs)/patchShare + patchMin
	dl := &delta{}
	i, j := 0, 0
	for i < len(d.ONs) || j < len(prev) {
		if len(dl.changes) > limit {
			return nil
		}
		switch {
		case j == len(prev) || (i < len(d.ONs) && d.ONs[i].ID < prev[j].ID):
			dl.changes = append(dl.changes, change{id: d.ONs[i].ID, cur: &d.ONs[i]})
			i++
		case i == len(d.ONs) || prev[j].ID < d.ONs[i].ID:
			m, _ := r.alloc.minor(prev[j].ID)
			dl.changes = append(dl.changes, change{id: prev[j].ID, old: &prev[j], oldMinor: m})
			j++
		default:
			if !same[i] {
				m, _ := r.alloc.minor(prev[j].ID)
				dl.changes = append(dl.changes, change{id: prev[j].ID, old: &prev[j], cur: &d.ONs[i], oldMinor: m})
			}
			i++
			j++
		}
	}
	return dl
}

// patchAlloc frees the minors of removed ONs and assigns the added ones;
// the returned function undoes it.
func (r *Router) patchAlloc(dl *delta) (func(), error) {
	next := r.alloc.next
	var freed, assigned []change
	undo := func() {
		for _, c := range assigned {
			if m, ok := r.alloc.byID[c.id]; ok {
				delete(r.alloc.byID, c.id)
				delete(r.alloc.byMin, m)
			}
		}
		for _, c := range freed {
			r.alloc.adopt(c.id, c.oldMinor)
		}
		r.alloc.next = next
	}
	for _, c := range dl.changes {
		if c.cur == nil {
			delete(r.alloc.byID, c.id)
			delete(r.alloc.byMin, c.oldMinor)
			freed = append(freed, c)
		}
	}
	for _, c := range dl.changes {
		if c.old == nil {
			if _, err := r.alloc.assign(c.id); err != nil {
				undo()
				return nil, err
			}
			assigned = append(assigned, c)
		}
	}
	return undo, nil
}

// canPatchTC says whether every managed interface carries our tree in st.
func (r *Router) canPatchTC(d Desired, links map[string]linkInfo, st tcState) bool {
	for _, ifc := range d.Interfaces {
		q, ok := st.roots[links[ifc.Name].index]
		if !ok || !r.isOurs(q) {
			return false
		}
	}
	return len(st.roots) == len(d.Interfaces)
}

// tcPatch is tcConverge for the changed ONs only: their classes and the
// best-effort class of each interface.
func (r *Router) tcPatch(ctx context.Context, d Desired, links map[string]linkInfo, st tcState, dl *delta, j *journal) (tcState, func() error, error) {
	next := tcState{roots: maps.Clone(st.roots), classes: make(map[int][]curClass, len(st.classes))}
	type gone struct {
		ifname  string
		ifindex int
		s       classSpec
	}
	var extras []gone
	for _, ifc := range d.Interfaces {
		if err := ctx.Err(); err != nil {
			return next, nil, err
		}
		idx := links[ifc.Name].index
		name := ifc.Name
		var reserved uint64
		for i := range d.ONs {
			reserved += d.ONs[i].Rates[name]
		}
		touched := map[uint16]bool{beMinor: true}
		for _, c := range dl.changes {
			if _, ok := rateOn(c.old, name); ok {
				touched[c.oldMinor] = true
			}
			if _, ok := rateOn(c.cur, name); ok {
				m, _ := r.alloc.minor(c.id)
				touched[m] = true
			}
		}
		cur := st.classes[idx]
		nc := make([]curClass, 0, len(cur)+len(dl.changes))
		old := map[uint16]classSpec{}
		for _, c := range cur {
			if touched[c.spec.minor] {
				old[c.spec.minor] = c.spec
				continue
			}
			nc = append(nc, c)
		}
		want := []classSpec{r.spec(beMinor, r.handle(rootMinor), max(ifc.Capacity-reserved, 8000), ifc.Capacity, 1)}
		for _, c := range dl.changes {
			if rate, ok := rateOn(c.cur, name); ok {
				m, _ := r.alloc.minor(c.id)
				want = append(want, r.spec(m, r.handle(rootMinor), rate, rate, 0))
			}
		}
		for _, w := range want {
			nc = append(nc, curClass{spec: w, leaf: true})
			o, exists := old[w.minor]
			delete(old, w.minor)
			if exists && o == w {
				continue
			}
			if err := r.putClass(name, idx, w); err != nil {
				return next, nil, err
			}
			if exists {
				j.add(func() error { return r.putClass(name, idx, o) })
			} else {
				j.add(func() error { return r.delClass(name, idx, w) })
			}
		}
		for _, s := range old {
			extras = append(extras, gone{name, idx, s})
		}
		next.classes[idx] = nc
	}
	del := func() error {
		for _, e := range extras {
			if err := r.delClass(e.ifname, e.ifindex, e.s); err != nil {
				return err
			}
			j.add(func() error { return r.putClass(e.ifname, e.ifindex, e.s) })
		}
		return nil
	}
	return next, del, nil
}

func rateOn(on *ON, ifname string) (uint64, bool) {
	if on == nil {
		return 0, false
	}
	rate, ok := on.Rates[ifname]
	return rate, ok
}

// marksKept says whether every pin slot still in use kept its mark, so the
// pins map entries of unchanged ONs stay right (a patch needs that).
func marksKept(prev, next map[pinKey]uint32) bool {
	if prev == nil {
		return false
	}
	for k, v := range next {
		if pv, ok := prev[k]; ok && pv != v {
			return false
		}
	}
	return true
}

// nftPatch is nftConverge for the changed ONs only (and the access set,
// which ONs share). prevMarks and marks are the pin slot marks of the last
// converge and of this one; the caller checked marksKept.
func (r *Router) nftPatch(ctx context.Context, d Desired, links map[string]linkInfo, prevMarks, marks map[pinKey]uint32, st nftState, dl *delta, lazy bool, j *journal) (nftState, elems, error) {
	oldE, newE := elems{}, elems{}
	for _, c := range dl.changes {
		if c.old != nil {
			r.onElems(oldE, *c.old, c.oldMinor, links, prevMarks)
		}
		if c.cur != nil {
			m, _ := r.alloc.minor(c.id)
			r.onElems(newE, *c.cur, m, links, marks)
		}
	}
	newE[setAccess] = r.accessElems(d, links)
	oldE[setAccess] = st.elems[setAccess]
	if err := ctx.Err(); err != nil {
		return st, nil, err
	}
	del, add := elems{}, elems{}
	adds := false
	for _, s := range r.sets() {
		name := s.Name
		cur, want := st.elems[name], newE[name]
		if cur == nil {
			cur = map[string][]byte{}
			st.elems[name] = cur
		}
		del[name], add[name] = map[string][]byte{}, map[string][]byte{}
		visit := func(k string) {
			cv, inCur := cur[k]
			nv, inNew := want[k]
			differ := inCur && inNew && !bytes.Equal(cv, nv)
			if inCur && (!inNew || differ) {
				del[name][k] = cv
			}
			if inNew && (!inCur || differ) {
				add[name][k], adds = nv, true
			}
		}
		for k := range oldE[name] {
			visit(k)
		}
		for k := range want {
			if _, seen := oldE[name][k]; !seen {
				visit(k)
			}
		}
	}
	// The view becomes the patched state (a failure discards the view, and
	// the undo below replays the inverse change, not the view).
	for name, m := range del {
		for k := range m {
			delete(st.elems[name], k)
		}
	}
	for name, m := range add {
		maps.Copy(st.elems[name], m)
	}
	next := nftState{exists: true, wellFormd: true, sets: st.sets, elems: st.elems}
	r.addDeferred(del, add, next.elems)
	if !adds && lazy {
		return next, del, nil
	}
	if !adds && del.empty() {
		return next, nil, nil
	}
	j.add(func() error { return r.changeElems(st.sets, add, del) })
	return next, nil, r.changeElems(st.sets, del, add)
}

// onElems adds the classification, pin and member entries of one ON to e
// (the access set is shared by ONs: accessElems).
func (r *Router) onElems(e elems, on ON, minor uint16, links map[string]linkInfo, marks map[pinKey]uint32) {
	ne := binaryutil.NativeEndian
	for _, name := range []string{mapClasses, mapPins, setMembers} {
		if e[name] == nil {
			e[name] = map[string][]byte{}
		}
	}
	id := ne.PutUint32(on.ID)
	e[mapClasses][string(id)] = ne.PutUint32(r.handle(minor))
	for _, p := range on.Pins {
		e[mapPins][string(pinElemKey(on.ID, p))] = ne.PutUint32(marks[pinKey{p.NextHop, links[p.Egress].index}])
	}
	for _, pol := range on.Policing {
		iif := ne.PutUint32(uint32(links[pol.Access].index))
		for _, m := range pol.Members {
			e[setMembers][string(slices.Concat(iif, id, m.AsSlice()))] = nil
		}
	}
}

// accessElems is the access set: the access interfaces of d and of every
// ON's policing.
func (r *Router) accessElems(d Desired, links map[string]linkInfo) map[string][]byte {
	ne := binaryutil.NativeEndian
	out := map[string][]byte{}
	for _, a := range d.Access {
		out[string(ne.PutUint32(uint32(links[a].index)))] = nil
	}
	for i := range d.ONs {
		for _, pol := range d.ONs[i].Policing {
			out[string(ne.PutUint32(uint32(links[pol.Access].index)))] = nil
		}
	}
	return out
}
