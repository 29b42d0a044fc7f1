package partition

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The nftables table (family ip, Config.NftTable) is wholly ours. Its layout:
//
//	set access   { type iface_index }                        access interfaces
//	set members  { type iface_index . integer . ipv4_addr }  iif . ON id . saddr
//	map classes  { type integer : classid }                  ON id → Major:minor
//	map pins     { type integer . integer . ipv4_addr : mark } ON id . path . daddr → fwmark
//	chain prerouting  (filter, mangle prio): ON packet → jump on_in
//	chain on_in       police (access iif, not a member → DSCP 0 or drop),
//	                  then meta mark set (id . path . daddr) map @pins
//	chain postrouting (filter, mangle prio): ON packet → meta priority set id map @classes
//
// Each rule carries a comment tag that encodes its role and the parameters it
// was built from; any difference in sets, chains or tags makes Apply rebuild
// the table in one transaction. Elements are diffed and changed in place.

const (
	setAccess   = "access"
	setMembers  = "members"
	mapClasses  = "classes"
	mapPins     = "pins"
	chainPre    = "prerouting"
	chainOnIn   = "on_in"
	chainPost   = "postrouting"
	elemsPerMsg = 400  // keeps each netlink attribute under 64 KiB
	elemsPerTx  = 4000 // elements per batch
)

var (
	// ON ids and path indexes use the 32-bit "mark" type so `nft list` can
	// print them (it cannot size plain integers inside concatenations); the
	// rules convert the ON id to host byte order first, so it prints as hex.
	typeMembers = nftables.MustConcatSetType(nftables.TypeIFIndex, nftables.TypeMark, nftables.TypeIPAddr)
	typePins    = nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeMark, nftables.TypeIPAddr)
)

func (r *Router) table() *nftables.Table {
	return &nftables.Table{Name: r.cfg.NftTable, Family: nftables.TableFamilyIPv4}
}

func (r *Router) sets() []*nftables.Set {
	t := r.table()
	return []*nftables.Set{
		{Table: t, Name: setAccess, KeyType: nftables.TypeIFIndex, KeyByteOrder: binaryutil.NativeEndian},
		{Table: t, Name: setMembers, KeyType: typeMembers, Concatenation: true},
		{Table: t, Name: mapClasses, IsMap: true, KeyType: nftables.TypeMark, DataType: nftables.TypeClassID, KeyByteOrder: binaryutil.NativeEndian},
		{Table: t, Name: mapPins, IsMap: true, KeyType: typePins, DataType: nftables.TypeMark, Concatenation: true},
	}
}

type ruleSpec struct {
	chain string
	tag   string
	exprs []expr.Any
}

// rules returns the chains' rules in order.
func (r *Router) rules() []ruleSpec {
	tos := r.cfg.DSCP << 2
	onMatch := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 1, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0xfc}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tos}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.cfg.Port)},
	}
	match := fmt.Sprintf("dscp=%d port=%d", r.cfg.DSCP, r.cfg.Port)
	pre := append(slices.Clone(onMatch), &expr.Verdict{Kind: expr.VerdictJump, Chain: chainOnIn})

	police := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIF, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: setAccess},
		&expr.Meta{Key: expr.MetaKeyIIF, Register: 8},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 4},
		ntoh(9),
		&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 8, SetName: setMembers, Invert: true},
		&expr.Counter{},
	}
	action := "remark"
	if r.cfg.PolicingDrop {
		action = "drop"
		police = append(police, &expr.Verdict{Kind: expr.VerdictDrop})
	} else {
		police = append(police,
			// Rewrite the 16-bit word holding the TOS byte (keep version/IHL
			// and ECN): the incremental checksum update needs aligned words.
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 2},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: []byte{0xff, 0x03}, Xor: []byte{0, 0}},
			&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseNetworkHeader,
				Offset: 0, Len: 2, CsumType: expr.CsumTypeInet, CsumOffset: 10},
			&expr.Verdict{Kind: expr.VerdictReturn},
		)
	}
	pin := []expr.Any{
		&expr.Payload{DestRegister: 8, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 4},
		ntoh(8),
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 8, SetName: mapPins, DestRegister: 1, IsDestRegSet: true},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
	class := append(slices.Clone(onMatch),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 4},
		ntoh(1),
		&expr.Lookup{SourceRegister: 1, SetName: mapClasses, DestRegister: 1, IsDestRegSet: true},
		&expr.Meta{Key: expr.MetaKeyPRIORITY, SourceRegister: true, Register: 1},
	)
	return []ruleSpec{
		{chainPre, "von:v3:on " + match, pre},
		{chainOnIn, "von:v3:police " + action, police},
		{chainOnIn, "von:v3:pin", pin},
		{chainPost, "von:v3:class " + match, class},
	}
}

// ntoh converts the 32-bit value in register reg to host byte order.
func ntoh(reg uint32) expr.Any {
	return &expr.Byteorder{SourceRegister: reg, DestRegister: reg, Op: expr.ByteorderNtoh, Len: 4, Size: 4}
}

func (r *Router) chains() []*nftables.Chain {
	t := r.table()
	accept := nftables.ChainPolicyAccept
	return []*nftables.Chain{
		{Table: t, Name: chainPre, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept},
		{Table: t, Name: chainOnIn},
		{Table: t, Name: chainPost, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityMangle, Policy: &accept},
	}
}

// elems maps set name → key → value.
type elems map[string]map[string][]byte

func (r *Router) wantElems(d Desired, links map[string]linkInfo, marks map[pinKey]uint32) elems {
	e := elems{setAccess: r.accessElems(d, links), setMembers: {}, mapClasses: {}, mapPins: {}}
	for _, on := range d.ONs {
		m, _ := r.alloc.minor(on.ID)
		r.onElems(e, on, m, links, marks)
	}
	return e
}

// nftState is what the kernel holds now.
type nftState struct {
	exists    bool
	wellFormd bool
	sets      map[string]*nftables.Set
	elems     elems
}

func (r *Router) readNft() (nftState, error) {
	st := nftState{sets: map[string]*nftables.Set{}, elems: elems{}}
	tables, err := r.nft.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return st, fmt.Errorf("%w: list nft tables: %w", ErrKernel, err)
	}
	for _, t := range tables {
		st.exists = st.exists || t.Name == r.cfg.NftTable
	}
	if !st.exists {
		return st, nil
	}
	t := r.table()
	sets, err := r.nft.GetSets(t)
	if err != nil {
		return st, fmt.Errorf("%w: list nft sets: %w", ErrKernel, err)
	}
	ok := len(sets) == len(r.sets())
	for _, s := range sets {
		st.sets[s.Name] = s
		es, err := r.nft.GetSetElements(s)
		if err != nil {
			return st, fmt.Errorf("%w: list elements of %s: %w", ErrKernel, s.Name, err)
		}
		m := map[string][]byte{}
		for _, e := range es {
			m[string(e.Key)] = e.Val
		}
		st.elems[s.Name] = m
	}
	for _, w := range r.sets() {
		s := st.sets[w.Name]
		ok = ok && s != nil && s.IsMap == w.IsMap && s.KeyType.Name == w.KeyType.Name &&
			s.KeyType.Bytes == w.KeyType.Bytes && s.DataType.Name == w.DataType.Name && !s.Interval && !s.HasTimeout
	}
	chains, err := r.nft.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return st, fmt.Errorf("%w: list nft chains: %w", ErrKernel, err)
	}
	var have []*nftables.Chain
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == r.cfg.NftTable {
			have = append(have, c)
		}
	}
	ok = ok && len(have) == len(r.chains())
	for _, w := range r.chains() {
		i := slices.IndexFunc(have, func(c *nftables.Chain) bool { return c.Name == w.Name })
		if i < 0 {
			ok = false
			continue
		}
		c := have[i]
		if w.Hooknum != nil {
			ok = ok && c.Hooknum != nil && *c.Hooknum == *w.Hooknum && c.Priority != nil &&
				*c.Priority == *w.Priority && c.Type == w.Type && c.Policy != nil && *c.Policy == *w.Policy
		} else {
			ok = ok && c.Hooknum == nil
		}
		if !ok {
			continue
		}
		rules, err := r.nft.GetRules(t, c)
		if err != nil {
			return st, fmt.Errorf("%w: list nft rules of %s: %w", ErrKernel, c.Name, err)
		}
		var got, want []string
		for _, ru := range rules {
			tag, _ := userdata.GetString(ru.UserData, userdata.TypeComment)
			got = append(got, tag)
		}
		for _, rs := range r.rules() {
			if rs.chain == c.Name {
				want = append(want, rs.tag)
			}
		}
		ok = ok && slices.Equal(got, want)
	}
	st.wellFormd = ok
	return st, nil
}

// addSetMu guards google/nftables' global set-id counter (see rebuild).
var addSetMu sync.Mutex

func (r *Router) flushNft(what string) error {
	if err := r.nft.Flush(); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) && what == "create" {
			return fmt.Errorf("%w: nf_tables maps, concatenations or payload/meta expressions: %w", ErrKernelFeature, err)
		}
		return fmt.Errorf("%w: nftables %s: %w", ErrKernel, what, err)
	}
	return nil
}

// rebuild replaces the whole table with a well-formed one holding e and
// returns its sets.
func (r *Router) rebuild(exists bool, e elems) (map[string]*nftables.Set, error) {
	t := r.table()
	if exists {
		r.nft.DelTable(t)
	}
	r.nft.AddTable(t)
	sets := map[string]*nftables.Set{}
	// google/nftables allocates set ids from an unsynchronised package global:
	// serialise AddSet so several Routers in one process are safe.
	addSetMu.Lock()
	for _, s := range r.sets() {
		if err := r.nft.AddSet(s, nil); err != nil {
			addSetMu.Unlock()
			return nil, fmt.Errorf("%w: nft add set %s: %w", ErrKernel, s.Name, err)
		}
		sets[s.Name] = s
	}
	addSetMu.Unlock()
	for _, c := range r.chains() {
		r.nft.AddChain(c)
	}
	for _, rs := range r.rules() {
		r.nft.AddRule(&nftables.Rule{
			Table: t, Chain: &nftables.Chain{Name: rs.chain, Table: t}, Exprs: rs.exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, rs.tag),
		})
	}
	if err := r.flushNft("create"); err != nil {
		return nil, err
	}
	add := elems{}
	for name, m := range e {
		add[name] = m
	}
	return sets, r.changeElems(sets, nil, add)
}

// changeElems deletes del and adds add, in batches of elemsPerTx.
func (r *Router) changeElems(sets map[string]*nftables.Set, del, add elems) error {
	n := 0
	queue := func(name string, m map[string][]byte, remove bool) error {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for c := range slices.Chunk(keys, elemsPerMsg) {
			es := make([]nftables.SetElement, len(c))
			for i, k := range c {
				es[i] = nftables.SetElement{Key: []byte(k), Val: m[k]}
			}
			var err error
			if remove {
				err = r.nft.SetDeleteElements(sets[name], es)
			} else {
				err = r.nft.SetAddElements(sets[name], es)
			}
			if err != nil {
				return fmt.Errorf("%w: nft elements of %s: %w", ErrKernel, name, err)
			}
			if n += len(c); n >= elemsPerTx {
				n = 0
				if err := r.flushNft("update elements"); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, s := range r.sets() {
		if err := queue(s.Name, del[s.Name], true); err != nil {
			return err
		}
		if err := queue(s.Name, add[s.Name], false); err != nil {
			return err
		}
	}
	return r.flushNft("update elements")
}

// nftConverge brings the table to d; a change of a map value is a delete and
// an add in the same batch. It returns what the table holds afterwards.
//
// With lazy set, a change that only deletes elements is not sent: the
// deletions are returned for the Router to send a moment later. The kernel
// makes every transaction that deletes set elements wait for an RCU grace
// period (≈10 ms here), which a Release need not wait for: the entries of an
// ON being removed point at a class and pin slot that are gone, so its
// packets already go best effort through the main table. Deletions still
// queued go out with the next batch, so a re-used ON id never meets them.
func (r *Router) nftConverge(ctx context.Context, d Desired, links map[string]linkInfo, marks map[pinKey]uint32, st nftState, lazy bool, j *journal) (nftState, elems, error) {
	want := r.wantElems(d, links, marks)
	if err := ctx.Err(); err != nil {
		return st, nil, err
	}
	undo := func() error {
		if !st.exists {
			r.nft.DelTable(r.table())
			return r.flushNft("delete table")
		}
		_, err := r.rebuild(true, st.elems)
		return err
	}
	if len(d.ONs) == 0 && len(d.Access) == 0 {
		// Nothing to classify, pin or police: leave no table behind.
		if !st.exists {
			return nftState{}, nil, nil
		}
		r.nft.DelTable(r.table())
		if err := r.flushNft("delete table"); err != nil {
			return st, nil, err
		}
		j.add(undo)
		return nftState{}, nil, nil
	}
	next := nftState{exists: true, wellFormd: true, sets: st.sets, elems: want}
	if !st.wellFormd {
		j.add(undo)
		sets, err := r.rebuild(st.exists, want)
		next.sets = sets
		return next, nil, err
	}
	del, add := elems{}, elems{}
	adds := false
	for name, w := range want {
		del[name], add[name] = map[string][]byte{}, map[string][]byte{}
		cur := st.elems[name]
		for k, v := range cur {
			if wv, ok := w[k]; !ok || !bytes.Equal(wv, v) {
				del[name][k] = v
			}
		}
		for k, v := range w {
			if cv, ok := cur[k]; !ok || !bytes.Equal(cv, v) {
				add[name][k], adds = v, true
			}
		}
	}
	r.addDeferred(del, add, want)
	if !adds && lazy {
		return next, del, nil
	}
	if !adds && del.empty() {
		return next, nil, nil
	}
	j.add(undo)
	return next, nil, r.changeElems(st.sets, del, add)
}

// addDeferred adds to del the queued deletions (r.deferred) that go out with
// this batch: those of entries the table is not to keep, and of entries add
// puts back (a delete and an add in one batch).
func (r *Router) addDeferred(del, add, keep elems) {
	for name, m := range r.deferred {
		for k, v := range m {
			_, kept := keep[name][k]
			_, readd := add[name][k]
			if !kept || readd {
				if del[name] == nil {
					del[name] = map[string][]byte{}
				}
				del[name][k] = v
			}
		}
	}
}

func (e elems) empty() bool {
	for _, m := range e {
		if len(m) > 0 {
			return false
		}
	}
	return true
}

// flushDeferred sends the deletions nftConverge left for later; after a
// failure the next converge reads the kernel.
func (r *Router) flushDeferred() {
	if r.deferred.empty() || r.view == nil {
		r.deferred = nil
		return
	}
	if err := r.changeElems(r.view.nft.sets, r.deferred, nil); err != nil {
		r.log.Warn("removing nftables entries of removed ONs failed; the next convergence repairs it", "err", err)
		r.view = nil
	}
	r.deferred = nil
}

// pinHints returns, per (next hop, egress) pair of d's pins, the slot that
// the current pins map marks for one of its pins.
func (r *Router) pinHints(d Desired, links map[string]linkInfo, st nftState) map[pinKey]int {
	hints := map[pinKey]int{}
	ne := binaryutil.NativeEndian
	cur := st.elems[mapPins]
	for _, on := range d.ONs {
		for _, p := range on.Pins {
			k := pinKey{p.NextHop, links[p.Egress].index}
			if _, ok := hints[k]; ok {
				continue
			}
			v, ok := cur[string(pinElemKey(on.ID, p))]
			if ok && len(v) == 4 {
				hints[k] = int(ne.Uint32(v)) - int(r.cfg.MarkBase)
			}
		}
	}
	return hints
}

func pinElemKey(id uint32, p Pin) []byte {
	return slices.Concat(binaryutil.NativeEndian.PutUint32(id), []byte{p.Path, 0, 0, 0}, p.Dst.AsSlice())
}

// kernelClassMap returns the ON id → minor bindings of the classes map.
func (r *Router) kernelClassMap() (map[uint32]uint16, error) {
	st, err := r.readNft()
	if err != nil {
		return nil, err
	}
	out := map[uint32]uint16{}
	for k, v := range st.elems[mapClasses] {
		if len(k) != 4 || len(v) != 4 {
			continue
		}
		h := binaryutil.NativeEndian.Uint32(v)
		if h>>16 == uint32(r.cfg.QdiscMajor) {
			out[binaryutil.NativeEndian.Uint32([]byte(k))] = uint16(h)
		}
	}
	return out, nil
}

// policedCounter reads the counter of the policing rule.
func (r *Router) policedCounter() (Counters, error) {
	t := r.table()
	tables, err := r.nft.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return Counters{}, fmt.Errorf("%w: list nft tables: %w", ErrKernel, err)
	}
	if !slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == t.Name }) {
		return Counters{}, nil
	}
	rules, err := r.nft.GetRules(t, &nftables.Chain{Name: chainOnIn, Table: t})
	if err != nil {
		return Counters{}, nil // chain gone by hand: nothing to count
	}
	var c Counters
	for _, ru := range rules {
		for _, e := range ru.Exprs {
			if ct, ok := e.(*expr.Counter); ok {
				c.Bytes += ct.Bytes
				c.Packets += ct.Packets
			}
		}
	}
	return c, nil
}
