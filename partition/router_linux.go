package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	tc "github.com/florianl/go-tc"
	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Router converges one router's (or one network namespace's) data plane.
// Its methods are safe for concurrent use; they run one at a time.
type Router struct {
	mu    sync.Mutex
	cfg   Config
	log   *slog.Logger
	ns    netns.NsHandle // -1: current namespace
	tc    *tc.Tc
	nl    *vnl.Handle
	nft   *nftables.Conn
	store Store
	alloc *allocator
	last  *Desired
	// view is what the kernel holds of ours after the last successful
	// converge (nil: unknown, read it). Update trusts it; Apply reads afresh.
	view  *view
	dirty bool // allocation changed since the store was saved
	// deferred are nftables deletions not sent yet (see nftConverge); the
	// flusher goroutine sends them once kicked.
	deferred  elems
	kick      chan struct{}
	stop      chan struct{}
	stopOnce  sync.Once
	holdFlush bool                  // tests: leave deferred deletions queued
	patched   struct{ tc, nft int } // tests: converges done as a patch
	flushed   chan struct{}
	closed    bool
}

// view is the kernel state a converge starts from.
type view struct {
	links map[string]linkInfo
	tc    tcState
	nft   nftState
	rt    routeState
	marks map[pinKey]uint32 // pin slot marks the nftables pins map points at
}

// New opens netlink sockets in the configured namespace, checks the kernel
// features the data plane needs and loads the allocation state.
func New(ctx context.Context, cfg Config) (*Router, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg, log: cfg.Logger, ns: -1, store: cfg.Store}
	if r.store == nil && cfg.StateDir != "" {
		r.store = FileStore{Dir: cfg.StateDir}
	}
	if r.store == nil {
		r.store = &memStore{}
	}
	fail := func(err error) (*Router, error) { r.closeLocked(); return nil, err }
	nsFd := 0
	if cfg.Netns != "" {
		h, err := netns.GetFromName(cfg.Netns)
		if err != nil {
			return nil, fmt.Errorf("%w: open netns %q: %w", ErrInvalid, cfg.Netns, err)
		}
		r.ns, nsFd = h, int(h)
		if r.nl, err = vnl.NewHandleAt(h); err != nil {
			return fail(fmt.Errorf("%w: netlink in netns %q: %w", ErrKernel, cfg.Netns, err))
		}
	} else if r.nl, err = vnl.NewHandle(); err != nil {
		return fail(fmt.Errorf("%w: netlink: %w", ErrKernel, err))
	}
	if r.tc, err = tc.Open(&tc.Config{NetNS: nsFd}); err != nil {
		return fail(fmt.Errorf("%w: rtnetlink for tc: %w", ErrKernel, err))
	}
	// Replies to dumps of 10k classes are large; ask for big buffers.
	_ = r.tc.SetOption(netlink.ExtendedAcknowledge, true)
	opts := []nftables.ConnOption{nftables.WithSockOptions(bigBuffers)}
	if nsFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFd))
	}
	if r.nft, err = nftables.New(opts...); err != nil {
		return fail(fmt.Errorf("%w: nftables: %w", ErrKernel, err))
	}
	if err := r.probe(ctx); err != nil {
		return fail(err)
	}
	if err := r.loadState(); err != nil {
		return fail(err)
	}
	r.kick, r.stop, r.flushed = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go r.flusher()
	return r, nil
}

// flusher sends deferred nftables deletions in the background.
func (r *Router) flusher() {
	defer close(r.flushed)
	for {
		select {
		case <-r.stop:
			return
		case <-r.kick:
			r.mu.Lock()
			if !r.closed && !r.holdFlush {
				r.flushDeferred()
			}
			r.mu.Unlock()
		}
	}
}

// bigBuffers raises the nftables socket buffers so one batch can carry
// thousands of map elements (SO_*BUFFORCE needs CAP_NET_ADMIN; fall back).
func bigBuffers(c *netlink.Conn) error {
	const size = 8 << 20
	rc, err := c.SyscallConn()
	if err == nil {
		_ = rc.Control(func(fd uintptr) {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size)
			}
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
			}
		})
	}
	return nil
}

// probe checks that nf_tables and policy routing answer. HTB is checked when
// the first qdisc is installed (the kernel names an unknown kind then).
func (r *Router) probe(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := r.nft.ListTablesOfFamily(nftables.TableFamilyIPv4); err != nil {
		return fmt.Errorf("%w: nf_tables (CONFIG_NF_TABLES, nfnetlink): %w", ErrKernelFeature, err)
	}
	if _, err := r.nl.RuleList(vnl.FAMILY_V4); err != nil {
		return fmt.Errorf("%w: IPv4 policy routing (CONFIG_IP_MULTIPLE_TABLES): %w", ErrKernelFeature, err)
	}
	if _, err := r.tc.Qdisc().Get(); err != nil {
		return fmt.Errorf("%w: traffic control (CONFIG_NET_SCHED): %w", ErrKernelFeature, err)
	}
	return nil
}

// loadState restores the allocator from the store, then adopts bindings the
// kernel's classification map still holds (so a lost state file does not
// renumber live ONs).
func (r *Router) loadState() error {
	st, err := r.store.Load()
	if err != nil {
		return err
	}
	r.alloc = newAllocator(FirstONMinor, 0xFFFF)
	for id, m := range st.Minors {
		if !r.alloc.adopt(id, m) {
			r.log.Warn("ignoring conflicting stored allocation", "on", id, "minor", m)
		}
	}
	if st.Next >= FirstONMinor {
		r.alloc.next = st.Next
	}
	// st.Desired is not trusted: Update does not rewrite the store, so it can
	// be older than the kernel. Remove reconstructs from the kernel instead.
	kern, err := r.kernelClassMap()
	if err != nil {
		return err
	}
	for id, m := range kern {
		if !r.alloc.adopt(id, m) {
			r.log.Warn("kernel classification map disagrees with stored allocation", "on", id, "minor", m)
		}
	}
	return nil
}

func (r *Router) closeLocked() {
	if r.tc != nil {
		_ = r.tc.Close()
		r.tc = nil
	}
	if r.nl != nil {
		r.nl.Close()
		r.nl = nil
	}
	if r.ns >= 0 {
		_ = r.ns.Close()
		r.ns = -1
	}
	r.closed = true
}

// Close releases the sockets. Kernel state stays as it is.
func (r *Router) Close() error {
	r.stopOnce.Do(func() { close(r.stop) })
	<-r.flushed
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.flushDeferred()
	var err error
	if r.dirty {
		err = r.saveLocked()
	}
	r.closeLocked()
	return err
}

// journal collects undo steps of one change.
type journal struct{ undo []func() error }

func (j *journal) add(f func() error) { j.undo = append(j.undo, f) }

func (j *journal) rollback() error {
	var errs []error
	for i := len(j.undo) - 1; i >= 0; i-- {
		if err := j.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Apply converges the kernel to d: it reads what the kernel holds, installs
// what is missing, repairs what differs, removes what we own and d does not
// list, and touches nothing else. Re-applying the same d changes nothing. If a
// step fails, every earlier step of this call is undone and the error wraps
// ErrRolledBack.
func (r *Router) Apply(ctx context.Context, d Desired) error {
	return r.apply(ctx, d, true)
}

// Update is Apply for a small change: it trusts that the kernel still holds
// the HTB classes and nftables entries this Router's last Apply or Update
// installed, and writes only the difference between that and d, reading back
// only the interfaces d names and the pin slots' rules and routes. Changes made behind the Router's back
// are repaired by the next Apply, not by Update. With no trusted state (first
// call, after a failure, or an interface that changed) it is Apply.
func (r *Router) Update(ctx context.Context, d Desired) error {
	return r.apply(ctx, d, false)
}

func (r *Router) apply(ctx context.Context, d Desired, full bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	var prev []ON
	if r.last != nil {
		prev = r.last.ONs
	}
	nd, same, err := d.normalizeFrom(prev)
	if err != nil {
		return err
	}
	return r.applyLocked(ctx, nd, same, full)
}

func (r *Router) applyLocked(ctx context.Context, d Desired, same []bool, full bool) error {
	var dl *delta
	if !full && same != nil {
		dl = r.deltaFor(d, same)
	}
	var restore func()
	if dl != nil {
		var err error
		if restore, err = r.patchAlloc(dl); err != nil {
			return err
		}
	} else {
		snap := r.alloc.clone()
		restore = func() { r.alloc = snap }
		keep := map[uint32]bool{}
		for _, on := range d.ONs {
			keep[on.ID] = true
		}
		r.alloc.retain(keep)
		for _, on := range d.ONs {
			if _, err := r.alloc.assign(on.ID); err != nil {
				restore()
				return err
			}
		}
	}
	var j journal
	cur := r.view
	r.view = nil // until this converge succeeds
	if full {
		cur = nil
	}
	next, deferred, err := r.converge(ctx, d, cur, !full, dl, &j)
	if err != nil {
		restore()
		if uerr := j.rollback(); uerr != nil {
			r.log.Error("rollback incomplete", "err", uerr)
			return fmt.Errorf("%w: %w (undo: %w)", ErrRollbackFailed, err, uerr)
		}
		return fmt.Errorf("%w: %w", ErrRolledBack, err)
	}
	r.last = &d
	r.view = next
	r.deferred = deferred
	if !deferred.empty() {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	if !full && cur != nil {
		// The allocation is recoverable from the kernel's classification map;
		// the state file is rewritten on the next full Apply and on Close.
		r.dirty = true
		return nil
	}
	return r.saveLocked()
}

func (r *Router) saveLocked() error {
	st := r.alloc.state()
	st.Desired = r.last
	if err := r.store.Save(st); err != nil {
		return err
	}
	r.dirty = false
	return nil
}

// converge runs the steps in an order that never leaves a rule pointing at a
// missing object: add classes and routes, switch nftables atomically, then
// delete what is no longer wanted. It starts from cur, or from what the kernel
// holds when cur is nil or its interfaces changed since, and returns the
// state it leaves.
//
// With a delta (Update of a few ONs, cur trusted) only the changed ONs'
// classes and entries are written.
func (r *Router) converge(ctx context.Context, d Desired, cur *view, lazy bool, dl *delta, j *journal) (*view, elems, error) {
	links, err := r.resolveLinks(d)
	if err != nil {
		return nil, nil, err
	}
	if cur == nil || !sameLinks(cur.links, links) {
		dl = nil
		if cur, err = r.read(); err != nil {
			return nil, nil, err
		}
	} else {
		// The kernel itself flushes pin routes when an egress goes down (a
		// flap between two calls leaves no trace in the link state): routes
		// are always read, the few rules and tables of the pin slots.
		c := *cur
		if c.rt, err = r.readRoutes(); err != nil {
			return nil, nil, err
		}
		cur = &c
	}
	next := &view{links: links}
	var (
		tcNext tcState
		tcDel  func() error
	)
	if dl != nil && r.canPatchTC(d, links, cur.tc) {
		tcNext, tcDel, err = r.tcPatch(ctx, d, links, cur.tc, dl, j)
		r.patched.tc++
	} else {
		tcNext, tcDel, err = r.tcConverge(ctx, d, links, cur.tc, j)
	}
	if err != nil {
		return nil, nil, err
	}
	next.tc = tcNext
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	pinMarks, rtNext, rtDel, err := r.routesConverge(ctx, d, links, cur.rt, r.pinHints(d, links, cur.nft), j)
	if err != nil {
		return nil, nil, err
	}
	next.rt, next.marks = rtNext, pinMarks
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var deferred elems
	if dl != nil && cur.nft.exists && cur.nft.wellFormd && (len(d.ONs) > 0 || len(d.Access) > 0) && marksKept(cur.marks, pinMarks) {
		next.nft, deferred, err = r.nftPatch(ctx, d, links, cur.marks, pinMarks, cur.nft, dl, lazy, j)
		r.patched.nft++
	} else {
		next.nft, deferred, err = r.nftConverge(ctx, d, links, pinMarks, cur.nft, lazy, j)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := rtDel(); err != nil {
		return nil, nil, err
	}
	return next, deferred, tcDel()
}

// read dumps the kernel state a converge starts from.
func (r *Router) read() (*view, error) {
	v := &view{}
	var err error
	if v.tc, err = r.readTC(); err != nil {
		return nil, err
	}
	if v.nft, err = r.readNft(); err != nil {
		return nil, err
	}
	if v.rt, err = r.readRoutes(); err != nil {
		return nil, err
	}
	return v, nil
}

// sameLinks says whether every interface of b was resolved alike in a (an
// interface that went down lost its pin routes; one re-created has a new
// index).
func sameLinks(a, b map[string]linkInfo) bool {
	for n, l := range b {
		if al, ok := a[n]; !ok || al != l {
			return false
		}
	}
	return true
}

// linkInfo is what we need of an interface.
type linkInfo struct {
	index int
	up    bool
}

func (r *Router) resolveLinks(d Desired) (map[string]linkInfo, error) {
	names := map[string]bool{}
	for _, i := range d.Interfaces {
		names[i.Name] = true
	}
	for _, a := range d.Access {
		names[a] = true
	}
	for _, on := range d.ONs {
		for _, p := range on.Pins {
			names[p.Egress] = true
		}
		for _, p := range on.Policing {
			names[p.Access] = true
		}
	}
	out := map[string]linkInfo{}
	for n := range names {
		l, err := r.nl.LinkByName(n)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrNoSuchInterface, n, err)
		}
		a := l.Attrs()
		out[n] = linkInfo{index: a.Index, up: a.Flags&unix.IFF_UP != 0}
	}
	return out, nil
}

// Remove removes one ON everywhere (classes, classification, pins, policing)
// and converges the rest of the last applied state. Removing an unknown ON is
// not an error.
func (r *Router) Remove(ctx context.Context, onID uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	var d Desired
	if r.last != nil {
		d = r.last.without(onID)
	} else {
		cur, err := r.currentDesired()
		if err != nil {
			return err
		}
		d = cur.without(onID)
	}
	return r.applyLocked(ctx, d, nil, true)
}

// Observe reads per-interface, per-ON HTB counters and the policing counter.
func (r *Router) Observe(ctx context.Context) (Observed, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return Observed{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return Observed{}, err
	}
	obs, err := r.observeTC()
	if err != nil {
		return obs, err
	}
	obs.Policed, err = r.policedCounter()
	return obs, err
}
