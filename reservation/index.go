package reservation

import (
	"container/heap"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// The leader's index of the reservation records. With 100,000 reservations a
// read of them all moves hundreds of megabytes; the leader's loops (refresh,
// expiry, degradation, each router's desired state) would do one per router
// per sweep. Instead the leader loads the records once (a page at a time, at
// one revision) and follows a watch, keeping:
//
//   - every record as stored (marshalled: a parsed record is three times
//     its size, and most are read only when a router's state is) with what
//     the loops select by: name, ON id, state, routers crossed;
//   - per router, the committed reservations whose paths cross it, and the
//     revision of the last change to that set (an agent that has applied
//     state up to that revision needs nothing; see Register);
//   - a heap of deadlines: lease expiry of committed records, retention of
//     terminal ones;
//   - counts by state.
//
// Readers that must not miss a write of their own (a router's desired state,
// which an agent converges to) first wait for the index to reach the store's
// current revision (caughtUp).

// indexPage is how many records one read of the initial load carries.
const indexPage = 1000

// Records are keyed by their key below the reservations prefix (the
// path-escaped name), which is what watch events carry.
type index struct {
	mu        sync.Mutex
	cond      *sync.Cond
	retention time.Duration
	rev       int64 // the store revision the index reflects
	failed    bool  // the watch ended: readers fall back to the store
	recs      map[string]*entry
	byRouter  map[string]map[*entry]struct{} // committed, by router
	names     map[string]string              // router names, interned
	changed   map[string]int64               // by router: revision of the last change of its set
	applied   map[string]int64               // by router: state revision its agent's last heartbeat reported
	due       deadlines
	counts    map[vonv1.ReservationState]int
	degraded  int // committed records with a degraded reason
	// progressing is set while a progress request is out (caughtUp).
	progressing atomic.Bool
	loaded      bool // the initial load is done: later puts are changes
}

func newIndex(retention time.Duration) *index {
	x := &index{retention: retention, recs: map[string]*entry{}, byRouter: map[string]map[*entry]struct{}{},
		names:   map[string]string{},
		changed: map[string]int64{}, applied: map[string]int64{}, counts: map[vonv1.ReservationState]int{}}
	x.cond = sync.NewCond(&x.mu)
	return x
}

// loadIndex reads every record at one revision and then follows the watch
// until ctx ends. It returns once the load is done; the returned channel is
// closed when the watch has stopped (the index is then marked failed).
func (m *Manager) loadIndex(ctx context.Context) (*index, <-chan struct{}, error) {
	x := newIndex(m.cfg.Retention)
	var rev int64
	from, end := m.store.onPrefix(), clientv3.GetPrefixRangeEnd(m.store.onPrefix())
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(indexPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := m.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("load reservations: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			x.put(string(kv.Key[len(m.store.onPrefix()):]), kv.Value, kv.ModRevision)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	x.rev, x.loaded = rev, true
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			x.mu.Lock()
			x.failed = true
			x.cond.Broadcast()
			x.mu.Unlock()
		}()
		// A watch ends when its etcd member loses the raft leader or dies:
		// resume after the last revision applied. Only a compaction past it
		// (events lost) ends the index; readers then use the store.
		for ctx.Err() == nil {
			for wr := range m.cli.Watch(indexStream(ctx), m.store.onPrefix(), clientv3.WithPrefix(),
				clientv3.WithRev(x.revision()+1), clientv3.WithProgressNotify()) {
				if wr.CompactRevision != 0 {
					m.log.Warn("reservation index: events compacted away; reading the store until the next term", "err", wr.Err())
					return
				}
				if wr.Err() != nil || wr.Canceled {
					break
				}
				x.mu.Lock()
				for _, ev := range wr.Events {
					name := string(ev.Kv.Key[len(m.store.onPrefix()):])
					if ev.Type == clientv3.EventTypeDelete {
						x.remove(name, ev.Kv.ModRevision)
					} else {
						x.put(name, ev.Kv.Value, ev.Kv.ModRevision)
					}
				}
				x.rev = max(x.rev, wr.Header.Revision)
				x.cond.Broadcast()
				x.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			m.log.Warn("reservation index: watch ended; resuming", "revision", x.revision())
		}
	}()
	return x, done, nil
}

// entry is one record of the index.
type entry struct {
	raw      []byte // the record as stored
	rev      int64  // its mod revision
	name     string
	onID     uint32
	state    vonv1.ReservationState
	degraded bool
	routers  []string // committed: the routers its paths cross
	// notEnforced is the record's list of routers that could not enforce it
	// (noteSync compares it with what each Sync reports).
	notEnforced []*vonv1.NotEnforced
	parsed      *vonv1.Reservation // set only on entries made from a store read
}

func (e *entry) committed() bool {
	return e != nil && e.state == vonv1.ReservationState_RESERVATION_STATE_COMMITTED
}

// record parses e (nil if it does not parse; put checked that it does).
func (e *entry) record() *vonv1.Reservation {
	if e.parsed != nil {
		return e.parsed
	}
	r := &vonv1.Reservation{}
	if proto.Unmarshal(e.raw, r) != nil {
		return nil
	}
	r.Revision = uint64(e.rev)
	return r
}

// put records a record (caller holds mu, or owns x during the load).
func (x *index) put(key string, value []byte, modRev int64) {
	r := &vonv1.Reservation{}
	if err := proto.Unmarshal(value, r); err != nil {
		return // the store reports it to whoever reads it
	}
	r.Revision = uint64(modRev)
	e := &entry{raw: value, rev: modRev, name: r.GetName(), onID: r.GetOnId(), state: r.GetState(), degraded: r.GetDegraded() != "",
		notEnforced: r.GetNotEnforced()}
	if e.committed() {
		e.routers = routersOf(r)
		for i, n := range e.routers {
			e.routers[i] = x.intern(n)
		}
	}
	x.unlink(key, x.recs[key], modRev, r)
	if !x.loaded {
		x.noteLoadedChange(r, e, modRev)
	}
	x.recs[key] = e
	x.counts[e.state]++
	if e.committed() {
		if e.degraded {
			x.degraded++
		}
		for _, n := range e.routers {
			set := x.byRouter[n]
			if set == nil {
				set = map[*entry]struct{}{}
				x.byRouter[n] = set
			}
			set[e] = struct{}{}
		}
		if t := r.GetLeaseExpireTime(); t != nil {
			heap.Push(&x.due, deadline{at: t.AsTime(), key: key, rev: modRev})
		}
	} else if terminal(e.state) && r.GetUpdateTime() != nil {
		heap.Push(&x.due, deadline{at: r.GetUpdateTime().AsTime().Add(x.retention), key: key, rev: modRev, retention: true})
	}
}

// noteLoadedChange sets, while the index loads, changed[n] for the routers n
// of r's paths to the latest revision at which a record loaded so far changed
// n's partitions: for a committed record its paths_revision (a renewal, say,
// rewrote it later without changing them) or else its own revision; for any
// other its paths_revision (a released one's: when it left the committed
// state) or else its own, which is no earlier than that. A record deleted
// before the load (after its retention) changed nothing an agent still holds:
// partitions nobody refreshes run out within their lease, and the retention
// is longer (Config.Retention). An agent whose state revision covers
// changed[n] holds n's desired state (Register's keep_if_current).
func (x *index) noteLoadedChange(r *vonv1.Reservation, e *entry, modRev int64) {
	rev := modRev
	if p := int64(r.GetPathsRevision()); p != 0 && p < modRev {
		rev = p
	}
	routers := e.routers
	if !e.committed() {
		if r.GetState() == vonv1.ReservationState_RESERVATION_STATE_PREPARING {
			return // never committed: no agent holds it as its state
		}
		routers = routersOf(r)
	}
	for _, n := range routers {
		n = x.intern(n)
		x.changed[n] = max(x.changed[n], rev)
	}
}

func (x *index) remove(key string, modRev int64) {
	if e := x.recs[key]; e != nil {
		x.unlink(key, e, modRev, nil)
		delete(x.recs, key)
	}
}

// unlink takes old out of the counts and router sets; routers whose set
// changes (old leaves it, or next enters or changes there) note modRev.
func (x *index) unlink(key string, old *entry, modRev int64, next *vonv1.Reservation) {
	nextCommitted := next != nil && next.GetState() == vonv1.ReservationState_RESERVATION_STATE_COMMITTED
	if old != nil {
		x.counts[old.state]--
		if old.committed() && old.degraded {
			x.degraded--
		}
		for _, n := range old.routers {
			delete(x.byRouter[n], old)
			if len(x.byRouter[n]) == 0 {
				delete(x.byRouter, n)
			}
		}
	}
	if !x.loaded || !old.committed() && !nextCommitted {
		return
	}
	if old.committed() && nextCommitted {
		if prev := old.record(); prev != nil && samePaths(prev, next) {
			return
		}
	}
	for _, n := range old.routersIfCommitted() {
		x.changed[n] = modRev
	}
	if nextCommitted {
		for _, n := range routersOf(next) {
			x.changed[x.intern(n)] = modRev
		}
	}
}

func (e *entry) routersIfCommitted() []string {
	if !e.committed() {
		return nil
	}
	return e.routers
}

// intern returns the index's copy of router name n.
func (x *index) intern(n string) string {
	if in, ok := x.names[n]; ok {
		return in
	}
	x.names[n] = n
	return n
}

// samePaths says whether two committed records install the same partitions.
func samePaths(a, b *vonv1.Reservation) bool {
	return a.GetOnId() == b.GetOnId() && a.GetRateBps() == b.GetRateBps() &&
		proto.Equal(&vonv1.Reservation{Links: a.GetLinks(), Paths: a.GetPaths(), Members: a.GetMembers()},
			&vonv1.Reservation{Links: b.GetLinks(), Paths: b.GetPaths(), Members: b.GetMembers()})
}

// usable says whether readers may use the index.
func (x *index) usable() bool {
	if x == nil {
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return !x.failed
}

// waitFor blocks until the index reflects revision rev (false if it failed
// or ctx ended first).
func (x *index) waitFor(ctx context.Context, rev int64) bool {
	stop := context.AfterFunc(ctx, func() {
		x.mu.Lock()
		x.cond.Broadcast()
		x.mu.Unlock()
	})
	defer stop()
	x.mu.Lock()
	defer x.mu.Unlock()
	for x.rev < rev && !x.failed && ctx.Err() == nil {
		x.cond.Wait()
	}
	return x.rev >= rev && !x.failed
}

// revision is the store revision the index reflects.
func (x *index) revision() int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.rev
}

// reflects says whether the index has caught up with revision rev.
func (x *index) reflects(rev int64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.rev >= rev && !x.failed
}

// committedOn returns the committed reservations crossing node (entries, to
// parse on use), and the index's revision.
func (x *index) committedOn(node string) ([]*entry, int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]*entry, 0, len(x.byRouter[node]))
	for e := range x.byRouter[node] {
		out = append(out, e)
	}
	return out, x.rev
}

// idsByRouter returns, per router, the ON ids of the committed reservations
// crossing it.
func (x *index) idsByRouter() map[string][]uint32 {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[string][]uint32, len(x.byRouter))
	for n, set := range x.byRouter {
		ids := make([]uint32, 0, len(set))
		for e := range set {
			ids = append(ids, e.onID)
		}
		out[n] = ids
	}
	return out
}

// lastChange is the revision of the last change of node's desired set (0:
// none since the index was loaded).
func (x *index) lastChange(node string) int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.changed[node]
}

// noteApplied records the state revision node's agent reported applied.
func (x *index) noteApplied(node string, rev int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.applied[node] = rev
}

// upToDate says whether node's agent last reported having applied its
// router's latest change.
func (x *index) upToDate(node string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	rev, ok := x.applied[node]
	return ok && rev >= x.changed[node]
}

// committed returns the committed reservations that keep says to (nil:
// every one), parsed.
func (x *index) committed(keep func(name string, routers []string, degraded bool) bool) []*vonv1.Reservation {
	x.mu.Lock()
	var set []*entry
	for _, e := range x.recs {
		if e.committed() && (keep == nil || keep(e.name, e.routers, e.degraded)) {
			set = append(set, e)
		}
	}
	x.mu.Unlock()
	out := make([]*vonv1.Reservation, 0, len(set))
	for _, e := range set {
		if r := e.record(); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// committedIDs returns the ON id of every committed reservation, by name,
// and the store revision the index reflects.
func (x *index) committedIDs() (map[string]uint32, int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[string]uint32, x.counts[vonv1.ReservationState_RESERVATION_STATE_COMMITTED])
	for _, e := range x.recs {
		if e.committed() {
			out[e.name] = e.onID
		}
	}
	return out, x.rev
}

// stateCounts returns the number of records in each state.
func (x *index) stateCounts() map[vonv1.ReservationState]int {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[vonv1.ReservationState]int, len(x.counts))
	for s, n := range x.counts {
		out[s] = n
	}
	return out
}

// duePast pops the records whose deadline has passed by now: committed ones
// whose lease ran out, terminal ones past retention. Entries of records
// changed since they were pushed are dropped.
func (x *index) duePast(now time.Time) []*vonv1.Reservation {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []*vonv1.Reservation
	for x.due.Len() > 0 && now.After(x.due[0].at) {
		d := heap.Pop(&x.due).(deadline)
		if e := x.recs[d.key]; e != nil && e.rev == d.rev {
			if r := e.record(); r != nil {
				out = append(out, r)
			}
		}
	}
	return out
}

// deadline is one entry of the expiry heap.
type deadline struct {
	at        time.Time
	key       string
	rev       int64 // the record's revision when pushed (stale entries are skipped)
	retention bool  // a terminal record's retention, not a lease
}

type deadlines []deadline

func (d deadlines) Len() int           { return len(d) }
func (d deadlines) Less(i, j int) bool { return d[i].at.Before(d[j].at) }
func (d deadlines) Swap(i, j int)      { d[i], d[j] = d[j], d[i] }
func (d *deadlines) Push(v any)        { *d = append(*d, v.(deadline)) }
func (d *deadlines) Pop() any          { old := *d; v := old[len(old)-1]; *d = old[:len(old)-1]; return v }

// later re-arms a record's deadline at (an expiry that could not be done).
func (x *index) later(r *vonv1.Reservation, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	key := url.PathEscape(r.GetName())
	if cur := x.recs[key]; cur != nil && uint64(cur.rev) == r.GetRevision() {
		heap.Push(&x.due, deadline{at: at, key: key, rev: int64(r.GetRevision()), retention: terminal(r.GetState())})
	}
}

// index returns the leader's reservation index while it can be read.
func (m *Manager) index() *index {
	if x := m.idx.Load(); x.usable() {
		return x
	}
	return nil
}

// caughtUp returns the index (nil: none), after giving it a moment to reflect
// every write the store had committed when called. Behind a busy store it may
// still lag: what is read from it carries the index's revision, and agents
// refuse a state read at a revision below one they have applied, so a lagging
// read is refused, never wrongly applied.
func (m *Manager) caughtUp(ctx context.Context) *index {
	x := m.index()
	if x == nil {
		return nil
	}
	resp, err := m.cli.Get(ctx, m.store.topologyKey(), clientv3.WithCountOnly())
	if err != nil || x.reflects(resp.Header.Revision) {
		return x
	}
	wctx, cancel := context.WithTimeout(ctx, indexWait)
	defer cancel()
	// Writes elsewhere in the store (agent records, the ledger) move the
	// revision without an event on the reservations: ask the watch for a
	// progress report (one request at a time; the others wait for it).
	// etcd drops a progress request while the stream's watch is still
	// catching up (just after it was created or resumed), so ask again
	// every progressEvery until the index reflects the revision.
	if !x.progressing.CompareAndSwap(false, true) {
		x.waitFor(wctx, resp.Header.Revision)
		return x
	}
	defer x.progressing.Store(false)
	for wctx.Err() == nil {
		_ = m.cli.RequestProgress(indexStream(wctx))
		step, stop := context.WithTimeout(wctx, progressEvery)
		ok := x.waitFor(step, resp.Header.Revision)
		stop()
		if ok || !x.usable() {
			break
		}
	}
	return x
}

// progressEvery is how often caughtUp repeats an unanswered progress request.
const progressEvery = 50 * time.Millisecond

// loadedIndex is caughtUp, waiting first (up to indexLoadWait) for a new
// leader's index to load: a restarted leader meets every agent's
// registration at once, and each reading every record instead took the
// leader's CPU for tens of seconds at 20,000 ONs.
func (m *Manager) loadedIndex(ctx context.Context) *index {
	deadline := time.Now().Add(indexLoadWait)
	for m.index() == nil && m.idxLoading.Load() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
	return m.caughtUp(ctx)
}

// indexLoadWait bounds how long a read waits for a new leader's index.
const indexLoadWait = 10 * time.Second

// indexWait bounds how long a read waits for the index to catch up.
const indexWait = 500 * time.Millisecond

// indexStream marks the index's watch (and its progress requests) as a
// stream of its own: etcd ignores a progress request while any watch on the
// stream lags, and the agent records' watch is busy with heartbeats.
func indexStream(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx), "von-watch", "reservations")
}

// committedOn returns the committed reservations whose paths cross node, in
// name order, and the store revision they reflect: from the index once it
// has caught up with the store, else from the store itself.
func (m *Manager) committedOn(ctx context.Context, node string) ([]*entry, int64, error) {
	var (
		out []*entry
		rev int64
	)
	if x := m.loadedIndex(ctx); x != nil {
		out, rev = x.committedOn(node)
	} else {
		ons, r, err := m.store.List(ctx)
		if err != nil {
			return nil, 0, err
		}
		rev = r
		for _, r := range ons {
			if r.GetState() == vonv1.ReservationState_RESERVATION_STATE_COMMITTED && slices.Contains(routersOf(r), node) {
				out = append(out, &entry{parsed: r, rev: int64(r.GetRevision()), name: r.GetName(), onID: r.GetOnId(),
					state: r.GetState(), notEnforced: r.GetNotEnforced()})
			}
		}
	}
	slices.SortFunc(out, func(a, b *entry) int { return strings.Compare(a.name, b.name) })
	return out, rev, nil
}

// committedAll returns the committed reservations keep selects (nil: all),
// from the index or the store.
func (m *Manager) committedAll(ctx context.Context, keep func(name string, routers []string, degraded bool) bool) ([]*vonv1.Reservation, error) {
	if x := m.index(); x != nil {
		return x.committed(keep), nil
	}
	ons, _, err := m.store.List(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(ons, func(r *vonv1.Reservation) bool {
		return r.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED ||
			keep != nil && !keep(r.GetName(), routersOf(r), r.GetDegraded() != "")
	}), nil
}

// syncSoon asks the leader's syncMissed loop to push node's full state.
func (m *Manager) syncSoon(node string) {
	select {
	case m.syncCh <- node:
	default: // the periodic reconcile catches it
	}
}

// syncMissed pushes the full desired state to routers whose agent reported
// (in a heartbeat) that it has not applied the latest change of that state.
func (m *Manager) syncMissed(ctx context.Context) {
	for {
		var first string
		select {
		case <-ctx.Done():
			return
		case first = <-m.syncCh:
		}
		nodes := map[string]bool{first: true}
		for drained := false; !drained; {
			select {
			case n := <-m.syncCh:
				nodes[n] = true
			default:
				drained = true
			}
		}
		epoch := m.Epoch()
		m.eachRouter(keysOf(nodes), func(node string) {
			if x := m.index(); x != nil {
				m.log.Info("agent missed a change of its desired state; pushing it", "router", node, "change_revision", x.lastChange(node))
			}
			if err := m.syncNode(ctx, epoch, node); err != nil {
				m.log.Warn("sync after a missed change", "router", node, "err", err)
			}
		})
	}
}

func keysOf(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// degradedCount is how many committed records say they are degraded.
func (x *index) degradedCount() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.degraded
}
