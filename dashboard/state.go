package dashboard

import (
	"fmt"
	"strings"
	"time"

	"github.com/vonproject/von/internal/topodraw"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/reservation"
	"github.com/vonproject/von/topology"
)

// Snapshot is what /api/state answers and the "state" event carries: the
// whole picture the page renders from.
type Snapshot struct {
	Now time.Time `json:"now"` // the manager's clock: the page counts leases with it
	// Leader is the id of the manager that leads ("" while none does);
	// LeaderError why it could not be read.
	Leader      string    `json:"leader"`
	LeaderError string    `json:"leader_error,omitempty"`
	Topology    *Topology `json:"topology"` // null until a topology is applied
	Usage       []Usage   `json:"usage"`    // every direction of every link
	ONs         []*ON     `json:"ons"`      // every reservation, ended ones too, by name
	Agents      []Agent   `json:"agents"`   // every registered agent, by node
	// Measured is the bit/s each ON carried lately (its busiest class on any
	// router), by ON id, as the agents report it; ONs that carried nothing
	// are absent.
	Measured map[uint32]uint64 `json:"measured"`
	Legend   Legend            `json:"legend"`
}

// Legend is how the picture colours link directions and paths.
type Legend struct {
	Usage []topodraw.Swatch `json:"usage"` // by share of the reservable capacity reserved
	Paths []topodraw.Swatch `json:"paths"` // by path index
}

var legend = Legend{Usage: topodraw.UsageScale, Paths: topodraw.PathScale(2)}

// Topology is the applied network model with where each node is drawn.
type Topology struct {
	Revision int64   `json:"revision"`
	Width    float64 `json:"width"`
	Height   float64 `json:"height"`
	Nodes    []Node  `json:"nodes"` // file order: Nodes[i] is element n-i of topology.svg
	Links    []Link  `json:"links"` // file order: Links[i] is element l-i
}

// Node is one router or host.
type Node struct {
	Name    string  `json:"name"`
	Kind    string  `json:"kind"` // router or host
	Address string  `json:"address,omitempty"`
	X       float64 `json:"x"`
	Y       float64 `json:"y"`
}

// Link is one full-duplex link.
type Link struct {
	Name          string `json:"name"`
	A             string `json:"a"` // node names
	B             string `json:"b"`
	CapacityBps   uint64 `json:"capacity_bps"`
	ReservableBps uint64 `json:"reservable_bps"`
	Cost          uint32 `json:"cost"`
}

// Usage is what is reserved on one direction of one link.
type Usage struct {
	Link          string `json:"link"`
	Dir           string `json:"dir"` // "ab" (from the link's a end) or "ba"
	ReservedBps   uint64 `json:"reserved_bps"`
	ReservableBps uint64 `json:"reservable_bps"`
	Color         string `json:"color"`
	Title         string `json:"title"` // the figures, as the picture shows them on hover
}

// ON is one reservation as the list shows it.
type ON struct {
	Name         string     `json:"name"`
	OnID         uint32     `json:"on_id"`
	State        string     `json:"state"` // committed, preparing, releasing, released, expired, failed, pending
	Live         bool       `json:"live"`  // not ended: its paths hold capacity
	RateBps      uint64     `json:"rate_bps"`
	Rate         string     `json:"rate"`
	Members      []string   `json:"members"`
	Redundant    bool       `json:"redundant"`
	NodeDisjoint bool       `json:"node_disjoint,omitempty"`
	LeaseExpires *time.Time `json:"lease_expires,omitempty"`
	Degraded     string     `json:"degraded,omitempty"`
	NotEnforced  []string   `json:"not_enforced,omitempty"` // routers, "r3: why"
	Reason       string     `json:"reason,omitempty"`
	Owner        string     `json:"owner,omitempty"`
	Paths        []Pair     `json:"paths"`
}

// Pair is the paths of one member pair, path index 0 first.
type Pair struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Paths []Path `json:"paths"`
}

// Path is one path of a member pair.
type Path struct {
	Index int      `json:"index"`
	Nodes []string `json:"nodes"`
	Links []string `json:"links"`
}

// Agent is one registered router agent.
type Agent struct {
	Node     string     `json:"node"`
	Live     bool       `json:"live"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
	Version  string     `json:"version,omitempty"`
	Endpoint string     `json:"endpoint,omitempty"`
}

func topologyOf(ts *reservation.TopologyState, l *topodraw.Layout) *Topology {
	t := ts.Topo
	out := &Topology{Revision: ts.Revision, Width: l.Width, Height: l.Height,
		Nodes: make([]Node, len(t.Nodes)), Links: make([]Link, len(t.Links))}
	for i, n := range t.Nodes {
		out.Nodes[i] = Node{Name: n.Name, Kind: string(n.Kind), X: l.Pos[i].X, Y: l.Pos[i].Y}
		if n.Address.IsValid() {
			out.Nodes[i].Address = n.Address.String()
		}
	}
	for i, lk := range t.Links {
		out.Links[i] = Link{Name: lk.Name, A: lk.A.Node, B: lk.B.Node, CapacityBps: lk.Capacity,
			ReservableBps: lk.ReservableRate(), Cost: lk.Cost}
	}
	return out
}

// usageOf is what is reserved on direction d of link l.
func usageOf(l topology.Link, d topodraw.Dir, reserved map[reservation.Charge]uint64) Usage {
	rd := reservation.AtoB
	from, to := l.A.Node, l.B.Node
	if d == topodraw.BtoA {
		rd, from, to = reservation.BtoA, to, from
	}
	r, max := reserved[reservation.Charge{Link: l.Name, Dir: rd}], l.ReservableRate()
	pct := 0.0
	if max > 0 {
		pct = 100 * float64(r) / float64(max)
	}
	title := fmt.Sprintf("%s → %s (link %s): %s reserved of %s reservable (%.0f%%); capacity %s",
		from, to, l.Name, rate(r), rate(max), pct, rate(l.Capacity))
	return Usage{Link: l.Name, Dir: d.Suffix(), ReservedBps: r, ReservableBps: max, Color: topodraw.UsageColor(r, max), Title: title}
}

// rate formats bit/s exactly when that is short ("16Mbit"), else to three
// significant digits ("12.3Mbit").
func rate(bps uint64) string {
	if s := topology.FormatRate(bps); len(s) <= 8 {
		return s
	}
	for _, u := range []struct {
		div  float64
		name string
	}{{1e12, "Tbit"}, {1e9, "Gbit"}, {1e6, "Mbit"}, {1e3, "kbit"}} {
		if float64(bps) >= u.div {
			return fmt.Sprintf("%.3g%s", float64(bps)/u.div, u.name)
		}
	}
	return fmt.Sprintf("%dbit", bps)
}

// stateName is the state as vonctl names it: "committed".
func stateName(s vonv1.ReservationState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "RESERVATION_STATE_"))
}

// live says whether a reservation in state s still holds (or is taking)
// capacity: it is drawn and listed by default.
func live(s vonv1.ReservationState) bool {
	switch s {
	case vonv1.ReservationState_RESERVATION_STATE_RELEASED, vonv1.ReservationState_RESERVATION_STATE_EXPIRED,
		vonv1.ReservationState_RESERVATION_STATE_FAILED:
		return false
	}
	return true
}

func onOf(r *vonv1.Reservation) *ON {
	o := &ON{Name: r.GetName(), OnID: r.GetOnId(), State: stateName(r.GetState()), Live: live(r.GetState()),
		RateBps: r.GetRateBps(), Rate: rate(r.GetRateBps()), Redundant: r.GetRedundant(), NodeDisjoint: r.GetNodeDisjoint(),
		Degraded: r.GetDegraded(), Reason: r.GetFailureReason(), Owner: r.GetOwner(),
		Members: make([]string, 0, len(r.GetMembers())), Paths: make([]Pair, 0, len(r.GetPaths()))}
	for _, m := range r.GetMembers() {
		o.Members = append(o.Members, m.GetName())
	}
	if r.GetLeaseExpireTime().IsValid() && r.GetLeaseExpireTime().GetSeconds() > 0 {
		t := r.GetLeaseExpireTime().AsTime()
		o.LeaseExpires = &t
	}
	for _, ne := range r.GetNotEnforced() {
		o.NotEnforced = append(o.NotEnforced, ne.GetRouter()+": "+ne.GetReason())
	}
	for _, pp := range r.GetPaths() {
		pr := Pair{From: pp.GetSrcMember(), To: pp.GetDstMember(), Paths: make([]Path, 0, len(pp.GetPaths()))}
		for _, p := range pp.GetPaths() {
			pr.Paths = append(pr.Paths, Path{Index: int(p.GetIndex()), Nodes: p.GetNodes(), Links: p.GetLinks()})
		}
		o.Paths = append(o.Paths, pr)
	}
	return o
}

func agentOf(a *vonv1.Agent) Agent {
	out := Agent{Node: a.GetNode(), Live: a.GetLive(), Version: a.GetVersion(), Endpoint: a.GetEndpoint()}
	if a.GetLastSeenTime().IsValid() && a.GetLastSeenTime().GetSeconds() > 0 {
		t := a.GetLastSeenTime().AsTime()
		out.LastSeen = &t
	}
	return out
}
