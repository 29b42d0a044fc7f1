package agent

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/partition"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// service implements vonv1.AgentServiceServer. Handlers return plain errors;
// the interceptor maps them to gRPC codes.
type service struct {
	vonv1.UnimplementedAgentServiceServer
	a *Agent
}

// fenceLocked rejects a call from another manager cluster than the one the
// agent follows, or with a stale leader epoch, and remembers a newer epoch.
// Epochs are etcd revisions: they are compared only within one cluster.
func (a *Agent) fenceLocked(cluster string, epoch uint64) error {
	if a.closed {
		return ErrClosed
	}
	switch {
	case cluster == a.st.cluster:
	case a.st.cluster == "":
		// The first cluster to reach this agent (its managers are authenticated
		// by their certificates): follow it, counting its epochs afresh.
		a.log.Info("following manager cluster", "cluster", cluster, "epoch", epoch, "previous_epoch", a.st.epoch)
		a.st.cluster, a.st.epoch, a.st.stateRev = cluster, epoch, 0
	case cluster == "":
		return fmt.Errorf("%w: the call names no manager cluster; this agent follows cluster %s", ErrStaleEpoch, a.st.cluster)
	default:
		return fmt.Errorf("%w: the call is from manager cluster %s; this agent follows cluster %s (created %s) and moves to another only when it registers with one created later",
			ErrStaleEpoch, cluster, a.st.cluster, a.st.created.Format(time.RFC3339))
	}
	if epoch < a.st.epoch {
		return fmt.Errorf("%w: leader_epoch %d is below %d, which this agent has already seen: a newer manager leader is in charge",
			ErrStaleEpoch, epoch, a.st.epoch)
	}
	if epoch > a.st.epoch {
		a.log.Info("new leader epoch", "epoch", epoch, "previous", a.st.epoch)
		a.st.epoch = epoch
	}
	return nil
}

// followLocked applies the manager cluster and epoch of a registration
// answer. It reports whether the agent moved to a new cluster (its holds are
// then all in doubt), and fails for an answer from an older cluster than the
// one followed, which the agent ignores.
func (a *Agent) followLocked(resp *vonv1.AgentRegistryServiceRegisterResponse) (moved bool, err error) {
	id, created := resp.GetClusterId(), resp.GetClusterCreateTime().AsTime()
	if resp.GetClusterCreateTime() == nil {
		created = time.Time{}
	}
	switch {
	case id == a.st.cluster:
		if a.st.created.IsZero() && !created.IsZero() {
			a.st.created = created
		}
		if resp.GetLeaderEpoch() < a.st.epoch {
			// A deposed leader's answer (computed before it lost the lead):
			// its desired state may predate the successor's changes.
			return false, fmt.Errorf("%w: registration answered by leader epoch %d, below %d which this agent has seen; ignoring its desired state",
				ErrStaleEpoch, resp.GetLeaderEpoch(), a.st.epoch)
		}
		if resp.GetLeaderEpoch() > a.st.epoch {
			a.log.Info("new leader epoch from registration", "epoch", resp.GetLeaderEpoch(), "previous", a.st.epoch)
			a.st.epoch = resp.GetLeaderEpoch()
		}
		return false, nil
	case id == "":
		return false, fmt.Errorf("%w: the manager names no cluster; this agent follows cluster %s", ErrStaleEpoch, a.st.cluster)
	case a.st.cluster == "" || created.After(a.st.created):
		a.log.Warn("moving to a newer manager cluster (etcd rebuilt or replaced); its epochs start afresh",
			"cluster", id, "created", created, "previous", a.st.cluster, "previous_created", a.st.created, "epoch", resp.GetLeaderEpoch())
		a.st.cluster, a.st.created, a.st.epoch, a.st.stateRev = id, created, resp.GetLeaderEpoch(), 0
		return true, nil
	default:
		return false, fmt.Errorf("%w: the manager is of cluster %s (created %s), older than cluster %s (created %s) this agent follows; is it a stale cluster?",
			ErrStaleEpoch, id, created.Format(time.RFC3339), a.st.cluster, a.st.created.Format(time.RFC3339))
	}
}

func (a *Agent) ttl(d *durationpb.Duration, def time.Duration, what string) (time.Duration, error) {
	if d == nil {
		return def, nil
	}
	if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
		return 0, invalidf("%s %v is not a valid non-negative duration", what, d)
	}
	v := d.AsDuration()
	if v == 0 {
		return def, nil
	}
	if v > a.cfg.MaxTTL {
		return 0, invalidf("%s %v exceeds the agent's maximum %v", what, v, a.cfg.MaxTTL)
	}
	return v, nil
}

func (a *Agent) leaseOf(spec *vonv1.PartitionSpec) time.Duration {
	d, err := a.ttl(spec.GetLeaseTtl(), a.cfg.DefaultLeaseTTL, "lease_ttl")
	if err != nil { // checkSpec rejected such specs already
		return a.cfg.DefaultLeaseTTL
	}
	return d
}

func sameSpec(x, y *vonv1.PartitionSpec) bool {
	x2, y2 := proto.Clone(x).(*vonv1.PartitionSpec), proto.Clone(y).(*vonv1.PartitionSpec)
	x2.LeaseTtl, y2.LeaseTtl = nil, nil
	return proto.Equal(x2, y2)
}

// Prepare implements AgentService.Prepare.
func (s *service) Prepare(ctx context.Context, req *vonv1.AgentServicePrepareRequest) (*vonv1.AgentServicePrepareResponse, error) {
	a := s.a
	txn, spec := req.GetTxnId(), req.GetPartition()
	if txn == "" {
		return nil, invalidf("txn_id is required")
	}
	if err := checkSpec(spec, a.cfg.MaxTTL); err != nil {
		return nil, err
	}
	holdTTL, err := a.ttl(req.GetHoldTtl(), a.cfg.DefaultHoldTTL, "hold_ttl")
	if err != nil {
		return nil, err
	}
	ifs, err := a.dp.interfaces()
	if err != nil {
		return nil, err
	}
	id := spec.GetOnId()
	a.mu.Lock()
	defer a.mu.Unlock()
	before := a.st.epoch
	if err := a.fenceLocked(req.GetClusterId(), req.GetLeaderEpoch()); err != nil {
		return nil, err
	}
	refuse := func(reason string) (*vonv1.AgentServicePrepareResponse, error) {
		a.st.hist.put(outcome{Op: opPrepare, TxnID: txn, OnID: id, Vote: vonv1.Vote_VOTE_REFUSED.String(), Reason: reason, Time: time.Now()})
		_ = a.persistLocked()
		a.log.Info("prepare refused", "txn", txn, "on", id, "reason", reason)
		return &vonv1.AgentServicePrepareResponse{Vote: vonv1.Vote_VOTE_REFUSED, Reason: reason}, nil
	}
	if o, ok := a.st.hist.get(opPrepare, txn); ok {
		if o.OnID != id {
			return nil, invalidf("txn %q already prepared ON %d, not ON %d", txn, o.OnID, id)
		}
		if before != a.st.epoch {
			_ = a.persistLocked()
		}
		if o.Vote == vonv1.Vote_VOTE_PREPARED.String() {
			_, held := a.st.holds[txn]
			_, committed := a.st.hist.get(opCommit, txn)
			if !held && !committed {
				why := "ended"
				if e, ok := a.st.hist.get(opEnd, txn); ok {
					why = e.Reason
				}
				return &vonv1.AgentServicePrepareResponse{Vote: vonv1.Vote_VOTE_REFUSED,
					Reason: fmt.Sprintf("txn %q was prepared but its hold has %s", txn, why)}, nil
			}
		}
		return &vonv1.AgentServicePrepareResponse{Vote: vonv1.Vote(vonv1.Vote_value[o.Vote]), Reason: o.Reason}, nil
	}
	if _, ok := a.st.hist.get(opAbort, txn); ok {
		return refuse(fmt.Sprintf("txn %q was already aborted (presumed abort)", txn))
	}
	for t, h := range a.st.holds {
		if h.Spec.GetOnId() != id {
			continue
		}
		if h.Epoch >= req.GetLeaderEpoch() {
			return refuse(fmt.Sprintf("ON %d already has prepared txn %q; commit or abort it first", id, t))
		}
		delete(a.st.holds, t)
		a.st.hist.put(outcome{Op: opEnd, TxnID: t, OnID: id, Reason: "been superseded by txn " + txn, Time: time.Now()})
		a.log.Info("prepared hold superseded by a newer leader", "on", id, "old_txn", t, "txn", txn)
	}
	problems := a.cfg.problems(spec, ifs, true)
	problems = append(problems, a.resourceProblemsLocked(spec, txn)...)
	if len(problems) > 0 {
		return refuse(strings.Join(problems, "; "))
	}
	now := time.Now()
	a.st.holds[txn] = &heldTxn{TxnID: txn, Spec: proto.Clone(spec).(*vonv1.PartitionSpec), HoldExpire: now.Add(holdTTL),
		Seq: a.st.nextSeq(), Epoch: req.GetLeaderEpoch()}
	a.st.hist.put(outcome{Op: opPrepare, TxnID: txn, OnID: id, Vote: vonv1.Vote_VOTE_PREPARED.String(), Time: now})
	if err := a.persistLocked(); err != nil {
		delete(a.st.holds, txn)
		a.st.hist.del(opPrepare, txn)
		return nil, err
	}
	a.log.Info("prepared", "txn", txn, "on", id, "reservation", spec.GetReservation(), "hold_ttl", holdTTL)
	return &vonv1.AgentServicePrepareResponse{Vote: vonv1.Vote_VOTE_PREPARED}, nil
}

// resourceProblemsLocked checks capacity, class ids and pin slots against the
// committed partitions and the other prepared holds. An ON's own committed
// partition does not count (the new spec replaces it on commit).
func (a *Agent) resourceProblemsLocked(spec *vonv1.PartitionSpec, txn string) []string {
	id := spec.GetOnId()
	use := map[string]map[uint32]uint64{}
	ons := map[uint32]bool{id: true}
	type slot struct{ nh, egress string }
	slots := map[slot]bool{}
	count := func(s *vonv1.PartitionSpec) {
		ons[s.GetOnId()] = true
		for _, p := range s.GetPins() {
			nh := p.GetNextHop()
			if nh == "" {
				nh = p.GetDestination()
			}
			slots[slot{nh, p.GetEgressInterface()}] = true
		}
		if s.GetOnId() == id {
			return
		}
		for _, c := range s.GetClasses() {
			m := use[c.GetInterface()]
			if m == nil {
				m = map[uint32]uint64{}
				use[c.GetInterface()] = m
			}
			m[s.GetOnId()] = max(m[s.GetOnId()], c.GetRateBps())
		}
	}
	for _, c := range a.st.committed {
		count(c.Spec)
	}
	for t, h := range a.st.holds {
		if t != txn {
			count(h.Spec)
		}
	}
	count(spec)
	var out []string
	for _, c := range spec.GetClasses() {
		var sum uint64
		for _, r := range use[c.GetInterface()] {
			sum += r
		}
		if sum+c.GetRateBps() > c.GetCapacityBps() {
			out = append(out, fmt.Sprintf("%s: %s reserved of %s, cannot add %s", c.GetInterface(),
				fmtRate(sum), fmtRate(c.GetCapacityBps()), fmtRate(c.GetRateBps())))
		}
	}
	if len(ons) > partition.MaxONs {
		out = append(out, fmt.Sprintf("HTB class ids exhausted (%d ONs per router)", partition.MaxONs))
	}
	if len(slots) > partition.PinSlots {
		out = append(out, fmt.Sprintf("path-pin slots exhausted (%d distinct next hops per router)", partition.PinSlots))
	}
	return out
}

// Commit implements AgentService.Commit.
func (s *service) Commit(ctx context.Context, req *vonv1.AgentServiceCommitRequest) (*vonv1.AgentServiceCommitResponse, error) {
	a := s.a
	txn := req.GetTxnId()
	if txn == "" {
		return nil, invalidf("txn_id is required")
	}
	ifs, err := a.dp.interfaces()
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	before := a.st.epoch
	if err := a.fenceLocked(req.GetClusterId(), req.GetLeaderEpoch()); err != nil {
		return nil, err
	}
	if o, ok := a.st.hist.get(opCommit, txn); ok {
		if req.GetOnId() != 0 && req.GetOnId() != o.OnID {
			return nil, invalidf("txn %q committed ON %d, not ON %d", txn, o.OnID, req.GetOnId())
		}
		if before != a.st.epoch {
			_ = a.persistLocked()
		}
		if why := a.skipped[o.OnID]; why != "" {
			return nil, fmt.Errorf("%w: txn %q is committed but ON %d is not enforced now: %s", ErrPrecondition, txn, o.OnID, why)
		}
		exp := o.LeaseExpire
		if c, ok := a.st.committed[o.OnID]; ok && c.TxnID == txn {
			exp = c.LeaseExpire
		}
		return &vonv1.AgentServiceCommitResponse{AlreadyCommitted: true, LeaseExpireTime: timestamppb.New(exp)}, nil
	}
	h, ok := a.st.holds[txn]
	if !ok {
		if e, ok := a.st.hist.get(opEnd, txn); ok && e.Reason != "expired" {
			return nil, fmt.Errorf("%w: txn %q has %s; it cannot be committed", ErrConflict, txn, e.Reason)
		}
		if _, ok := a.st.hist.get(opAbort, txn); ok {
			return nil, fmt.Errorf("%w: txn %q was aborted; it cannot be committed", ErrConflict, txn)
		}
		return nil, fmt.Errorf("%w: no prepared hold for txn %q (expired or never prepared): re-drive the committed state with Sync", ErrNotFound, txn)
	}
	id := h.Spec.GetOnId()
	if req.GetOnId() != 0 && req.GetOnId() != id {
		return nil, invalidf("txn %q prepared ON %d, not ON %d", txn, id, req.GetOnId())
	}
	if p := a.cfg.problems(h.Spec, ifs, false); len(p) > 0 {
		return nil, fmt.Errorf("%w: ON %d: %s", ErrPrecondition, id, strings.Join(p, "; "))
	}
	now := time.Now()
	prev := a.st.committed[id]
	c := &committedON{TxnID: txn, Spec: h.Spec, LeaseExpire: now.Add(a.leaseOf(h.Spec)), Seq: a.st.nextSeq(), Epoch: req.GetLeaderEpoch()}
	a.st.committed[id] = c
	err = a.updateLocked(ctx, "commit")
	if err == nil && a.skipped[id] != "" {
		err = fmt.Errorf("%w: ON %d: %s", ErrExhausted, id, a.skipped[id])
	}
	if err != nil {
		if prev != nil {
			a.st.committed[id] = prev
		} else {
			delete(a.st.committed, id)
		}
		if rerr := a.updateLocked(ctx, "commit undo"); rerr != nil {
			a.log.Error("restoring the data plane after a failed commit", "err", rerr)
		}
		return nil, fmt.Errorf("commit txn %q (ON %d): %w", txn, id, err)
	}
	delete(a.st.holds, txn)
	a.st.stateRev = max(a.st.stateRev, req.GetStateRevision())
	a.st.hist.put(outcome{Op: opCommit, TxnID: txn, OnID: id, LeaseExpire: c.LeaseExpire, Time: now})
	if err := a.persistLocked(); err != nil {
		return nil, err // installed; a retry answers from memory and persists again
	}
	a.log.Info("committed", "txn", txn, "on", id, "reservation", h.Spec.GetReservation(), "lease_until", c.LeaseExpire)
	return &vonv1.AgentServiceCommitResponse{LeaseExpireTime: timestamppb.New(c.LeaseExpire)}, nil
}

// Abort implements AgentService.Abort.
func (s *service) Abort(ctx context.Context, req *vonv1.AgentServiceAbortRequest) (*vonv1.AgentServiceAbortResponse, error) {
	a := s.a
	txn := req.GetTxnId()
	if txn == "" {
		return nil, invalidf("txn_id is required")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.fenceLocked(req.GetClusterId(), req.GetLeaderEpoch()); err != nil {
		return nil, err
	}
	if o, ok := a.st.hist.get(opAbort, txn); ok {
		_ = a.persistLocked()
		return &vonv1.AgentServiceAbortResponse{Dropped: o.Flag}, nil
	}
	if o, ok := a.st.hist.get(opCommit, txn); ok {
		return nil, fmt.Errorf("%w: txn %q is committed (ON %d); release the ON instead", ErrConflict, txn, o.OnID)
	}
	dropped := false
	id := req.GetOnId()
	if h, ok := a.st.holds[txn]; ok {
		if id != 0 && id != h.Spec.GetOnId() {
			return nil, invalidf("txn %q prepared ON %d, not ON %d", txn, h.Spec.GetOnId(), id)
		}
		id = h.Spec.GetOnId()
		delete(a.st.holds, txn)
		a.st.hist.put(outcome{Op: opEnd, TxnID: txn, OnID: id, Reason: "been aborted", Time: time.Now()})
		dropped = true
	}
	a.st.hist.put(outcome{Op: opAbort, TxnID: txn, OnID: id, Flag: dropped, Time: time.Now()})
	if err := a.persistLocked(); err != nil {
		return nil, err
	}
	a.log.Info("aborted", "txn", txn, "on", id, "dropped", dropped)
	return &vonv1.AgentServiceAbortResponse{Dropped: dropped}, nil
}

// Refresh implements AgentService.Refresh.
func (s *service) Refresh(ctx context.Context, req *vonv1.AgentServiceRefreshRequest) (*vonv1.AgentServiceRefreshResponse, error) {
	a := s.a
	ttl, err := a.ttl(req.GetLeaseTtl(), a.cfg.DefaultLeaseTTL, "lease_ttl")
	if err != nil {
		return nil, err
	}
	// Sorted and de-duplicated before the lock: the work under it is one map
	// lookup per distinct id, however many the request repeats.
	ids := slices.Clone(req.GetOnIds())
	slices.Sort(ids)
	ids = slices.Compact(ids)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.fenceLocked(req.GetClusterId(), req.GetLeaderEpoch()); err != nil {
		return nil, err
	}
	exp := time.Now().Add(ttl)
	a.lastRefresh = time.Now()
	resp := &vonv1.AgentServiceRefreshResponse{}
	for _, id := range ids {
		if c, ok := a.st.committed[id]; ok {
			c.LeaseExpire = exp
		} else {
			resp.UnknownOnIds = append(resp.UnknownOnIds, id)
		}
	}
	if err := a.persistLocked(); err != nil {
		return nil, err
	}
	if n := len(resp.UnknownOnIds); n > 0 {
		a.log.Info("refresh named unknown ONs", "count", n, "first", resp.UnknownOnIds[:min(n, 16)])
	}
	return resp, nil
}

// Release implements AgentService.Release.
func (s *service) Release(ctx context.Context, req *vonv1.AgentServiceReleaseRequest) (*vonv1.AgentServiceReleaseResponse, error) {
	a := s.a
	txn, id := req.GetTxnId(), req.GetOnId()
	if txn == "" {
		return nil, invalidf("txn_id is required")
	}
	if id == 0 {
		return nil, invalidf("on_id 0 is not an allocated ON")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.fenceLocked(req.GetClusterId(), req.GetLeaderEpoch()); err != nil {
		return nil, err
	}
	if o, ok := a.st.hist.get(opRelease, txn); ok {
		if o.OnID != id {
			return nil, invalidf("txn %q released ON %d, not ON %d", txn, o.OnID, id)
		}
		_ = a.persistLocked()
		return &vonv1.AgentServiceReleaseResponse{Removed: o.Flag}, nil
	}
	removed := false
	now := time.Now()
	a.releaseSeq[id] = a.st.nextSeq()
	for t, h := range a.st.holds {
		if h.Spec.GetOnId() == id {
			delete(a.st.holds, t)
			a.st.hist.put(outcome{Op: opEnd, TxnID: t, OnID: id, Reason: "been released", Time: now})
			removed = true
		}
	}
	var applyErr error
	if _, ok := a.st.committed[id]; ok {
		delete(a.st.committed, id)
		removed = true
		applyErr = a.updateLocked(ctx, "release")
	}
	a.st.stateRev = max(a.st.stateRev, req.GetStateRevision())
	a.st.hist.put(outcome{Op: opRelease, TxnID: txn, OnID: id, Flag: removed, Time: now})
	if err := a.persistLocked(); err != nil {
		return nil, err
	}
	if applyErr != nil {
		// Durable: the watchdog keeps converging; a retry answers removed.
		return nil, fmt.Errorf("release ON %d: %w", id, applyErr)
	}
	a.log.Info("released", "txn", txn, "on", id, "removed", removed)
	return &vonv1.AgentServiceReleaseResponse{Removed: removed}, nil
}

// Sync implements AgentService.Sync.
func (s *service) Sync(ctx context.Context, req *vonv1.AgentServiceSyncRequest) (*vonv1.AgentServiceSyncResponse, error) {
	a := s.a
	seen := map[uint32]bool{}
	for _, sp := range req.GetPartitions() {
		if err := checkSpec(sp, a.cfg.MaxTTL); err != nil {
			return nil, err
		}
		if seen[sp.GetOnId()] {
			return nil, invalidf("ON %d listed twice", sp.GetOnId())
		}
		seen[sp.GetOnId()] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.fenceLocked(req.GetClusterId(), req.GetLeaderEpoch()); err != nil {
		return nil, err
	}
	if r := req.GetStateRevision(); r != 0 && r < a.st.stateRev {
		return nil, fmt.Errorf("%w: the desired state was read at revision %d, before a change (revision %d) this agent already applied; a stale Sync is not applied",
			ErrStaleEpoch, r, a.st.stateRev)
	}
	a.st.stateRev = max(a.st.stateRev, req.GetStateRevision())
	a.syncSeq = a.st.nextSeq()
	resp, err := a.replaceCommittedLocked(ctx, req.GetPartitions(), fmt.Sprintf("sync@%d", req.GetLeaderEpoch()), req.GetLeaderEpoch(), nil)
	if perr := a.persistLocked(); err == nil {
		err = perr
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// replaceCommittedLocked makes specs the committed set (keeping entries for
// which keep says so), converges the kernel and says what changed. Specs must
// be valid. Skipped ONs are left out of installed/updated.
func (a *Agent) replaceCommittedLocked(ctx context.Context, specs []*vonv1.PartitionSpec, txn string, epoch uint64,
	keep func(*committedON) bool) (*vonv1.AgentServiceSyncResponse, error) {
	now := time.Now()
	resp := &vonv1.AgentServiceSyncResponse{}
	next := map[uint32]*committedON{}
	for _, sp := range specs {
		id := sp.GetOnId()
		exp := now.Add(a.leaseOf(sp))
		old, ok := a.st.committed[id]
		switch {
		case ok && sameSpec(old.Spec, sp):
			c := *old
			c.LeaseExpire = exp
			next[id] = &c
			if _, was := a.skipped[id]; was {
				resp.InstalledOnIds = append(resp.InstalledOnIds, id)
			}
		case ok:
			next[id] = &committedON{TxnID: txn, Spec: proto.Clone(sp).(*vonv1.PartitionSpec), LeaseExpire: exp, Seq: a.st.nextSeq(), Epoch: epoch}
			resp.UpdatedOnIds = append(resp.UpdatedOnIds, id)
		default:
			next[id] = &committedON{TxnID: txn, Spec: proto.Clone(sp).(*vonv1.PartitionSpec), LeaseExpire: exp, Seq: a.st.nextSeq(), Epoch: epoch}
			resp.InstalledOnIds = append(resp.InstalledOnIds, id)
		}
	}
	for id, c := range a.st.committed {
		if _, listed := next[id]; listed {
			continue
		}
		if keep != nil && keep(c) {
			next[id] = c
			continue
		}
		resp.RemovedOnIds = append(resp.RemovedOnIds, id)
	}
	a.st.committed = next
	err := a.applyLocked(ctx, txn)
	notSkipped := func(ids []uint32) []uint32 {
		ids = slices.DeleteFunc(ids, func(id uint32) bool { return a.skipped[id] != "" || err != nil })
		sort.Slice(ids, func(x, y int) bool { return ids[x] < ids[y] })
		return ids
	}
	resp.InstalledOnIds = notSkipped(resp.InstalledOnIds)
	resp.UpdatedOnIds = notSkipped(resp.UpdatedOnIds)
	sort.Slice(resp.RemovedOnIds, func(x, y int) bool { return resp.RemovedOnIds[x] < resp.RemovedOnIds[y] })
	for _, sp := range specs {
		if why := a.skipped[sp.GetOnId()]; why != "" {
			resp.Skipped = append(resp.Skipped, &vonv1.SkippedPartition{OnId: sp.GetOnId(), Reason: why})
		}
	}
	a.log.Info("converged to pushed desired state", "source", txn, "partitions", len(specs),
		"installed", resp.InstalledOnIds, "updated", resp.UpdatedOnIds, "removed", resp.RemovedOnIds, "skipped", len(a.skipped))
	return resp, err
}
