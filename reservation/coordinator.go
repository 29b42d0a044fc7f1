package reservation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/apierr"
	"github.com/vonproject/von/internal/failpoint"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// ReserveRequest asks for an ON.
type ReserveRequest struct {
	Name         string
	Members      []string
	Rate         uint64 // bit/s
	Redundant    bool
	NodeDisjoint bool
	TTL          time.Duration // 0: the manager's default
	Owner        string        // who reserves it (certificate name; empty when insecure)
}

func (m *Manager) validate(req *ReserveRequest) error {
	if msg := checkResName(req.Name); msg != "" {
		return fmt.Errorf("%w: name %q: %s", ErrInvalid, req.Name, msg)
	}
	if err := checkMembers(req.Members); err != nil {
		return err
	}
	if req.Rate < MinRate {
		return fmt.Errorf("%w: rate %d bit/s is below the minimum %d bit/s (e.g. --rate 10Mbit)", ErrInvalid, req.Rate, MinRate)
	}
	if req.NodeDisjoint && !req.Redundant {
		return fmt.Errorf("%w: node-disjoint paths need --redundant", ErrInvalid)
	}
	if req.TTL == 0 {
		req.TTL = m.cfg.DefaultTTL
	}
	if req.TTL < time.Second || req.TTL > m.cfg.MaxTTL {
		return fmt.Errorf("%w: ttl %s outside [1s, %s]", ErrInvalid, req.TTL, m.cfg.MaxTTL)
	}
	return nil
}

func checkResName(s string) string {
	if s == "" {
		return "empty"
	}
	if len(s) > 128 {
		return "longer than 128 characters"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Sprintf("character %q not allowed (use letters, digits, '-', '_', '.')", r)
		}
	}
	return ""
}

func terminal(s vonv1.ReservationState) bool {
	return s == vonv1.ReservationState_RESERVATION_STATE_RELEASED || s == vonv1.ReservationState_RESERVATION_STATE_EXPIRED ||
		s == vonv1.ReservationState_RESERVATION_STATE_FAILED
}

// Reserve admits an ON and installs it on every router of its paths with a two-phase
// commit. It returns the COMMITTED reservation, or an error after which nothing of it
// is left: no capacity charged, no partition installed.
func (m *Manager) Reserve(ctx context.Context, req ReserveRequest) (*vonv1.Reservation, error) {
	epoch, err := m.requireLeader()
	if err != nil {
		return nil, err
	}
	if err := m.validate(&req); err != nil {
		m.m.rejected("invalid")
		return nil, err
	}
	if err := m.awaitRound(ctx, req); err != nil {
		return nil, err
	}
	defer m.lock(req.Name)()
	var (
		rec    *vonv1.Reservation
		pl     *placement
		onRev  int64
		txnID  string
		lastEr error
	)
	for attempt := 0; attempt < 5 && rec == nil; attempt++ {
		old, oldRev, err := m.store.Get(ctx, req.Name)
		switch {
		case errors.Is(err, ErrNotFound):
			oldRev = 0
		case err != nil:
			return nil, err
		case old.GetOwner() != req.Owner && !terminal(old.GetState()):
			m.m.rejected("exists")
			return nil, fmt.Errorf("%w: %q is taken by another user; pick another name", ErrExists, req.Name)
		case old.GetState() == vonv1.ReservationState_RESERVATION_STATE_COMMITTED && sameRequest(old, req):
			return old, nil // a retry of a reservation that succeeded
		case !terminal(old.GetState()):
			m.m.rejected("exists")
			return nil, fmt.Errorf("%w: %q is %s; release it first or pick another name", ErrExists, req.Name, stateName(old.GetState()))
		}
		ts, err := m.store.Topology(ctx)
		if err != nil {
			return nil, err
		}
		reserved, err := m.store.Ledger.Reserved(ctx)
		if err != nil {
			return nil, err
		}
		agents, err := m.agentRecords(ctx)
		if err != nil {
			return nil, err
		}
		// Plan around links a router reports down (their Prepare would be refused).
		failed, _ := m.failedElements(ts.Topo, agents)
		for l := range failed {
			reserved[Charge{l, AtoB}], reserved[Charge{l, BtoA}] = full, full
		}
		pl, err = place(ts, placeRequest{Name: req.Name, Members: req.Members, Rate: req.Rate, Redundant: req.Redundant,
			NodeDisjoint: req.NodeDisjoint, DSCP: m.cfg.DSCP, Port: m.cfg.Port}, reserved, agents)
		if err != nil {
			m.m.rejected(reason(err))
			return nil, err
		}
		var down []string
		for _, r := range pl.Participants {
			if !m.live(agents[r]) {
				if a, err := m.agentRecord(ctx, r); err != nil || !m.live(a) {
					down = append(down, r)
				}
			}
		}
		if len(down) > 0 {
			m.m.rejected("agent_down")
			return nil, fmt.Errorf("%w: no live von-agent on router %s, which the ON's paths cross; start it (von-agent --node %s) and retry",
				ErrAgentDown, strings.Join(down, ", "), down[0])
		}
		now := time.Now()
		txnID = randomHex(8)
		r := &vonv1.Reservation{
			Name: req.Name, Owner: req.Owner, State: vonv1.ReservationState_RESERVATION_STATE_PREPARING, RateBps: req.Rate,
			Members: pl.Members, Redundant: req.Redundant, NodeDisjoint: req.NodeDisjoint,
			Ttl: durationpb.New(req.TTL), Links: pl.Charged, Paths: pl.Pairs,
			CreateTime: timestamppb.New(now), UpdateTime: timestamppb.New(now),
		}
		guard := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(m.store.onKey(req.Name)), "=", oldRev),
			clientv3.Compare(clientv3.ModRevision(m.store.topologyKey()), "=", ts.Revision),
		}
		_, rev, err := m.store.Ledger.Admit(ctx, Admission{
			Owner: req.Name, Rate: req.Rate, Charges: pl.Charges, Amounts: pl.Amounts,
			Limit: func(link string) (uint64, bool) {
				l, ok := ts.Topo.Link(link)
				return l.ReservableRate(), ok
			},
			Guard: guard,
			Claim: m.claimOverlay(r),
			Ops: func(id uint32) ([]clientv3.Op, error) {
				r.OnId = id
				put, err := m.store.putOn(r)
				if err != nil {
					return nil, err
				}
				return []clientv3.Op{put, m.store.putTxn(txnRecord{ID: txnID, Kind: "reserve", Name: req.Name, OnID: id, Participants: pl.Participants})}, nil
			},
		})
		switch {
		case err == nil:
			rec, onRev = r, rev
		case errors.Is(err, ErrGuard), errors.Is(err, ErrInsufficientCapacity):
			lastEr = err // the world moved under us: re-read and re-plan
		default:
			return nil, err
		}
	}
	if rec == nil {
		if errors.Is(lastEr, ErrInsufficientCapacity) {
			m.m.rejected("capacity")
			return nil, lastEr
		}
		return nil, fmt.Errorf("reserve %s: %w", req.Name, ErrContention)
	}
	return m.twoPhase(ctx, epoch, rec, onRev, txnID, pl)
}

// awaitRound waits while the reservation is PREPARING for this very request: a
// client retrying (its first attempt went to a leader that crashed mid-round)
// must learn that round's outcome — the new leader recovers it — rather than be
// told the name is taken. It holds no lock: recovery needs the name's.
func (m *Manager) awaitRound(ctx context.Context, req ReserveRequest) error {
	for {
		old, _, err := m.store.Get(ctx, req.Name)
		if err != nil || old.GetState() != vonv1.ReservationState_RESERVATION_STATE_PREPARING ||
			old.GetOwner() != req.Owner || !sameRequest(old, req) {
			return nil // Reserve reads it again under the lock
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %q is still being set up by an earlier attempt; its outcome is not known yet (vonctl get %s)",
				ErrBusy, req.Name, req.Name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// roundTimeout bounds a 2PC round once capacity is charged; the round no longer
// depends on the caller, who may hang up.
func (m *Manager) roundTimeout() time.Duration { return 6*m.cfg.CallTimeout + 30*time.Second }

// twoPhase runs prepare → durable decision → commit/abort for an admitted reservation.
func (m *Manager) twoPhase(ctx context.Context, epoch uint64, rec *vonv1.Reservation, onRev int64, txnID string, pl *placement) (*vonv1.Reservation, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.roundTimeout())
	defer cancel()
	failpoint.Hit(failpoint.BeforePrepare)
	start := time.Now()
	specs := map[string]*vonv1.PartitionSpec{}
	for node, s := range pl.Specs {
		s = proto.Clone(s).(*vonv1.PartitionSpec)
		s.OnId = rec.GetOnId()
		s.LeaseTtl = durationpb.New(m.cfg.PartitionLease)
		specs[node] = s
	}
	fails := m.prepareAll(ctx, epoch, txnID, specs)
	txn := txnRecord{ID: txnID, Kind: "reserve", Name: rec.GetName(), OnID: rec.GetOnId(), Participants: pl.Participants}
	var decideErr error
	if len(fails) == 0 {
		txn.Decision = "commit"
		now := time.Now()
		committed := proto.Clone(rec).(*vonv1.Reservation)
		committed.State = vonv1.ReservationState_RESERVATION_STATE_COMMITTED
		committed.UpdateTime = timestamppb.New(now)
		committed.LeaseExpireTime = timestamppb.New(now.Add(rec.GetTtl().AsDuration()))
		rev, err := m.store.Update(ctx, committed, onRev, m.store.putTxn(txn))
		if err != nil && !errors.Is(err, ErrGuard) {
			// Ambiguous (the write may have landed): the recorded decision is the
			// truth, and while it cannot be read the outcome is unknown — never
			// report a failure for a round that may have committed.
			d, derr := m.settledDecision(ctx, txnID)
			if derr != nil {
				m.m.rejected("store")
				return nil, fmt.Errorf("%w: reserve %s: the commit decision may or may not be recorded (%v); the leader settles the round — "+
					"retry, or `vonctl get %s` shows the outcome", ErrUnknownOutcome, rec.GetName(), derr, rec.GetName())
			}
			if d == "commit" {
				err = nil
				if cur, r, gerr := m.store.Get(ctx, rec.GetName()); gerr == nil {
					committed, rev = cur, r
				}
			}
		}
		if err == nil {
			committed.Revision = uint64(rev)
			failpoint.Hit(failpoint.AfterDecision)
			res := m.commitAll(ctx, epoch, txn, rev)
			if res.ok() {
				_, _ = m.cli.Delete(ctx, m.store.txnKey(txnID))
			} else {
				// Committed, but not everywhere yet: say so, keep the round
				// so reconciliation re-drives it, and never call it enforced.
				committed = m.noteEnforcement(ctx, committed, rev, res, txn.Participants)
			}
			m.m.round("commit", time.Since(start).Seconds())
			m.log.Info("reserved", "name", rec.GetName(), "on_id", rec.GetOnId(), "routers", pl.Participants, "took", time.Since(start),
				"not_enforced", len(committed.GetNotEnforced()))
			return committed, nil
		}
		decideErr = fmt.Errorf("recording the commit decision: %w", err)
	}
	// Abort, unless a commit decision is already on record.
	txn.Decision = "abort"
	if err := m.writeAbort(ctx, txn, onRev); err != nil {
		return nil, fmt.Errorf("reserve %s: %w", rec.GetName(), err)
	}
	m.abortAll(ctx, epoch, txn)
	msg := failureText(fails)
	if decideErr != nil {
		msg = decideErr.Error()
	}
	if err := m.finish(ctx, rec, onRev, txnID, vonv1.ReservationState_RESERVATION_STATE_FAILED, msg); err != nil {
		m.log.Error("release after abort", "name", rec.GetName(), "err", err)
	}
	m.m.round("abort", time.Since(start).Seconds())
	switch {
	case decideErr != nil:
		m.m.rejected("store")
		return nil, decideErr
	case fails.unreachable():
		m.m.rejected("agent_down")
		return nil, fmt.Errorf("%w: %s", ErrAgentDown, msg)
	default:
		m.m.rejected("refused")
		return nil, fmt.Errorf("%w: %s", ErrRefused, msg)
	}
}

// settledDecision reads a round's recorded decision, retrying for a few
// seconds while the store fails.
func (m *Manager) settledDecision(ctx context.Context, txnID string) (string, error) {
	var err error
	for try := range 10 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Duration(try) * 100 * time.Millisecond):
			}
		}
		var d string
		if d, err = m.readDecision(ctx, txnID); err == nil {
			return d, nil
		}
	}
	return "", err
}

// readDecision returns the decision recorded for a round ("" if none or gone).
func (m *Manager) readDecision(ctx context.Context, txnID string) (string, error) {
	resp, err := m.cli.Get(ctx, m.store.txnKey(txnID))
	if err != nil || len(resp.Kvs) == 0 {
		return "", err
	}
	var t txnRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &t); err != nil {
		return "", err
	}
	return t.Decision, nil
}

// writeAbort records the abort decision only if the round's record is still the one
// read at txnRev (no commit decision landed meanwhile) and this manager still leads.
func (m *Manager) writeAbort(ctx context.Context, t txnRecord, txnRev int64) error {
	tr, err := m.cli.Txn(ctx).If(m.store.fenced(clientv3.Compare(clientv3.ModRevision(m.store.txnKey(t.ID)), "=", txnRev))...).
		Then(m.store.putTxn(t)).Commit()
	if err != nil {
		return fmt.Errorf("recording the abort decision: %w", err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("%w: the round %s was decided elsewhere or this manager no longer leads", ErrGuard, t.ID)
	}
	return nil
}

// finish returns a reservation's capacity and id and leaves a terminal record, deleting
// the transaction record with it, in one etcd transaction.
func (m *Manager) finish(ctx context.Context, rec *vonv1.Reservation, onRev int64, txnID string, state vonv1.ReservationState, reason string) error {
	final := proto.Clone(rec).(*vonv1.Reservation)
	final.State = state
	final.FailureReason = reason
	// The routers' partitions changed when it left the committed state: at
	// the releasing version (onRev, which the Release calls carried), else
	// (a round that never committed) nowhere.
	final.PathsRevision = 0
	if rec.GetState() == vonv1.ReservationState_RESERVATION_STATE_RELEASING {
		final.PathsRevision = uint64(onRev)
	}
	final.UpdateTime = timestamppb.Now()
	put, err := m.store.putOn(final)
	if err != nil {
		return err
	}
	ops := append([]clientv3.Op{put}, m.store.freeOverlay(final)...)
	if txnID != "" {
		ops = append(ops, clientv3.OpDelete(m.store.txnKey(txnID)))
	}
	guard := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(m.store.onKey(rec.GetName())), "=", onRev)}
	_, err = m.store.Ledger.Release(ctx, rec.GetOnId(), amountsOf(rec), guard, ops)
	return err
}

func chargesOf(r *vonv1.Reservation) []Charge {
	var out []Charge
	for c := range amountsOf(r) {
		out = append(out, c)
	}
	return dedupe(out)
}

// amountsOf is what a reservation holds on each link direction: the recorded
// rate_bps of each charged link (copies × the ON's rate), or the ON's rate for records
// that predate per-link amounts.
func amountsOf(r *vonv1.Reservation) map[Charge]uint64 {
	out := map[Charge]uint64{}
	for _, c := range r.GetLinks() {
		d := AtoB
		if c.GetDirection() == vonv1.LinkDirection_LINK_DIRECTION_B_TO_A {
			d = BtoA
		}
		amt := c.GetRateBps()
		if amt == 0 {
			amt = r.GetRateBps()
		}
		out[Charge{Link: c.GetLink(), Dir: d}] = amt
	}
	return out
}

// routersOf lists the routers on a reservation's paths (every path node not a member).
func routersOf(r *vonv1.Reservation) []string {
	members := map[string]bool{}
	for _, mb := range r.GetMembers() {
		members[mb.GetName()] = true
	}
	set := map[string]bool{}
	for _, pp := range r.GetPaths() {
		for _, p := range pp.GetPaths() {
			for _, n := range p.GetNodes() {
				if !members[n] {
					set[n] = true
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// failure is why one router did not vote PREPARED.
type failure struct {
	reason      string
	unreachable bool // no answer at all (down, timed out) rather than a refusal
}

// failures maps routers to why they did not vote PREPARED.
type failures map[string]failure

func (f failures) unreachable() bool {
	for _, x := range f {
		if x.unreachable {
			return true
		}
	}
	return false
}

// prepareAll sends Prepare to every participant in parallel and returns those that did
// not vote PREPARED.
func (m *Manager) prepareAll(ctx context.Context, epoch uint64, txnID string, specs map[string]*vonv1.PartitionSpec) failures {
	var mu sync.Mutex
	out := failures{}
	var wg sync.WaitGroup
	for node, spec := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if f, ok := m.prepareOne(ctx, epoch, txnID, node, spec); !ok {
				mu.Lock()
				out[node] = f
				mu.Unlock()
			} else {
				failpoint.Hit(failpoint.AfterSomePrepares)
			}
		}()
	}
	wg.Wait()
	return out
}

func (m *Manager) prepareOne(ctx context.Context, epoch uint64, txnID, node string, spec *vonv1.PartitionSpec) (failure, bool) {
	c, err := m.agentClient(ctx, node)
	if err != nil {
		return failure{reason: err.Error(), unreachable: true}, false
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	resp, err := c.Prepare(cctx, &vonv1.AgentServicePrepareRequest{TxnId: txnID, LeaderEpoch: epoch, ClusterId: m.clusterID(), Partition: spec, HoldTtl: durationpb.New(m.cfg.HoldTTL)})
	m.m.call("prepare", err)
	if err != nil {
		st := status.Convert(err)
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return failure{reason: "agent unreachable: " + st.Message(), unreachable: true}, false
		}
		return failure{reason: st.Message()}, false
	}
	if resp.GetVote() != vonv1.Vote_VOTE_PREPARED {
		if resp.GetReason() == "" {
			return failure{reason: "refused"}, false
		}
		return failure{reason: resp.GetReason()}, false
	}
	return failure{}, true
}

// commitAll delivers the commit decision (recorded at etcd revision rev) and
// returns the routers that did not
// ack it, with why (empty: every participant enforces the ON). An agent whose
// hold is gone (NOT_FOUND) or that cannot install the partition now
// (FAILED_PRECONDITION, RESOURCE_EXHAUSTED) gets its full desired state with
// Sync: it then holds the ON committed and enforces it once it can, and the
// Sync answer says whether it does now.
func (m *Manager) commitAll(ctx context.Context, epoch uint64, t txnRecord, rev int64) phaseResult {
	return m.phaseTwo(ctx, t, "commit", func(ctx context.Context, c vonv1.AgentServiceClient, node string) error {
		_, err := c.Commit(ctx, &vonv1.AgentServiceCommitRequest{TxnId: t.ID, LeaderEpoch: epoch, ClusterId: m.clusterID(), OnId: t.OnID,
			StateRevision: uint64(rev)})
		if err == nil {
			failpoint.Hit(failpoint.AfterSomeCommits)
		}
		switch {
		case apierr.Is(err, apierr.ErrNoHold), apierr.Is(err, apierr.ErrConflict), apierr.Is(err, apierr.ErrPrecondition),
			apierr.Is(err, apierr.ErrExhausted):
			return errSyncInstead
		}
		return err
	}, func(ctx context.Context, node string) error {
		_, resp, serr := m.syncNodeLocked(ctx, epoch, node)
		if serr != nil {
			return serr
		}
		for _, sk := range resp.GetSkipped() {
			if sk.GetOnId() == t.OnID {
				return fmt.Errorf("%w: the agent holds the ON but cannot enforce it: %s", ErrNotEnforced, sk.GetReason())
			}
		}
		return nil
	})
}

// errSyncInstead is what a phase-two call returns when the router must get
// its full desired state instead (phaseTwo runs the sync under the router's
// exclusive lock).
var errSyncInstead = errors.New("sync the router instead")

func (m *Manager) abortAll(ctx context.Context, epoch uint64, t txnRecord) phaseResult {
	return m.phaseTwo(ctx, t, "abort", func(ctx context.Context, c vonv1.AgentServiceClient, _ string) error {
		_, err := c.Abort(ctx, &vonv1.AgentServiceAbortRequest{TxnId: t.ID, LeaderEpoch: epoch, ClusterId: m.clusterID(), OnId: t.OnID})
		return err
	}, nil)
}

func (m *Manager) releaseAll(ctx context.Context, epoch uint64, t txnRecord, rev int64) phaseResult {
	return m.phaseTwo(ctx, t, "release", func(ctx context.Context, c vonv1.AgentServiceClient, _ string) error {
		_, err := c.Release(ctx, &vonv1.AgentServiceReleaseRequest{TxnId: t.ID, LeaderEpoch: epoch, ClusterId: m.clusterID(), OnId: t.OnID,
			StateRevision: uint64(rev)})
		return err
	}, nil)
}

// phaseResult maps the participants that did not ack a phase-two call to the
// last error; empty when all did.
type phaseResult map[string]error

func (r phaseResult) ok() bool { return len(r) == 0 }

// phaseTwo calls fn on every participant in parallel, retrying each a few
// times. Calls about different ONs may go to one router at once (each carries
// its state revision, so the agent orders them); when fn answers
// errSyncInstead, sync runs under the router's exclusive lock, which no full
// Sync shares with any other call.
func (m *Manager) phaseTwo(ctx context.Context, t txnRecord, method string, fn func(context.Context, vonv1.AgentServiceClient, string) error,
	syncNode func(context.Context, string) error) phaseResult {
	var wg sync.WaitGroup
	var mu sync.Mutex
	out := phaseResult{}
	for _, node := range t.Participants {
		wg.Go(func() {
			err := m.phaseTwoOne(ctx, node, method, fn, syncNode)
			if err == nil {
				return
			}
			m.log.Warn("2PC phase two incomplete; will retry", "method", method, "txn", t.ID, "router", node, "err", err)
			mu.Lock()
			out[node] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func (m *Manager) phaseTwoOne(ctx context.Context, node, method string, fn func(context.Context, vonv1.AgentServiceClient, string) error,
	syncNode func(context.Context, string) error) error {
	var err error
	for try := 0; try < 3; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
		}
		var c vonv1.AgentServiceClient
		if c, err = m.agentClient(ctx, node); err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
		unlock := m.routerLock(node, false)
		err = fn(cctx, c, node)
		unlock()
		if errors.Is(err, errSyncInstead) && syncNode != nil {
			unlock := m.routerLock(node, true)
			err = syncNode(cctx, node)
			unlock()
		}
		cancel()
		m.m.call(method, err)
		if err == nil {
			return nil
		}
	}
	return err
}

func failureText(f failures) string {
	nodes := make([]string, 0, len(f))
	for n := range f {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	parts := make([]string, len(nodes))
	for i, n := range nodes {
		parts[i] = fmt.Sprintf("router %s: %s", n, f[n].reason)
	}
	return strings.Join(parts, "; ")
}

func sameRequest(r *vonv1.Reservation, req ReserveRequest) bool {
	if r.GetRateBps() != req.Rate || r.GetRedundant() != req.Redundant || r.GetNodeDisjoint() != req.NodeDisjoint || len(r.GetMembers()) != len(req.Members) {
		return false
	}
	for i, mb := range r.GetMembers() {
		if mb.GetName() != req.Members[i] {
			return false
		}
	}
	return true
}

func stateName(s vonv1.ReservationState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "RESERVATION_STATE_"))
}

func reason(err error) string {
	switch {
	case errors.Is(err, ErrInsufficientCapacity):
		return "capacity"
	case errors.Is(err, ErrUnplaceable):
		return "unplaceable"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrNoTopology):
		return "no_topology"
	}
	return "other"
}
