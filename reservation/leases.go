package reservation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/internal/failpoint"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Release removes a reservation from every router and frees its capacity and id. The
// record stays, RELEASED, for a while so users can see what happened.
func (m *Manager) Release(ctx context.Context, name string) (*vonv1.Reservation, error) {
	return m.release(ctx, name, vonv1.ReservationState_RESERVATION_STATE_RELEASED, "released")
}

func (m *Manager) release(ctx context.Context, name string, final vonv1.ReservationState, why string) (*vonv1.Reservation, error) {
	epoch, err := m.requireLeader()
	if err != nil {
		return nil, err
	}
	defer m.lock(name)()
	rec, rev, err := m.store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if final == vonv1.ReservationState_RESERVATION_STATE_EXPIRED && rec.GetState() == vonv1.ReservationState_RESERVATION_STATE_COMMITTED &&
		rec.GetLeaseExpireTime() != nil && time.Now().Before(rec.GetLeaseExpireTime().AsTime()) {
		return rec, nil // renewed since the expiry scan saw it
	}
	switch rec.GetState() {
	case vonv1.ReservationState_RESERVATION_STATE_COMMITTED, vonv1.ReservationState_RESERVATION_STATE_RELEASING:
	case vonv1.ReservationState_RESERVATION_STATE_PREPARING:
		return nil, fmt.Errorf("%w: %q is still being set up; try again in a moment", ErrBusy, name)
	default:
		return rec, nil // already released, expired or failed: nothing to do
	}
	txn := txnRecord{ID: randomHex(8), Kind: "release", Name: name, OnID: rec.GetOnId(), Participants: routersOf(rec), Decision: stateName(final)}
	rec.State = vonv1.ReservationState_RESERVATION_STATE_RELEASING
	rec.FailureReason = why
	rec.UpdateTime = timestamppb.Now()
	rev, err = m.store.Update(ctx, rec, rev, m.store.putTxn(txn))
	if err != nil {
		return nil, err
	}
	failpoint.Hit(failpoint.AfterReleaseStart)
	// From here the release finishes whatever the caller does.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.roundTimeout())
	defer cancel()
	return m.completeRelease(ctx, epoch, rec, rev, txn, final, why)
}

// completeRelease tells every router and then frees capacity and id. A router that
// cannot be told loses the partition by itself when its lease runs out.
func (m *Manager) completeRelease(ctx context.Context, epoch uint64, rec *vonv1.Reservation, rev int64, txn txnRecord, final vonv1.ReservationState, why string) (*vonv1.Reservation, error) {
	start := time.Now()
	acked := m.releaseAll(ctx, epoch, txn, rev).ok()
	if !acked {
		m.log.Warn("some routers did not ack the release; their partition leases will expire", "name", rec.GetName())
	}
	err := m.finish(ctx, rec, rev, txn.ID, final, why)
	m.m.releaseDone(start, acked, final, err)
	if err != nil {
		return nil, err
	}
	out := proto.Clone(rec).(*vonv1.Reservation)
	out.State = final
	m.log.Info("released", "name", rec.GetName(), "on_id", rec.GetOnId(), "state", stateName(final))
	return out, nil
}

// Renew extends a committed reservation's lease by ttl from now (0: its own ttl).
func (m *Manager) Renew(ctx context.Context, name string, ttl time.Duration) (*vonv1.Reservation, error) {
	if _, err := m.requireLeader(); err != nil {
		return nil, err
	}
	if ttl != 0 && (ttl < time.Second || ttl > m.cfg.MaxTTL) {
		return nil, fmt.Errorf("%w: ttl %s outside [1s, %s]", ErrInvalid, ttl, m.cfg.MaxTTL)
	}
	for attempt := 0; attempt < 10; attempt++ {
		rec, rev, err := m.store.Get(ctx, name)
		if err != nil {
			return nil, err
		}
		if rec.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
			return nil, fmt.Errorf("%w: %q is %s, only committed reservations can be renewed", ErrBusy, name, stateName(rec.GetState()))
		}
		if ttl == 0 {
			ttl = rec.GetTtl().AsDuration()
		} else {
			rec.Ttl = durationpb.New(ttl)
		}
		now := time.Now()
		rec.LeaseExpireTime = timestamppb.New(now.Add(ttl))
		rec.UpdateTime = timestamppb.New(now)
		nrev, err := m.store.UpdateSamePaths(ctx, rec, rev)
		if errors.Is(err, ErrGuard) {
			continue
		}
		if err != nil {
			return nil, err
		}
		rec.Revision = uint64(nrev)
		return rec, nil
	}
	return nil, fmt.Errorf("renew %s: %w", name, ErrContention)
}

// expireOnce releases committed reservations whose lease has passed and drops terminal
// records older than the retention.
func (m *Manager) expireOnce(ctx context.Context) {
	now := time.Now()
	x := m.index()
	var ons []*vonv1.Reservation
	if x != nil {
		ons = x.duePast(now)
	} else {
		var err error
		if ons, _, err = m.store.List(ctx); err != nil {
			m.log.Warn("expiry scan", "err", err)
			return
		}
	}
	for _, r := range ons {
		switch {
		case r.GetState() == vonv1.ReservationState_RESERVATION_STATE_COMMITTED && r.GetLeaseExpireTime() != nil && now.After(r.GetLeaseExpireTime().AsTime()):
			if _, err := m.release(ctx, r.GetName(), vonv1.ReservationState_RESERVATION_STATE_EXPIRED, "lease expired at "+r.GetLeaseExpireTime().AsTime().Format(time.RFC3339)); err != nil {
				m.log.Warn("expire", "name", r.GetName(), "err", err)
				if x != nil {
					x.later(r, now.Add(m.cfg.ExpiryInterval))
				}
			}
		case terminal(r.GetState()) && r.GetUpdateTime() != nil && now.Sub(r.GetUpdateTime().AsTime()) > m.cfg.Retention:
			key := m.store.onKey(r.GetName())
			if _, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", int64(r.GetRevision()))).Then(clientv3.OpDelete(key)).Commit(); err != nil {
				m.log.Warn("drop old record", "name", r.GetName(), "err", err)
				if x != nil {
					x.later(r, now.Add(m.cfg.ExpiryInterval))
				}
			}
		}
	}
}

// desired lists the partitions node must hold: one per committed reservation
// whose paths cross it, with those reservations and the store revision they
// were read at. The reservations carry only what noteSync reads (name, ON id,
// revision, where not enforced): a router of 100,000 ONs carries thousands,
// and a sync round parsing each in full held gigabytes at once. An ON whose
// partition cannot be derived is left out (and logged); the rest still reach
// the router.
func (m *Manager) desired(ctx context.Context, node string) ([]*vonv1.Reservation, []*vonv1.PartitionSpec, int64, error) {
	// At most desiredParallelism at once, and none for a caller that gave
	// up: at 100,000 ONs, agents whose heartbeats timed out on an
	// overloaded leader asked for their full state again and again while the
	// abandoned answers were still being computed — 2,700 at once, 2.5 GB.
	if err := ctx.Err(); err != nil { // select would pick at random with a slot free
		return nil, nil, 0, fmt.Errorf("%s's desired state: %w", node, err)
	}
	select {
	case m.desiredSem <- struct{}{}:
		defer func() { <-m.desiredSem }()
	case <-ctx.Done():
		return nil, nil, 0, fmt.Errorf("%s's desired state: %w", node, ctx.Err())
	}
	ons, rev, err := m.committedOn(ctx, node)
	if err != nil || len(ons) == 0 {
		return nil, nil, rev, err
	}
	ts, err := m.store.Topology(ctx)
	if err != nil {
		return nil, nil, 0, err
	}
	agents, err := m.agentRecords(ctx)
	if err != nil {
		return nil, nil, 0, err
	}
	recs := make([]*vonv1.Reservation, 0, len(ons))
	out := make([]*vonv1.PartitionSpec, 0, len(ons))
	for i, e := range ons {
		if i%256 == 0 && ctx.Err() != nil {
			return nil, nil, 0, fmt.Errorf("%s's desired state: %w", node, ctx.Err())
		}
		spec, err := m.specOf(ts, e.name, uint64(e.rev), e.record, node, agents)
		if err != nil {
			// One ON the manager cannot derive (a record that no longer fits
			// the topology) must not take every other ON of the router with it.
			m.log.Error("cannot derive a committed ON's partition; leaving it out of the router's desired state",
				"name", e.name, "router", node, "err", err)
			continue
		}
		recs = append(recs, &vonv1.Reservation{Name: e.name, OnId: e.onID, Revision: uint64(e.rev), NotEnforced: e.notEnforced})
		out = append(out, spec)
	}
	return recs, out, rev, nil
}

// specFor rebuilds what node must install for r, from r's recorded paths.
// The partitions of one record are derived once per record revision,
// topology and agent addresses and kept marshalled (specCache); each call
// returns a copy of its own.
func (m *Manager) specFor(ts *TopologyState, r *vonv1.Reservation, node string, agents map[string]*vonv1.Agent) (*vonv1.PartitionSpec, error) {
	return m.specOf(ts, r.GetName(), r.GetRevision(), func() *vonv1.Reservation { return r }, node, agents)
}

// specOf is specFor for the record name at revision rev, which record
// returns (nil: it does not parse) and is called only when the cache misses.
func (m *Manager) specOf(ts *TopologyState, name string, rev uint64, record func() *vonv1.Reservation, node string, agents map[string]*vonv1.Agent) (*vonv1.PartitionSpec, error) {
	key := specKey{name: name, rev: rev, topo: ts.Revision, addrs: m.agentAddrs.Load()}
	if b, ok := m.specs.get(key, node); ok {
		if b == nil {
			return nil, fmt.Errorf("%w: %s is not on the paths", ErrInvalid, node)
		}
		s := &vonv1.PartitionSpec{}
		if err := proto.Unmarshal(b, s); err == nil {
			return s, nil
		}
	}
	r := record()
	if r == nil {
		return nil, fmt.Errorf("%w: the record of %s does not parse", ErrInvalid, name)
	}
	pl, err := placeRecorded(ts, r, m.cfg.DSCP, m.cfg.Port, agents)
	if err != nil {
		return nil, err
	}
	enc := &specSet{nodes: make([]string, 0, len(pl.Specs)), ends: make([]uint32, 0, len(pl.Specs))}
	for _, n := range slices.Sorted(maps.Keys(pl.Specs)) {
		s := pl.Specs[n]
		s.OnId = r.GetOnId()
		s.LeaseTtl = durationpb.New(m.cfg.PartitionLease)
		b, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(enc.buf, s)
		if err != nil {
			return nil, fmt.Errorf("encode the partition of %s on %s: %w", r.GetName(), n, err)
		}
		enc.buf, enc.nodes, enc.ends = b, append(enc.nodes, n), append(enc.ends, uint32(len(b)))
	}
	enc.buf = slices.Clip(enc.buf)
	if r.GetRevision() != 0 {
		m.specs.put(key, enc)
	}
	s := pl.Specs[node]
	if s == nil {
		return nil, fmt.Errorf("%w: %s is not on the paths", ErrInvalid, node)
	}
	return s, nil
}

// specKey is what a record's partitions depend on.
type specKey struct {
	name  string
	rev   uint64 // the record's revision
	topo  int64  // the topology's revision
	addrs uint64 // agentAddrs: registered interface addresses can be next hops
}

// specCache holds derived partitions, marshalled (a third of the memory of
// the messages: at 20,000 ONs over 1,000 routers, 66 MB instead of 200 MB
// of the manager's heap), bounded: when full it starts afresh.
type specCache struct {
	mu sync.Mutex
	m  map[specKey]*specSet
}

// specSet is one record's partitions, marshalled one after another (a map
// of a dozen slices per record cost as much again at 100,000 records).
type specSet struct {
	nodes []string // sorted
	ends  []uint32 // ends[i]: where nodes[i]'s partition ends in buf
	buf   []byte
}

// get returns node's marshalled partition (nil: node is not on the paths).
func (s *specSet) get(node string) []byte {
	i, ok := slices.BinarySearch(s.nodes, node)
	if !ok {
		return nil
	}
	from := uint32(0)
	if i > 0 {
		from = s.ends[i-1]
	}
	return s.buf[from:s.ends[i]:s.ends[i]]
}

// specCacheMax bounds specCache (records; each holds one spec per router).
const specCacheMax = 200_000

// get returns node's marshalled spec for k: ok is false if k is not cached,
// b nil if k is cached and node is not on its paths.
func (c *specCache) get(k specKey, node string) (b []byte, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	if !ok {
		return nil, false
	}
	return v.get(node), true
}

func (c *specCache) put(k specKey, v *specSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= specCacheMax {
		c.m = map[specKey]*specSet{}
	}
	c.m[k] = v
}

// syncNode pushes node's complete desired state. The state is read and sent under
// the router's lock, so it can never overtake a Commit or Release sent meanwhile.
func (m *Manager) syncNode(ctx context.Context, epoch uint64, node string) error {
	unlock := m.routerLock(node, true)
	recs, resp, err := m.syncNodeLocked(ctx, epoch, node)
	unlock()
	if err == nil {
		m.noteSync(ctx, node, recs, resp)
	}
	return err
}

// syncNodeLocked is syncNode for a caller that holds the router's lock; it
// returns the reservations it listed and the agent's answer.
func (m *Manager) syncNodeLocked(ctx context.Context, epoch uint64, node string) ([]*vonv1.Reservation, *vonv1.AgentServiceSyncResponse, error) {
	recs, specs, rev, err := m.desired(ctx, node)
	if err != nil {
		return nil, nil, err
	}
	c, err := m.agentClient(ctx, node)
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	resp, err := c.Sync(cctx, &vonv1.AgentServiceSyncRequest{LeaderEpoch: epoch, ClusterId: m.clusterID(), Partitions: specs,
		StateRevision: uint64(rev)})
	m.m.call("sync", err)
	return recs, resp, err
}

// refreshOnce starts renewing the partition leases of every live agent and
// waits for none of them: a router whose last refresh is still running (a
// hung or slow agent) is skipped this round, and delays nobody else.
func (m *Manager) refreshOnce(ctx context.Context) { m.refreshRound(ctx, false) }

// refreshRound renews the partition leases of every live agent, each router
// on its own (at most routerParallelism at once); ids an agent does not know
// are re-driven with a full Sync. With wait it returns when every refresh it
// started is done, else at once.
func (m *Manager) refreshRound(ctx context.Context, wait bool) {
	epoch := m.Epoch()
	agents, err := m.agentRecords(ctx)
	if err != nil {
		m.log.Warn("refresh: list agents", "err", err)
		return
	}
	var ids map[string][]uint32
	if x := m.index(); x != nil {
		ids = x.idsByRouter()
	} else {
		ons, _, err := m.store.List(ctx)
		if err != nil {
			m.log.Warn("refresh: list reservations", "err", err)
			return
		}
		ids = map[string][]uint32{}
		for _, r := range ons {
			if r.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
				continue
			}
			for _, n := range routersOf(r) {
				ids[n] = append(ids[n], r.GetOnId())
			}
		}
	}
	nodes := make([]string, 0, len(ids))
	for node := range ids {
		if m.live(agents[node]) {
			nodes = append(nodes, node)
		}
	}
	// Every router on its own, each call under its own timeout: a hung
	// agent delays nobody else's lease, and holds at most its own slot.
	var round sync.WaitGroup
	m.refreshMu.Lock()
	if m.refreshing == nil {
		m.refreshing = map[string]bool{}
	}
	for _, node := range nodes {
		if m.refreshing[node] {
			m.log.Warn("refresh: the last refresh of this router is still running; skipping it this round", "router", node)
			continue
		}
		m.refreshing[node] = true
		round.Add(1)
		m.refreshWG.Go(func() {
			defer round.Done()
			defer func() {
				m.refreshMu.Lock()
				delete(m.refreshing, node)
				m.refreshMu.Unlock()
			}()
			select {
			case m.refreshSem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-m.refreshSem }()
			m.refreshNode(ctx, epoch, node, agents[node].GetEndpoint(), ids[node])
		})
	}
	m.refreshMu.Unlock()
	if wait {
		round.Wait()
	}
}

// refreshNode renews one router's partition leases (and Syncs it if it lost any).
func (m *Manager) refreshNode(ctx context.Context, epoch uint64, node, endpoint string, ids []uint32) {
	{
		c, err := m.client(node, endpoint)
		if err != nil {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
		resp, err := c.Refresh(cctx, &vonv1.AgentServiceRefreshRequest{LeaderEpoch: epoch, ClusterId: m.clusterID(), OnIds: ids, LeaseTtl: durationpb.New(m.cfg.PartitionLease)})
		cancel()
		m.m.call("refresh", err)
		if err != nil {
			m.log.Warn("refresh", "router", node, "err", err)
			return
		}
		if len(resp.GetUnknownOnIds()) > 0 {
			m.log.Info("router lost partitions; re-driving", "router", node, "count", len(resp.GetUnknownOnIds()))
			if err := m.syncNode(ctx, epoch, node); err != nil {
				m.log.Warn("sync", "router", node, "err", err)
			}
		}
	}
}

// desiredParallelism bounds how many routers' desired states are computed
// at once (Register, Sync); a router's is CPU-bound work.
const desiredParallelism = 8

// routerParallelism bounds how many routers one sweep (refresh, reconcile)
// talks to at once.
const routerParallelism = 64

// eachRouter runs fn for every node, up to routerParallelism at once, and
// returns when all are done.
func (m *Manager) eachRouter(nodes []string, fn func(node string)) {
	sem := make(chan struct{}, routerParallelism)
	var wg sync.WaitGroup
	for _, node := range nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(node)
		})
	}
	wg.Wait()
}

// reconcileOnce pushes the full desired state to every live agent and re-drives
// unfinished transactions.
func (m *Manager) reconcileOnce(ctx context.Context) {
	if err := m.recover(ctx); err != nil {
		m.log.Warn("reconcile: transactions", "err", err)
	}
	agents, err := m.agentRecords(ctx)
	if err != nil {
		return
	}
	var nodes []string
	for node, a := range agents {
		if m.live(a) {
			nodes = append(nodes, node)
		}
	}
	// Every reconcileFullEvery-th round every live agent gets its state; in
	// between only those whose last heartbeat does not show they applied
	// their router's latest change. (A new leader's first refresh already
	// re-drives every router that lacks an ON.)
	if x := m.index(); x != nil && m.reconciles.Add(1)%reconcileFullEvery != 0 {
		nodes = slices.DeleteFunc(nodes, x.upToDate)
	}
	epoch := m.Epoch()
	m.eachRouter(nodes, func(node string) {
		if err := m.syncNode(ctx, epoch, node); err != nil {
			m.log.Warn("reconcile", "router", node, "err", err)
		}
	})
}

// reconcileFullEvery is how many reconcile rounds make one in which every
// live agent gets its full state, whatever its heartbeats said.
const reconcileFullEvery = 10

// recover finishes every 2PC round still recorded in etcd: undecided reserve rounds are
// aborted (presumed abort), committed ones re-driven, releases completed.
func (m *Manager) recover(ctx context.Context) error {
	epoch, err := m.requireLeader()
	if err != nil {
		return err
	}
	txns, err := m.store.Txns(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range txns {
		if err := m.recoverOne(ctx, epoch, t); err != nil {
			errs = append(errs, fmt.Errorf("txn %s (%s %s): %w", t.ID, t.Kind, t.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) recoverOne(ctx context.Context, epoch uint64, t txnRecord) error {
	unlock := m.lock(t.Name)
	defer unlock()
	// A round in flight holds the name lock; once we have it, the round may be over.
	resp, err := m.cli.Get(ctx, m.store.txnKey(t.ID))
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &t); err != nil {
		return fmt.Errorf("corrupt transaction record: %w", err)
	}
	txnRev := resp.Kvs[0].ModRevision
	rec, rev, err := m.store.Get(ctx, t.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	mine := err == nil && rec.GetOnId() == t.OnID
	switch {
	case t.Kind == "reserve" && t.Decision == "commit":
		res := m.commitAll(ctx, epoch, t, txnRev)
		if mine && rec.GetState() == vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
			m.noteEnforcement(ctx, rec, rev, res, t.Participants)
		}
		if res.ok() {
			_, err := m.cli.Delete(ctx, m.store.txnKey(t.ID))
			return err
		}
		return nil
	case t.Kind == "reserve":
		if t.Decision == "" {
			t.Decision = "abort"
			if err := m.writeAbort(ctx, t, txnRev); err != nil {
				return err
			}
			m.log.Info("presumed abort of an undecided reservation", "name", t.Name, "txn", t.ID)
		}
		m.abortAll(ctx, epoch, t)
		if mine && rec.GetState() == vonv1.ReservationState_RESERVATION_STATE_PREPARING {
			return m.finish(ctx, rec, rev, t.ID, vonv1.ReservationState_RESERVATION_STATE_FAILED, "aborted: the manager stopped before deciding")
		}
		_, err := m.cli.Delete(ctx, m.store.txnKey(t.ID))
		return err
	case t.Kind == "reroute" && t.Decision == "commit":
		m.finishReroute(ctx, epoch, t, txnRev)
		return nil
	case t.Kind == "reroute":
		// Undecided: the record still holds the old paths; drop the new holds.
		m.abortAll(ctx, epoch, t)
		_, err := m.cli.Delete(ctx, m.store.txnKey(t.ID))
		return err
	case t.Kind == "release":
		if mine && rec.GetState() == vonv1.ReservationState_RESERVATION_STATE_RELEASING {
			final := vonv1.ReservationState_RESERVATION_STATE_RELEASED
			if t.Decision == stateName(vonv1.ReservationState_RESERVATION_STATE_EXPIRED) {
				final = vonv1.ReservationState_RESERVATION_STATE_EXPIRED
			}
			_, err := m.completeRelease(ctx, epoch, rec, rev, t, final, rec.GetFailureReason())
			return err
		}
		m.releaseAll(ctx, epoch, t, txnRev)
		_, err := m.cli.Delete(ctx, m.store.txnKey(t.ID))
		return err
	}
	return fmt.Errorf("unknown transaction kind %q", t.Kind)
}
