package reservation

import (
	"context"
	"errors"
	"slices"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Enforcement: a committed ON is "not enforced" on a router whose agent did not
// ack the commit or says it cannot install the partition. The reservation record
// lists those routers (not_enforced) until they do, so that neither the client
// that reserved it nor `vonctl get` is told an ON is in force where it is not.

// withEnforcement returns r's not_enforced list with the routers in covered
// set from failed (a failure) or cleared (no failure); other routers' entries
// stay. changed says whether the list differs (ignoring times).
func withEnforcement(r *vonv1.Reservation, covered []string, failed map[string]string) (out []*vonv1.NotEnforced, changed bool) {
	now := timestamppb.Now()
	old := map[string]string{}
	for _, e := range r.GetNotEnforced() {
		old[e.GetRouter()] = e.GetReason()
		if !slices.Contains(covered, e.GetRouter()) {
			out = append(out, e)
		}
	}
	for _, node := range covered {
		why, bad := failed[node]
		was, had := old[node]
		if bad {
			out = append(out, &vonv1.NotEnforced{Router: node, Reason: why, Time: now})
		}
		if bad != had || why != was {
			changed = true
		}
	}
	slices.SortFunc(out, func(a, b *vonv1.NotEnforced) int {
		switch {
		case a.GetRouter() < b.GetRouter():
			return -1
		case a.GetRouter() > b.GetRouter():
			return 1
		}
		return 0
	})
	return out, changed
}

// errText is an error as a user should read it (a gRPC status's message).
func errText(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}

// noteEnforcement records the outcome of a commit phase on r (at rev) for the
// participants and returns r as it now stands. The caller holds r's name lock.
func (m *Manager) noteEnforcement(ctx context.Context, r *vonv1.Reservation, rev int64, res phaseResult, participants []string) *vonv1.Reservation {
	failed := map[string]string{}
	for node, err := range res {
		failed[node] = errText(err)
	}
	if participants == nil {
		participants = routersOf(r)
	}
	list, changed := withEnforcement(r, participants, failed)
	if !changed {
		return r
	}
	next := proto.Clone(r).(*vonv1.Reservation)
	next.NotEnforced = list
	nrev, err := m.store.UpdateSamePaths(ctx, next, rev)
	if err != nil {
		m.log.Warn("recording where an ON is not enforced", "name", r.GetName(), "err", err)
		return next // the answer still tells the truth; reconciliation records it later
	}
	next.Revision = uint64(nrev)
	for _, e := range list {
		m.log.Warn("committed ON not enforced on a router; re-driving", "name", r.GetName(), "router", e.GetRouter(), "reason", e.GetReason())
	}
	return next
}

// noteSync records, on each reservation listed in a Sync to node, whether the
// agent enforces it. It takes each changed reservation's name lock, so the
// caller must hold no router lock.
func (m *Manager) noteSync(ctx context.Context, node string, listed []*vonv1.Reservation, resp *vonv1.AgentServiceSyncResponse) {
	skipped := map[uint32]string{}
	for _, s := range resp.GetSkipped() {
		skipped[s.GetOnId()] = "the agent cannot enforce it: " + s.GetReason()
	}
	for _, r := range listed {
		failed := map[string]string{}
		if why, ok := skipped[r.GetOnId()]; ok {
			failed[node] = why
		}
		if _, changed := withEnforcement(r, []string{node}, failed); !changed {
			continue
		}
		m.noteOne(ctx, r.GetName(), r.GetOnId(), node, failed)
	}
}

func (m *Manager) noteOne(ctx context.Context, name string, onID uint32, node string, failed map[string]string) {
	m.amend(ctx, name, onID, "recording enforcement", func(cur *vonv1.Reservation) bool {
		list, changed := withEnforcement(cur, []string{node}, failed)
		cur.NotEnforced = list
		return changed
	})
}

// amend applies change to the committed reservation name (if it still is ON
// onID) under its name lock, and writes it when change reports a change. The
// caller must hold no router lock.
func (m *Manager) amend(ctx context.Context, name string, onID uint32, what string, change func(*vonv1.Reservation) bool) {
	defer m.lock(name)()
	for range 3 {
		cur, rev, err := m.store.Get(ctx, name)
		if err != nil || cur.GetOnId() != onID || cur.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
			return
		}
		if !change(cur) {
			return
		}
		_, err = m.store.UpdateSamePaths(ctx, cur, rev)
		if !errors.Is(err, ErrGuard) {
			if err != nil {
				m.log.Warn(what, "name", name, "err", err)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
