package agent

import (
	"context"
	"fmt"
	"path"
	"runtime/debug"
	"slices"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/partition"
	"github.com/vonproject/von/pki"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// protoIfaces converts observed interfaces (loopback left out), sorted by name.
func (c Config) protoIfaces(ifs map[string]ifaceInfo) []*vonv1.Interface {
	out := make([]*vonv1.Interface, 0, len(ifs))
	for _, i := range ifs {
		if i.Name == "lo" {
			continue
		}
		out = append(out, &vonv1.Interface{Name: i.Name, Addresses: i.Addrs, SpeedBps: i.Speed,
			Managed: c.manageable(i.Name), Up: i.Up, Mtu: i.MTU})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

func counters(ifname string, c partition.Counters) *vonv1.InterfaceCounters {
	return &vonv1.InterfaceCounters{Interface: ifname, Bytes: c.Bytes, Packets: c.Packets, Drops: c.Drops}
}

// Status implements AgentService.Status.
func (s *service) Status(ctx context.Context, req *vonv1.AgentServiceStatusRequest) (*vonv1.AgentServiceStatusResponse, error) {
	a := s.a
	ifs, err := a.dp.interfaces()
	if err != nil {
		return nil, err
	}
	obs, obsErr := a.dp.observe(ctx)
	want := func(id uint32) bool { return len(req.GetOnIds()) == 0 || slices.Contains(req.GetOnIds(), id) }

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, ErrClosed
	}
	resp := &vonv1.AgentServiceStatusResponse{Node: a.cfg.Node, Interfaces: a.cfg.protoIfaces(ifs),
		LeaderEpoch: a.st.epoch, ClusterId: a.st.cluster, SampleTime: timestamppb.Now()}
	d, _ := a.cfg.desired(a.st.committed, ifs)
	capacity := map[string]uint64{}
	for _, i := range d.Interfaces {
		capacity[i.Name] = i.Capacity
	}
	for _, h := range a.st.holds {
		if want(h.Spec.GetOnId()) {
			resp.Partitions = append(resp.Partitions, &vonv1.PartitionStatus{OnId: h.Spec.GetOnId(),
				State: vonv1.PartitionState_PARTITION_STATE_PREPARED, TxnId: h.TxnID,
				Spec: proto.Clone(h.Spec).(*vonv1.PartitionSpec), ExpireTime: timestamppb.New(h.HoldExpire)})
		}
	}
	for id, c := range a.st.committed {
		if !want(id) {
			continue
		}
		ps := &vonv1.PartitionStatus{OnId: id, State: vonv1.PartitionState_PARTITION_STATE_COMMITTED, TxnId: c.TxnID,
			Spec: proto.Clone(c.Spec).(*vonv1.PartitionSpec), ExpireTime: timestamppb.New(c.LeaseExpire)}
		if why := a.skipped[id]; why != "" {
			ps.Drift = append(ps.Drift, "not enforced: "+why)
		}
		if a.applyErr != nil {
			ps.Drift = append(ps.Drift, "data plane not converged: "+a.applyErr.Error())
		}
		for _, cl := range c.Spec.GetClasses() {
			n := cl.GetInterface()
			st, ok := obs.Interfaces[n]
			switch {
			case obsErr != nil:
				ps.Drift = append(ps.Drift, fmt.Sprintf("%s: counters unavailable: %v", n, obsErr))
			case !ok:
				ps.Drift = append(ps.Drift, fmt.Sprintf("%s: no VON HTB tree", n))
			default:
				if cnt, ok := st.ONs[id]; ok {
					ps.Counters = append(ps.Counters, counters(n, cnt))
				} else {
					ps.Drift = append(ps.Drift, fmt.Sprintf("%s: no HTB class for ON %d", n, id))
				}
				if want := capacity[n]; want != 0 && st.Capacity != want {
					ps.Drift = append(ps.Drift, fmt.Sprintf("%s: root class %s, want %s", n, fmtRate(st.Capacity), fmtRate(want)))
				}
			}
		}
		resp.Partitions = append(resp.Partitions, ps)
	}
	sort.SliceStable(resp.Partitions, func(x, y int) bool {
		px, py := resp.Partitions[x], resp.Partitions[y]
		if px.OnId != py.OnId {
			return px.OnId < py.OnId
		}
		return px.State < py.State
	})
	names := make([]string, 0, len(obs.Interfaces))
	for n := range obs.Interfaces {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		resp.BestEffort = append(resp.BestEffort, counters(n, obs.Interfaces[n].BestEffort))
	}
	return resp, nil
}

// interceptor counts calls, logs them, maps errors to gRPC codes and turns a
// panic into INTERNAL instead of killing the router agent.
func (a *Agent) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	method := path.Base(info.FullMethod)
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("panic in handler", "method", method, "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "agent: internal error in %s: %v", method, r)
		}
		out := "ok"
		if err != nil {
			out = status.Code(err).String()
		} else if p, ok := resp.(*vonv1.AgentServicePrepareResponse); ok {
			out = map[vonv1.Vote]string{vonv1.Vote_VOTE_PREPARED: "prepared", vonv1.Vote_VOTE_REFUSED: "refused"}[p.GetVote()]
		}
		a.met.calls.WithLabelValues(method, out).Inc()
		a.met.callSeconds.WithLabelValues(method).Observe(time.Since(start).Seconds())
		if err != nil && method != "Status" {
			a.log.Warn("call failed", "method", method, "code", out, "err", err, "took", time.Since(start))
		} else {
			a.log.Debug("call", "method", method, "outcome", out, "took", time.Since(start))
		}
	}()
	if a.cfg.TLS != nil {
		// Only managers drive an agent: a user's or another agent's
		// certificate from the same CA is not enough.
		id, ok := pki.PeerIdentity(ctx)
		if !ok {
			return nil, status.Error(codes.Unauthenticated, "no client certificate")
		}
		if id.Kind != pki.KindManager {
			return nil, status.Errorf(codes.PermissionDenied, "AgentService is for managers; this connection presents %s", id)
		}
	}
	resp, err = handler(ctx, req)
	return resp, toStatus(err)
}
