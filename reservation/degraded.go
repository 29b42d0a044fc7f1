package reservation

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// Degraded ONs. The leader compares every committed ON's paths with what the
// agents report: a link is failed when a router at either end reports its
// interface down, a router when it has no live agent. An ON with a failed
// element on a path is degraded (the record says which path and why) until
// the element is back or the ON is re-routed around it. A redundant ON keeps
// delivering on its other path meanwhile (repair.go re-routes it).

// failedElements lists the failed links and routers of the topology, with why.
func (m *Manager) failedElements(t *topology.Topology, agents map[string]*vonv1.Agent) (links, routers map[string]string) {
	links, routers = map[string]string{}, map[string]string{}
	for _, n := range t.Nodes {
		if n.Kind == topology.KindRouter && !m.live(agents[n.Name]) {
			routers[n.Name] = "no live agent on " + n.Name
		}
	}
	for _, l := range t.Links {
		for _, e := range []topology.Endpoint{l.A, l.B} {
			a := agents[e.Node]
			if e.Interface == "" || a == nil || routers[e.Node] != "" {
				continue
			}
			for _, ifc := range a.GetInterfaces() {
				if ifc.GetName() == e.Interface && !ifc.GetUp() {
					links[l.Name] = fmt.Sprintf("%s:%s is down", e.Node, e.Interface)
				}
			}
		}
	}
	return links, routers
}

// crossing selects the committed ONs whose degradation may change: those
// recorded degraded and those crossing a router that failed or ends a link
// that did (nil, every ON, when a failed link has no router end).
func crossing(t *topology.Topology, links, routers map[string]string) func(name string, on []string, degraded bool) bool {
	near := map[string]bool{}
	for n := range routers {
		near[n] = true
	}
	for _, l := range t.Links {
		if links[l.Name] == "" {
			continue
		}
		ends := 0
		for _, e := range []topology.Endpoint{l.A, l.B} {
			if n, ok := t.Node(e.Node); ok && n.Kind == topology.KindRouter {
				near[e.Node] = true
				ends++
			}
		}
		if ends == 0 {
			return nil
		}
	}
	return func(_ string, on []string, degraded bool) bool {
		return degraded || slices.ContainsFunc(on, func(n string) bool { return near[n] })
	}
}

// degradedReason says which of r's paths cross a failed element ("" if none).
func degradedReason(r *vonv1.Reservation, links, routers map[string]string) string {
	var out []string
	for _, pp := range r.GetPaths() {
		for k, p := range pp.GetPaths() {
			var why []string
			for _, l := range p.GetLinks() {
				if w := links[l]; w != "" {
					why = append(why, fmt.Sprintf("link %s (%s)", l, w))
				}
			}
			for _, n := range p.GetNodes() {
				if w := routers[n]; w != "" {
					why = append(why, fmt.Sprintf("router %s (%s)", n, w))
				}
			}
			if len(why) > 0 {
				out = append(out, fmt.Sprintf("path %d of %s→%s: %s", k, pp.GetSrcMember(), pp.GetDstMember(), strings.Join(why, ", ")))
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// checkDegraded records, on every committed ON, whether its paths are intact.
func (m *Manager) checkDegraded(ctx context.Context) {
	ts, err := m.store.Topology(ctx)
	if err != nil {
		return
	}
	agents, err := m.agentRecords(ctx)
	if err != nil {
		return
	}
	links, routers := m.failedElements(ts.Topo, agents)
	x := m.index()
	if x != nil && len(links) == 0 && len(routers) == 0 && x.degradedCount() == 0 {
		return // nothing failed and nothing recorded degraded: no record to amend
	}
	ons, err := m.committedAll(ctx, crossing(ts.Topo, links, routers))
	if err != nil {
		return
	}
	for _, r := range ons {
		why := degradedReason(r, links, routers)
		if why == r.GetDegraded() {
			continue
		}
		if why != "" {
			m.log.Warn("ON degraded: a path crosses a failed link or router", "name", r.GetName(), "why", why)
		} else {
			m.log.Info("ON whole again: every path is intact", "name", r.GetName())
		}
		m.amend(ctx, r.GetName(), r.GetOnId(), "recording degradation", func(cur *vonv1.Reservation) bool {
			if cur.GetDegraded() == why {
				return false
			}
			if cur.GetDegraded() == "" {
				cur.DegradedSince = timestamppb.Now()
			}
			if why == "" {
				cur.DegradedSince = nil
			}
			cur.Degraded = why
			return true
		})
		if why != "" && r.GetRedundant() {
			if err := m.reroute(ctx, r.GetName()); err != nil {
				m.log.Warn("cannot re-route a degraded ON yet; it runs on its intact paths", "name", r.GetName(), "err", err)
			}
		}
	}
}
