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
	mu     sync.Mutex
	cfg    Config
	log    *slog.Logger
	ns     netns.NsHandle // -1: current namespace
	tc     *tc.Tc
	nl     *vnl.Handle
	nft    *nftables.Conn
	store  Store
	alloc  *allocator
	last   *Desired
	closed bool
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
	return r, nil
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
	r.last = st.Desired
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
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closeLocked()
	}
	return nil
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

// Apply converges the kernel to d: it installs what is missing, repairs what
// differs, removes what we own and d does not list, and touches nothing else.
// Re-applying the same d changes nothing. If a step fails, every earlier step
// of this call is undone and the error wraps ErrRolledBack.
func (r *Router) Apply(ctx context.Context, d Desired) error {
	nd, err := d.normalize()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	return r.applyLocked(ctx, nd)
}

func (r *Router) applyLocked(ctx context.Context, d Desired) error {
	snap := r.alloc.clone()
	keep := map[uint32]bool{}
	for _, on := range d.ONs {
		keep[on.ID] = true
	}
	r.alloc.retain(keep)
	for _, on := range d.ONs {
		if _, err := r.alloc.assign(on.ID); err != nil {
			r.alloc = snap
			return err
		}
	}
	var j journal
	if err := r.converge(ctx, d, &j); err != nil {
		r.alloc = snap
		if uerr := j.rollback(); uerr != nil {
			r.log.Error("rollback incomplete", "err", uerr)
			return fmt.Errorf("%w: %w (undo: %w)", ErrRollbackFailed, err, uerr)
		}
		return fmt.Errorf("%w: %w", ErrRolledBack, err)
	}
	st := r.alloc.state()
	st.Desired = &d
	r.last = &d
	if err := r.store.Save(st); err != nil {
		return err
	}
	return nil
}

// converge runs the steps in an order that never leaves a rule pointing at a
// missing object: add classes and routes, switch nftables atomically, then
// delete what is no longer wanted.
func (r *Router) converge(ctx context.Context, d Desired, j *journal) error {
	links, err := r.resolveLinks(d)
	if err != nil {
		return err
	}
	tcDel, err := r.tcConverge(ctx, d, links, j)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	nst, err := r.readNft()
	if err != nil {
		return err
	}
	pinMarks, rtDel, err := r.routesConverge(ctx, d, links, r.pinHints(d, links, nst), j)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.nftConverge(ctx, d, links, pinMarks, nst, j); err != nil {
		return err
	}
	if err := rtDel(); err != nil {
		return err
	}
	return tcDel()
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
	return r.applyLocked(ctx, d)
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
