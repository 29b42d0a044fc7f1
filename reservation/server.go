package reservation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// server is the gRPC adapter of a Manager: ReservationService and
// AgentRegistryService, each call one call of the manager's public API, behind
// the limits and authorization of Interceptors.
type server struct {
	vonv1.UnimplementedReservationServiceServer
	vonv1.UnimplementedAgentRegistryServiceServer
	M *Manager
	// Secure: the server runs mutual TLS, so every call has a certificate
	// identity and is authorized (authz.go). Serve with Interceptors.
	Secure bool
	// RateLimit is how many calls per second one client may make (0:
	// DefaultRateLimit; negative: no limit).
	RateLimit int

	limitOnce sync.Once
	limit     *limiter
}

// ApplyTopology replaces the network model.
func (s *server) ApplyTopology(ctx context.Context, req *vonv1.ApplyTopologyRequest) (*vonv1.ApplyTopologyResponse, error) {
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
	st, err := s.M.ApplyTopology(ctx, text)
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.ApplyTopologyResponse{Topology: TopologyToProto(st.Topo), Revision: uint64(st.Revision)}, nil
}

// GetTopology returns the applied model and its source.
func (s *server) GetTopology(ctx context.Context, _ *vonv1.GetTopologyRequest) (*vonv1.GetTopologyResponse, error) {
	st, err := s.M.Topology(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.GetTopologyResponse{Topology: TopologyToProto(st.Topo), Yaml: st.YAML, Revision: uint64(st.Revision)}, nil
}

// Reserve admits and installs an ON.
func (s *server) Reserve(ctx context.Context, req *vonv1.ReserveRequest) (*vonv1.ReserveResponse, error) {
	r, err := s.M.Reserve(ctx, ReserveRequest{Name: req.GetName(), Members: req.GetMembers(), Rate: req.GetRateBps(),
		Redundant: req.GetRedundant(), NodeDisjoint: req.GetNodeDisjoint(), TTL: req.GetTtl().AsDuration(), Owner: callerOf(ctx).owner()})
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.ReserveResponse{Reservation: r}, nil
}

// Get returns one reservation.
func (s *server) Get(ctx context.Context, req *vonv1.GetRequest) (*vonv1.GetResponse, error) {
	r, err := s.M.Get(ctx, req.GetName())
	if err != nil {
		return nil, grpcError(err)
	}
	if err := callerOf(ctx).checkUse(r); err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.GetResponse{Reservation: r}, nil
}

// List returns reservations in name order, optionally filtered by state, in
// pages. It reads the store from the page token on, a chunk at a time, until the
// page is full: a page costs what it returns (and skips), not every ON there is.
func (s *server) List(ctx context.Context, req *vonv1.ListRequest) (*vonv1.ListResponse, error) {
	want := map[vonv1.ReservationState]bool{}
	for _, st := range req.GetStates() {
		want[st] = true
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = DefaultPageSize
	}
	size = min(size, MaxPageSize)
	out := &vonv1.ListResponse{}
	who := callerOf(ctx)
	after := req.GetPageToken()
	for {
		chunk, more, err := s.M.ListAfter(ctx, after, size+1)
		if err != nil {
			return nil, grpcError(err)
		}
		for _, r := range chunk {
			after = r.GetName()
			if (len(want) > 0 && !want[r.GetState()]) || !who.mayUse(r) {
				continue
			}
			if len(out.Reservations) == size {
				out.NextPageToken = out.Reservations[size-1].GetName()
				return out, nil
			}
			out.Reservations = append(out.Reservations, r)
		}
		if !more {
			return out, nil
		}
	}
}

// Watch streams the current reservations, then every change.
func (s *server) Watch(req *vonv1.WatchRequest, stream vonv1.ReservationService_WatchServer) error {
	ctx := stream.Context()
	if n := len(req.GetNames()); n > MaxNamesPerCall {
		return grpcError(fmt.Errorf("%w: %d names in one Watch; at most %d", ErrInvalid, n, MaxNamesPerCall))
	}
	names := map[string]bool{}
	for _, n := range req.GetNames() {
		names[n] = true
	}
	who := callerOf(ctx)
	match := func(r *vonv1.Reservation) bool { return (len(names) == 0 || names[r.GetName()]) && who.mayUse(r) }
	all, rev, err := s.M.List(ctx)
	if err != nil {
		return grpcError(err)
	}
	for _, r := range all {
		if match(r) {
			if err := stream.Send(&vonv1.WatchResponse{Type: vonv1.ReservationEventType_RESERVATION_EVENT_TYPE_EXISTING, Reservation: r}); err != nil {
				return err
			}
		}
	}
	return grpcError(s.M.Watch(ctx, rev, func(typ vonv1.ReservationEventType, r *vonv1.Reservation) error {
		if !match(r) {
			return nil
		}
		return stream.Send(&vonv1.WatchResponse{Type: typ, Reservation: r})
	}))
}

// Renew extends one lease.
func (s *server) Renew(ctx context.Context, req *vonv1.RenewRequest) (*vonv1.RenewResponse, error) {
	if err := s.checkAccess(ctx, req.GetName(), caller.checkUse); err != nil {
		return nil, grpcError(err)
	}
	r, err := s.M.Renew(ctx, req.GetName(), req.GetTtl().AsDuration())
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.RenewResponse{Reservation: r}, nil
}

// KeepAlive renews the listed leases on every request of the stream.
func (s *server) KeepAlive(stream vonv1.ReservationService_KeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if n := len(req.GetNames()); n > MaxNamesPerCall {
			return grpcError(fmt.Errorf("%w: %d names in one KeepAlive; at most %d", ErrInvalid, n, MaxNamesPerCall))
		}
		resp := &vonv1.KeepAliveResponse{}
		for _, name := range req.GetNames() {
			lr := &vonv1.LeaseRenewal{Name: name}
			if err := s.checkAccess(stream.Context(), name, caller.checkUse); errors.Is(err, ErrPermission) {
				return grpcError(err)
			}
			r, err := s.M.Renew(stream.Context(), name, req.GetTtl().AsDuration())
			if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrBusy) && !errors.Is(err, ErrInvalid) {
				// Not leading, or the store failed: nothing is wrong with the
				// reservation, so end the stream and let the client try again
				// (perhaps on another manager).
				return grpcError(err)
			}
			if err != nil {
				lr.Error = err.Error()
				if cur, gerr := s.M.Get(stream.Context(), name); gerr == nil {
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

// checkAccess applies check (caller.checkUse or caller.checkManage) to the
// named reservation; one that does not exist is left to the operation to report.
func (s *server) checkAccess(ctx context.Context, name string, check func(caller, *vonv1.Reservation) error) error {
	c := callerOf(ctx)
	if !c.secure {
		return nil
	}
	r, err := s.M.Get(ctx, name)
	if err != nil {
		return nil
	}
	return check(c, r)
}

// Release removes a reservation everywhere.
func (s *server) Release(ctx context.Context, req *vonv1.ReleaseRequest) (*vonv1.ReleaseResponse, error) {
	if err := s.checkAccess(ctx, req.GetName(), caller.checkManage); err != nil {
		return nil, grpcError(err)
	}
	r, err := s.M.Release(ctx, req.GetName())
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.ReleaseResponse{Reservation: r}, nil
}

// ListAgents returns every registered agent with its liveness.
func (s *server) ListAgents(ctx context.Context, _ *vonv1.ListAgentsRequest) (*vonv1.ListAgentsResponse, error) {
	agents, err := s.M.Agents(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	return &vonv1.ListAgentsResponse{Agents: agents}, nil
}

// ComputePaths answers `vonctl paths` against the live topology and reservations, with
// the planner Reserve uses (onpath): what it answers is what a redundant ON between the
// two nodes would get.
func (s *server) ComputePaths(ctx context.Context, req *vonv1.ComputePathsRequest) (*vonv1.ComputePathsResponse, error) {
	out, err := s.M.ComputePaths(ctx, req.GetFrom(), req.GetTo(), req.GetRateBps(), req.GetNodeDisjoint())
	return out, grpcError(err)
}

// Register records an agent (and refreshes its liveness) and returns its node's
// desired state.
func (s *server) Register(ctx context.Context, req *vonv1.AgentRegistryServiceRegisterRequest) (*vonv1.AgentRegistryServiceRegisterResponse, error) {
	if c := callerOf(ctx); c.secure && c.id.Name != req.GetNode() {
		return nil, grpcError(fmt.Errorf("%w: %s may register only router %s, not %q", ErrPermission, c.id, c.id.Name, req.GetNode()))
	}
	out, err := s.M.Register(ctx, req)
	return out, grpcError(err)
}
