package reservation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/disjoint"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// Server exposes a Manager as ReservationService and AgentRegistryService.
type Server struct {
	vonv1.UnimplementedReservationServiceServer
	vonv1.UnimplementedAgentRegistryServiceServer
	M *Manager
}

// ApplyTopology replaces the network model.
func (s *Server) ApplyTopology(ctx context.Context, req *vonv1.ApplyTopologyRequest) (*vonv1.ApplyTopologyResponse, error) {
	text := req.GetYaml()
	if tp := req.GetTopology(); tp != nil {
		t, err := TopologyFromProto(tp)
		if err != nil {
			return nil, grpcError(err)
		}
		b, err := topology.Marshal(t)
		if err != nil {
			return nil, grpcError(err)
		}
		text = string(b)
	}
	if text == "" {
		return nil, grpcError(fmt.Errorf("%w: give the topology as yaml or as a structured topology", ErrInvalid))
	}
	st, err := s.M.store.PutTopology(ctx, text)
	if err != nil {
		return nil, grpcError(err)
	}
	s.M.log.Info("topology applied", "nodes", len(st.Topo.Nodes), "links", len(st.Topo.Links), "revision", st.Revision)
	return &vonv1.ApplyTopologyResponse{Topology: TopologyToProto(st.Topo), Revision: uint64(st.Revision)}, nil
}

// GetTopology returns the applied model and its source.
func (s *Server) GetTopology(ctx context.Context, _ *vonv1.GetTopologyRequest) (*vonv1.GetTopologyResponse, error) {
	st, err := s.M.store.Topology(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.GetTopologyResponse{Topology: TopologyToProto(st.Topo), Yaml: st.YAML, Revision: uint64(st.Revision)}, nil
}

// Reserve admits and installs an ON.
func (s *Server) Reserve(ctx context.Context, req *vonv1.ReserveRequest) (*vonv1.ReserveResponse, error) {
	r, err := s.M.Reserve(ctx, ReserveRequest{Name: req.GetName(), Members: req.GetMembers(), Rate: req.GetRateBps(),
		Redundant: req.GetRedundant(), NodeDisjoint: req.GetNodeDisjoint(), TTL: req.GetTtl().AsDuration()})
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.ReserveResponse{Reservation: r}, nil
}

// Get returns one reservation.
func (s *Server) Get(ctx context.Context, req *vonv1.GetRequest) (*vonv1.GetResponse, error) {
	r, _, err := s.M.store.Get(ctx, req.GetName())
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.GetResponse{Reservation: r}, nil
}

// List returns reservations in name order, optionally filtered by state, in pages.
func (s *Server) List(ctx context.Context, req *vonv1.ListRequest) (*vonv1.ListResponse, error) {
	all, _, err := s.M.store.List(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	want := map[vonv1.ReservationState]bool{}
	for _, st := range req.GetStates() {
		want[st] = true
	}
	size := int(req.GetPageSize())
	if size == 0 || size > 1000 {
		size = 1000
	}
	out := &vonv1.ListResponse{}
	for _, r := range all {
		if len(want) > 0 && !want[r.GetState()] {
			continue
		}
		if req.GetPageToken() != "" && r.GetName() <= req.GetPageToken() {
			continue
		}
		if len(out.Reservations) == size {
			out.NextPageToken = out.Reservations[size-1].GetName()
			break
		}
		out.Reservations = append(out.Reservations, r)
	}
	return out, nil
}

// Watch streams the current reservations, then every change.
func (s *Server) Watch(req *vonv1.WatchRequest, stream vonv1.ReservationService_WatchServer) error {
	ctx := stream.Context()
	names := map[string]bool{}
	for _, n := range req.GetNames() {
		names[n] = true
	}
	match := func(name string) bool { return len(names) == 0 || names[name] }
	all, rev, err := s.M.store.List(ctx)
	if err != nil {
		return grpcError(err)
	}
	for _, r := range all {
		if match(r.GetName()) {
			if err := stream.Send(&vonv1.WatchResponse{Type: vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_EXISTING, Reservation: r}); err != nil {
				return err
			}
		}
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range s.M.cli.Watch(wctx, s.M.store.onPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV()) {
		if err := wr.Err(); err != nil {
			return grpcError(fmt.Errorf("%w: watch: %w", ErrContention, err))
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
			if kv == nil || proto.Unmarshal(kv.Value, r) != nil || !match(r.GetName()) {
				continue
			}
			r.Revision = uint64(ev.Kv.ModRevision)
			if err := stream.Send(&vonv1.WatchResponse{Type: typ, Reservation: r}); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// Renew extends one lease.
func (s *Server) Renew(ctx context.Context, req *vonv1.RenewRequest) (*vonv1.RenewResponse, error) {
	r, err := s.M.Renew(ctx, req.GetName(), req.GetTtl().AsDuration())
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.RenewResponse{Reservation: r}, nil
}

// KeepAlive renews the listed leases on every request of the stream.
func (s *Server) KeepAlive(stream vonv1.ReservationService_KeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &vonv1.KeepAliveResponse{}
		for _, name := range req.GetNames() {
			lr := &vonv1.LeaseRenewal{Name: name}
			r, err := s.M.Renew(stream.Context(), name, req.GetTtl().AsDuration())
			if err != nil {
				lr.Error = err.Error()
				if cur, _, gerr := s.M.store.Get(stream.Context(), name); gerr == nil {
					lr.State = cur.GetState()
				}
			} else {
				lr.LeaseExpireTime, lr.State = r.GetLeaseExpireTime(), r.GetState()
			}
			resp.Renewals = append(resp.Renewals, lr)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// Release removes a reservation everywhere.
func (s *Server) Release(ctx context.Context, req *vonv1.ReleaseRequest) (*vonv1.ReleaseResponse, error) {
	r, err := s.M.Release(ctx, req.GetName())
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.ReleaseResponse{Reservation: r}, nil
}

// ListAgents returns every registered agent with its liveness.
func (s *Server) ListAgents(ctx context.Context, _ *vonv1.ListAgentsRequest) (*vonv1.ListAgentsResponse, error) {
	agents, err := s.M.store.Agents(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	out := &vonv1.ListAgentsResponse{}
	for _, a := range agents {
		a.Live = s.M.live(a)
		out.Agents = append(out.Agents, a)
	}
	sort.Slice(out.Agents, func(i, j int) bool { return out.Agents[i].GetNode() < out.Agents[j].GetNode() })
	return out, nil
}

// ComputePaths answers `vonctl paths` against the live topology and reservations.
func (s *Server) ComputePaths(ctx context.Context, req *vonv1.ComputePathsRequest) (*vonv1.ComputePathsResponse, error) {
	ts, err := s.M.store.Topology(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	from, err1 := ts.Graph.NodeIndex(req.GetFrom())
	to, err2 := ts.Graph.NodeIndex(req.GetTo())
	if err := errors.Join(err1, err2); err != nil {
		return nil, grpcError(fmt.Errorf("%w: %w", ErrInvalid, err))
	}
	opt := disjoint.Options{Rate: req.GetRateBps()}
	if req.GetNodeDisjoint() {
		opt.Mode = disjoint.NodeDisjoint
	}
	if opt.Rate > 0 {
		reserved, err := s.M.store.Ledger.Reserved(ctx)
		if err != nil {
			return nil, grpcError(err)
		}
		opt.Reserved = func(link int, fromA bool) uint64 {
			d := AtoB
			if !fromA {
				d = BtoA
			}
			return reserved[Charge{Link: ts.Topo.Links[link].Name, Dir: d}]
		}
	}
	res, err := ts.Graph.Disjoint(from, to, opt)
	if err != nil {
		return nil, grpcError(fmt.Errorf("%w: %w", ErrUnplaceable, err))
	}
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
	return out, nil
}

// Register records an agent (and refreshes its liveness) and returns its node's
// desired state.
func (s *Server) Register(ctx context.Context, req *vonv1.AgentRegistryServiceRegisterRequest) (*vonv1.AgentRegistryServiceRegisterResponse, error) {
	ts, err := s.M.store.Topology(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	n, ok := ts.Topo.Node(req.GetNode())
	if !ok || n.Kind != topology.KindRouter {
		return nil, grpcError(fmt.Errorf("%w: node %q is not a router of the applied topology", ErrInvalid, req.GetNode()))
	}
	if req.GetEndpoint() == "" {
		return nil, grpcError(fmt.Errorf("%w: agent %s gave no endpoint", ErrInvalid, req.GetNode()))
	}
	a := &vonv1.Agent{Node: req.GetNode(), Endpoint: req.GetEndpoint(), Interfaces: req.GetInterfaces(),
		Version: req.GetVersion(), LastSeenTime: timestamppb.New(time.Now())}
	if err := s.M.store.PutAgent(ctx, a); err != nil {
		return nil, grpcError(err)
	}
	// Only the leader answers with a desired state: an agent converges to the answer,
	// and an empty one from a manager that does not lead would wipe its partitions.
	out := &vonv1.AgentRegistryServiceRegisterResponse{LeaderEpoch: s.M.Epoch()}
	if out.LeaderEpoch == 0 {
		return nil, grpcError(fmt.Errorf("%w: registration recorded; this manager does not lead yet, so it has no desired state to give — retry", ErrNotLeader))
	}
	if out.Partitions, err = s.M.desired(ctx, req.GetNode()); err != nil {
		return nil, grpcError(err)
	}
	return out, nil
}
