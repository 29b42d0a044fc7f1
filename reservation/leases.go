package reservation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

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
	// From here the release finishes whatever the caller does.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.roundTimeout())
	defer cancel()
	return m.completeRelease(ctx, epoch, rec, rev, txn, final, why)
}

// completeRelease tells every router and then frees capacity and id. A router that
// cannot be told loses the partition by itself when its lease runs out.
func (m *Manager) completeRelease(ctx context.Context, epoch uint64, rec *vonv1.Reservation, rev int64, txn txnRecord, final vonv1.ReservationState, why string) (*vonv1.Reservation, error) {
	if !m.releaseAll(ctx, epoch, txn) {
		m.log.Warn("some routers did not ack the release; their partition leases will expire", "name", rec.GetName())
	}
	if err := m.finish(ctx, rec, rev, txn.ID, final, why); err != nil {
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
		nrev, err := m.store.Update(ctx, rec, rev)
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
	ons, _, err := m.store.List(ctx)
	if err != nil {
		m.log.Warn("expiry scan", "err", err)
		return
	}
	now := time.Now()
	for _, r := range ons {
		switch {
		case r.GetState() == vonv1.ReservationState_RESERVATION_STATE_COMMITTED && r.GetLeaseExpireTime() != nil && now.After(r.GetLeaseExpireTime().AsTime()):
			if _, err := m.release(ctx, r.GetName(), vonv1.ReservationState_RESERVATION_STATE_EXPIRED, "lease expired at "+r.GetLeaseExpireTime().AsTime().Format(time.RFC3339)); err != nil {
				m.log.Warn("expire", "name", r.GetName(), "err", err)
			}
		case terminal(r.GetState()) && r.GetUpdateTime() != nil && now.Sub(r.GetUpdateTime().AsTime()) > m.cfg.Retention:
			key := m.store.onKey(r.GetName())
			if _, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", int64(r.GetRevision()))).Then(clientv3.OpDelete(key)).Commit(); err != nil {
				m.log.Warn("drop old record", "name", r.GetName(), "err", err)
			}
		}
	}
}

// desired lists the partitions node must hold: one per committed reservation whose
// paths cross it.
func (m *Manager) desired(ctx context.Context, node string) ([]*vonv1.PartitionSpec, error) {
	ons, _, err := m.store.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []*vonv1.PartitionSpec
	var ts *TopologyState
	var agents map[string]*vonv1.Agent
	for _, r := range ons {
		// Only committed ONs: a releasing one is on its way out of every router.
		if r.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
			continue
		}
		on := false
		for _, n := range routersOf(r) {
			on = on || n == node
		}
		if !on {
			continue
		}
		if ts == nil {
			if ts, err = m.store.Topology(ctx); err != nil {
				return nil, err
			}
			if agents, err = m.store.Agents(ctx); err != nil {
				return nil, err
			}
		}
		spec, err := m.specFor(ts, r, node, agents)
		if err != nil {
			return nil, fmt.Errorf("partition of %s on %s: %w", r.GetName(), node, err)
		}
		out = append(out, spec)
	}
	return out, nil
}

// specFor rebuilds what node must install for r, from r's recorded paths.
func (m *Manager) specFor(ts *TopologyState, r *vonv1.Reservation, node string, agents map[string]*vonv1.Agent) (*vonv1.PartitionSpec, error) {
	pl, err := placeRecorded(ts, r, m.cfg.DSCP, m.cfg.Port, agents)
	if err != nil {
		return nil, err
	}
	s := pl.Specs[node]
	if s == nil {
		return nil, fmt.Errorf("%w: %s is not on the paths", ErrInvalid, node)
	}
	s.OnId = r.GetOnId()
	s.LeaseTtl = durationpb.New(m.cfg.PartitionLease)
	return s, nil
}

// syncNode pushes node's complete desired state. The state is read and sent under
// the router's lock, so it can never overtake a Commit or Release sent meanwhile.
func (m *Manager) syncNode(ctx context.Context, epoch uint64, node string) error {
	defer m.routerLock(node)()
	return m.syncNodeLocked(ctx, epoch, node)
}

// syncNodeLocked is syncNode for a caller that holds the router's lock.
func (m *Manager) syncNodeLocked(ctx context.Context, epoch uint64, node string) error {
	specs, err := m.desired(ctx, node)
	if err != nil {
		return err
	}
	c, err := m.agentClient(ctx, node)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	_, err = c.Sync(cctx, &vonv1.AgentServiceSyncRequest{LeaderEpoch: epoch, Partitions: specs})
	m.m.call("sync", err)
	return err
}

// refreshOnce renews the partition leases of every live agent; ids an agent does not
// know are re-driven with a full Sync.
func (m *Manager) refreshOnce(ctx context.Context) {
	epoch := m.Epoch()
	agents, err := m.store.Agents(ctx)
	if err != nil {
		m.log.Warn("refresh: list agents", "err", err)
		return
	}
	ons, _, err := m.store.List(ctx)
	if err != nil {
		m.log.Warn("refresh: list reservations", "err", err)
		return
	}
	ids := map[string][]uint32{}
	for _, r := range ons {
		if r.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
			continue
		}
		for _, n := range routersOf(r) {
			ids[n] = append(ids[n], r.GetOnId())
		}
	}
	for node, list := range ids {
		if !m.live(agents[node]) {
			continue
		}
		c, err := m.client(agents[node].GetEndpoint())
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
		resp, err := c.Refresh(cctx, &vonv1.AgentServiceRefreshRequest{LeaderEpoch: epoch, OnIds: list, LeaseTtl: durationpb.New(m.cfg.PartitionLease)})
		cancel()
		m.m.call("refresh", err)
		if err != nil {
			m.log.Warn("refresh", "router", node, "err", err)
			continue
		}
		if len(resp.GetUnknownOnIds()) > 0 {
			m.log.Info("router lost partitions; re-driving", "router", node, "on_ids", resp.GetUnknownOnIds())
			if err := m.syncNode(ctx, epoch, node); err != nil {
				m.log.Warn("sync", "router", node, "err", err)
			}
		}
	}
}

// reconcileOnce pushes the full desired state to every live agent and re-drives
// unfinished transactions.
func (m *Manager) reconcileOnce(ctx context.Context) {
	if err := m.recover(ctx); err != nil {
		m.log.Warn("reconcile: transactions", "err", err)
	}
	agents, err := m.store.Agents(ctx)
	if err != nil {
		return
	}
	for node, a := range agents {
		if m.live(a) {
			if err := m.syncNode(ctx, m.Epoch(), node); err != nil {
				m.log.Warn("reconcile", "router", node, "err", err)
			}
		}
	}
}

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
		if m.commitAll(ctx, epoch, t) {
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
	case t.Kind == "release":
		if mine && rec.GetState() == vonv1.ReservationState_RESERVATION_STATE_RELEASING {
			final := vonv1.ReservationState_RESERVATION_STATE_RELEASED
			if t.Decision == stateName(vonv1.ReservationState_RESERVATION_STATE_EXPIRED) {
				final = vonv1.ReservationState_RESERVATION_STATE_EXPIRED
			}
			_, err := m.completeRelease(ctx, epoch, rec, rev, t, final, rec.GetFailureReason())
			return err
		}
		m.releaseAll(ctx, epoch, t)
		_, err := m.cli.Delete(ctx, m.store.txnKey(t.ID))
		return err
	}
	return fmt.Errorf("unknown transaction kind %q", t.Kind)
}
