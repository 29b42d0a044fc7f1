package reservation

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vonproject/von/onpath"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// Redundancy repair. A redundant ON whose path crosses a failed link or router
// (degraded.go) is re-routed make-before-break: each broken path is replaced
// by a path link-disjoint (node-disjoint for a node-disjoint ON) from the
// pair's intact one (which is kept as it is,
// so the traffic it carries is never disturbed) and clear of every failed
// element; the new partitions are prepared on every router of the new paths,
// the new paths, charges and the commit decision are recorded in one etcd
// transaction, then the routers commit and the routers the ON no longer
// crosses release it. The ON stays on its new paths when the failure heals:
// they are a valid pair, and moving back would cost another re-route for no
// gain in protection.

// full marks a link direction as having no room, so the planner avoids it.
const full = math.MaxUint64 / 4

// replan returns r's placement with every broken path replaced.
func (m *Manager) replan(ts *TopologyState, r *vonv1.Reservation, reserved map[Charge]uint64, links, routers map[string]string,
	agents map[string]*vonv1.Agent) (*placement, error) {
	t := ts.Topo
	members := map[string]bool{}
	var names []string
	for _, mb := range r.GetMembers() {
		members[mb.GetName()] = true
		names = append(names, mb.GetName())
	}
	broken := func(p *vonv1.Path) bool {
		for _, l := range p.GetLinks() {
			if links[l] != "" {
				return true
			}
		}
		for _, n := range p.GetNodes() {
			if routers[n] != "" {
				return true
			}
		}
		return false
	}
	attached := map[string]bool{} // routers a single-homed member hangs off
	for name := range members {
		if ls := t.LinksOf(name); len(ls) == 1 {
			far, _ := t.Links[ls[0]].Other(name)
			attached[far.Node] = true
		}
	}
	avoid := map[string]bool{} // links no new path may use
	for l := range links {
		avoid[l] = true
	}
	for _, l := range t.Links {
		if routers[l.A.Node] != "" || routers[l.B.Node] != "" {
			avoid[l.Name] = true
		}
	}
	pairs := make([]*vonv1.MemberPairPaths, len(r.GetPaths()))
	for i, pp := range r.GetPaths() {
		pairs[i] = proto.Clone(pp).(*vonv1.MemberPairPaths)
		for k, p := range pp.GetPaths() {
			if !broken(p) {
				continue
			}
			// Stay link-disjoint from the pair's other paths (their access links
			// to single-homed members are shared by construction).
			excl := maps.Clone(avoid)
			for j, o := range pp.GetPaths() {
				if j == k {
					continue
				}
				for _, l := range o.GetLinks() {
					if li, ok := t.Link(l); ok && !members[li.A.Node] && !members[li.B.Node] {
						excl[l] = true
					}
				}
				if r.GetNodeDisjoint() { // nor any router the intact path crosses
					for _, n := range o.GetNodes() {
						if members[n] || attached[n] {
							continue // a single-homed member's router is on every path
						}
						for _, l := range t.Links {
							if l.A.Node == n || l.B.Node == n {
								excl[l.Name] = true
							}
						}
					}
				}
			}
			res := map[Charge]uint64{}
			for c, v := range reserved {
				res[c] = v
			}
			for l := range excl {
				res[Charge{l, AtoB}], res[Charge{l, BtoA}] = full, full
			}
			plan, err := onpath.PlanON(t, ts.Graph, onpath.Request{Members: []string{pp.GetSrcMember(), pp.GetDstMember()}, Paths: 1,
				Rate: r.GetRateBps(), Reserved: reservedFunc(t, res)})
			if err != nil {
				return nil, fmt.Errorf("%w: no path for %s→%s around the failure, disjoint from the intact one: %w",
					ErrUnplaceable, pp.GetSrcMember(), pp.GetDstMember(), err)
			}
			np := plan.Pairs[0].Result.Paths[0]
			out := &vonv1.Path{Index: uint32(k), Cost: uint64(np.Cost)}
			for _, n := range np.Nodes {
				out.Nodes = append(out.Nodes, ts.Graph.NodeName(n))
			}
			for _, l := range np.Links {
				out.Links = append(out.Links, t.Links[l].Name)
			}
			pairs[i].Paths[k] = out
		}
	}
	p := &placement{Members: r.GetMembers(), Pairs: pairs}
	p.charge(t, r.GetRateBps())
	req := placeRequest{Name: r.GetName(), Members: names, Rate: r.GetRateBps(), Redundant: true, NodeDisjoint: r.GetNodeDisjoint(),
		DSCP: m.cfg.DSCP, Port: m.cfg.Port}
	if err := p.derive(ts, req, agents); err != nil {
		return nil, err
	}
	return p, nil
}

// charge computes what p's paths hold: on each link, as many copies of one
// message as the paths of one member pair put on it (the most over all pairs).
func (p *placement) charge(t *topology.Topology, rate uint64) {
	copies := map[string]int{}
	for _, pp := range p.Pairs {
		n := map[string]int{}
		for _, path := range pp.GetPaths() {
			for _, l := range path.GetLinks() {
				n[l]++
			}
		}
		for l, c := range n {
			copies[l] = max(copies[l], c)
		}
	}
	var names []string
	for l := range copies {
		names = append(names, l)
	}
	sort.Strings(names)
	p.Amounts = map[Charge]uint64{}
	for _, l := range names {
		amt := uint64(copies[l]) * rate
		for _, d := range []Direction{AtoB, BtoA} {
			c := Charge{l, d}
			p.Charges = append(p.Charges, c)
			p.Amounts[c] = amt
			p.Charged = append(p.Charged, &vonv1.ChargedLink{Link: l, Direction: d.proto(), RateBps: amt, Copies: uint32(copies[l])})
		}
	}
}

// reroute moves a degraded redundant ON's broken paths around the failure.
func (m *Manager) reroute(ctx context.Context, name string) error {
	epoch, err := m.requireLeader()
	if err != nil {
		return err
	}
	defer m.lock(name)()
	rec, rev, err := m.store.Get(ctx, name)
	if err != nil {
		return err
	}
	if rec.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED || !rec.GetRedundant() || rec.GetDegraded() == "" {
		return nil
	}
	start := time.Now()
	ts, err := m.store.Topology(ctx)
	if err != nil {
		return err
	}
	agents, err := m.agentRecords(ctx) // the leader's copy, as Reserve plans with
	if err != nil {
		return err
	}
	reserved, err := m.store.Ledger.Reserved(ctx)
	if err != nil {
		return err
	}
	own := amountsOf(rec)
	for c, v := range own {
		reserved[c] -= min(reserved[c], v)
	}
	links, routers := m.failedElements(ts.Topo, agents)
	pl, err := m.replan(ts, rec, reserved, links, routers, agents)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.roundTimeout())
	defer cancel()
	txnID := randomHex(8)
	specs := map[string]*vonv1.PartitionSpec{}
	for node, s := range pl.Specs {
		s.OnId, s.LeaseTtl = rec.GetOnId(), durationpb.New(m.cfg.PartitionLease)
		specs[node] = s
	}
	var leaving []string
	for _, n := range routersOf(rec) {
		if !slices.Contains(pl.Participants, n) {
			leaving = append(leaving, n)
		}
	}
	txn := txnRecord{ID: txnID, Kind: "reroute", Name: name, OnID: rec.GetOnId(), Participants: pl.Participants, Released: leaving}
	if fails := m.prepareAll(ctx, epoch, txnID, specs); len(fails) > 0 {
		m.abortAll(ctx, epoch, txn)
		return fmt.Errorf("%w: re-route of %s: %s", ErrRefused, name, failureText(fails))
	}
	next := proto.Clone(rec).(*vonv1.Reservation)
	next.Paths, next.Links, next.Degraded, next.DegradedSince = pl.Pairs, pl.Charged, "", nil
	next.PathsRevision = 0 // new paths: the partitions change at this write
	next.UpdateTime = timestamppb.Now()
	txn.Decision = "commit"
	put, err := m.store.putOn(next)
	if err != nil {
		return err
	}
	newRev, err := m.store.Ledger.Rebalance(ctx, own, pl.Amounts, func(l string) (uint64, bool) {
		li, ok := ts.Topo.Link(l)
		return li.ReservableRate(), ok
	}, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(m.store.onKey(name)), "=", rev)}, []clientv3.Op{put, m.store.putTxn(txn)})
	if err != nil {
		m.abortAll(ctx, epoch, txn)
		return fmt.Errorf("re-route of %s: %w", name, err)
	}
	m.finishReroute(ctx, epoch, txn, newRev)
	m.log.Info("rerouted a degraded ON around the failure", "name", name, "routers", pl.Participants, "left", leaving,
		"took", time.Since(start))
	return nil
}

// finishReroute delivers a recorded re-route: Commit on the new routers, then
// Release on those the ON left; the round is closed once all acked.
func (m *Manager) finishReroute(ctx context.Context, epoch uint64, t txnRecord, rev int64) {
	ok := m.commitAll(ctx, epoch, t, rev).ok()
	rel := t
	rel.Participants = t.Released
	if m.releaseAll(ctx, epoch, rel, rev).ok() && ok {
		_, _ = m.cli.Delete(ctx, m.store.txnKey(t.ID))
	}
}
