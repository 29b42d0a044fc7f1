package reservation

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/onpath"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// The manager's public API beyond Reserve, Renew and Release: what the gRPC
// adapter (server.go) serves, one call each.

// ApplyTopology replaces the network model with the topology file text.
func (m *Manager) ApplyTopology(ctx context.Context, yaml string) (*TopologyState, error) {
	st, err := m.store.PutTopology(ctx, yaml)
	if err != nil {
		return nil, err
	}
	m.log.Info("topology applied", "nodes", len(st.Topo.Nodes), "links", len(st.Topo.Links), "revision", st.Revision)
	return st, nil
}

// Topology is the applied network model (ErrNoTopology if none).
func (m *Manager) Topology(ctx context.Context) (*TopologyState, error) { return m.store.Topology(ctx) }

// Get returns one reservation.
func (m *Manager) Get(ctx context.Context, name string) (*vonv1.Reservation, error) {
	r, _, err := m.store.Get(ctx, name)
	return r, err
}

// List returns every reservation in name order and the store revision read.
func (m *Manager) List(ctx context.Context) ([]*vonv1.Reservation, int64, error) {
	return m.store.List(ctx)
}

// ListAfter returns up to limit reservations named after after, in name order,
// and whether more follow (a page of List that reads only what it returns).
func (m *Manager) ListAfter(ctx context.Context, after string, limit int) ([]*vonv1.Reservation, bool, error) {
	return m.store.ListAfter(ctx, after, int64(limit))
}

// Watch calls fn with every change to the reservations after store revision
// rev (from List) until ctx ends or fn fails.
func (m *Manager) Watch(ctx context.Context, rev int64, fn func(vonv1.ReservationEventType, *vonv1.Reservation) error) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range m.cli.Watch(wctx, m.store.onPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV()) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("%w: watch: %w", ErrContention, err)
		}
		for _, ev := range wr.Events {
			r := &vonv1.Reservation{}
			typ := vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_UPDATED
			kv := ev.Kv
			switch {
			case ev.Type == clientv3.EventTypeDelete:
				typ, kv = vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_DELETED, ev.PrevKv
			case ev.IsCreate():
				typ = vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_CREATED
			}
			if kv == nil || proto.Unmarshal(kv.Value, r) != nil {
				continue
			}
			r.Revision = uint64(ev.Kv.ModRevision)
			if err := fn(typ, r); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// Agents returns every registered agent, in node order, with its liveness.
func (m *Manager) Agents(ctx context.Context) ([]*vonv1.Agent, error) {
	agents, err := m.store.Agents(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*vonv1.Agent, 0, len(agents))
	for _, a := range agents {
		a.Live = m.live(a)
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetNode() < out[j].GetNode() })
	return out, nil
}

// ComputePaths plans a redundant pair between two nodes against the live topology
// and reservations with the planner Reserve uses (onpath): what it answers is
// what a redundant ON between them would get.
func (m *Manager) ComputePaths(ctx context.Context, from, to string, rate uint64, nodeDisjoint bool) (*vonv1.ComputePathsResponse, error) {
	ts, err := m.store.Topology(ctx)
	if err != nil {
		return nil, err
	}
	preq := onpath.Request{Members: []string{from, to}, Paths: 2, NodeDisjoint: nodeDisjoint, Rate: rate}
	if rate > 0 {
		reserved, err := m.store.Ledger.Reserved(ctx)
		if err != nil {
			return nil, err
		}
		preq.Reserved = reservedFunc(ts.Topo, reserved)
	}
	plan, err := onpath.PlanON(ts.Topo, ts.Graph, preq)
	switch {
	case errors.Is(err, onpath.ErrInput):
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrUnplaceable, err)
	}
	res := plan.Pairs[0].Result
	out := &vonv1.ComputePathsResponse{TotalCost: uint64(res.TotalCost)}
	for i, p := range res.Paths {
		vp := &vonv1.Path{Index: uint32(i), Cost: uint64(p.Cost)}
		for _, n := range p.Nodes {
			vp.Nodes = append(vp.Nodes, ts.Graph.NodeName(n))
		}
		for _, l := range p.Links {
			vp.Links = append(vp.Links, ts.Graph.LinkName(l))
		}
		out.Paths = append(out.Paths, vp)
	}
	if rate > 0 {
		for _, l := range plan.Links {
			c := plan.Copies[l]
			for _, d := range []Direction{AtoB, BtoA} {
				out.Links = append(out.Links, &vonv1.ChargedLink{Link: ts.Topo.Links[l].Name, Direction: d.proto(),
					RateBps: uint64(c) * rate, Copies: uint32(c)})
			}
		}
	}
	return out, nil
}

// Register records an agent's registration (its liveness, interfaces and
// addresses) and, when this manager leads, returns its router's desired state.
func (m *Manager) Register(ctx context.Context, req *vonv1.AgentRegistryServiceRegisterRequest) (*vonv1.AgentRegistryServiceRegisterResponse, error) {
	if req.GetNode() == "" || req.GetEndpoint() == "" {
		return nil, fmt.Errorf("%w: agent %q gave no node name or no endpoint", ErrInvalid, req.GetNode())
	}
	// A heartbeat of a router the topology parsed last already names needs no
	// fresh read of it (a changed topology is read at the next converging
	// registration, the next reservation or sync).
	ts := m.store.lastTopology()
	if ts == nil || !req.GetHeartbeat() || !ts.Topo.IsRouter(req.GetNode()) {
		var err error
		if ts, err = m.store.Topology(ctx); err != nil && !errors.Is(err, ErrNoTopology) {
			return nil, err
		}
	}
	var n topology.Node
	known := false
	if ts != nil {
		n, known = ts.Topo.Node(req.GetNode())
	}
	if known && n.Kind != topology.KindRouter {
		return nil, fmt.Errorf("%w: node %q is a %s in the applied topology, not a router", ErrInvalid, req.GetNode(), n.Kind)
	}
	// The registration (its interfaces and addresses, the next hops of path pins) is
	// recorded even before the topology names the router, so a reservation right after
	// `vonctl topology apply` finds it.
	a := &vonv1.Agent{Node: req.GetNode(), Endpoint: req.GetEndpoint(), Interfaces: req.GetInterfaces(),
		Version: req.GetVersion(), LastSeenTime: timestamppb.New(time.Now())}
	if err := m.store.PutAgent(ctx, a); err != nil {
		return nil, err
	}
	m.noteAgent(a)
	m.rates.note(a.GetNode(), req.GetOnRates(), time.Now())
	if !known {
		return nil, fmt.Errorf("%w: registration of %s recorded, but the applied topology has no router %q yet; apply one that does (vonctl topology apply)",
			ErrUnplaceable, req.GetNode(), req.GetNode())
	}
	// Only the leader answers with a desired state: an agent converges to the answer,
	// and an empty one from a manager that does not lead would wipe its partitions.
	out := &vonv1.AgentRegistryServiceRegisterResponse{LeaderEpoch: m.Epoch(), ReportRates: m.rates.wanted(time.Now())}
	if c := m.cluster.Load(); c != nil {
		out.ClusterId, out.ClusterCreateTime = c.ID, timestamppb.New(c.Created)
	}
	if out.LeaderEpoch == 0 {
		return nil, fmt.Errorf("%w: registration recorded; this manager does not lead yet, so it has no desired state to give — retry", ErrNotLeader)
	}
	if req.GetHeartbeat() {
		// The agent keeps its state: no desired state to compute. If the
		// router's state changed after what the agent applied (it missed a
		// call), push the full state in the background.
		if x := m.index(); x != nil {
			x.noteApplied(req.GetNode(), int64(req.GetStateRevision()))
			if !x.upToDate(req.GetNode()) {
				m.syncSoon(req.GetNode())
			}
		}
		return out, nil
	}
	if m.keepsState(req, ts) {
		out.KeepState, out.StateRevision = true, req.GetStateRevision()
		return out, nil
	}
	var (
		rev int64
		err error
	)
	if _, out.Partitions, rev, err = m.desired(ctx, req.GetNode()); err != nil {
		return nil, err
	}
	out.StateRevision = uint64(rev)
	return out, nil
}

// keepsState says whether a converging registration that asks to keep its
// state if current (keep_if_current) may: the agent's state revision covers
// the last change of its router's desired state that the leader's index knows
// (across restarts: index.noteLoadedChange) and the topology it was derived
// from. It records the revision as the agent's applied one.
func (m *Manager) keepsState(req *vonv1.AgentRegistryServiceRegisterRequest, ts *TopologyState) bool {
	x := m.index()
	s := int64(req.GetStateRevision())
	if !req.GetKeepIfCurrent() || s == 0 || x == nil || ts == nil || s < ts.Revision || s < x.lastChange(req.GetNode()) {
		return false
	}
	x.noteApplied(req.GetNode(), s)
	return true
}
