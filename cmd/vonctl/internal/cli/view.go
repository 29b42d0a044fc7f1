package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vonproject/von/internal/clifmt"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

// reservationView is the -o json / yaml shape of a reservation.
type reservationView struct {
	Name         string       `json:"name"`
	OnID         uint32       `json:"on_id"`
	State        string       `json:"state"`
	Rate         string       `json:"rate"`
	RateBps      uint64       `json:"rate_bps"`
	Members      []memberView `json:"members"`
	Redundant    bool         `json:"redundant"`
	NodeDisjoint bool         `json:"node_disjoint,omitempty"`
	TTL          string       `json:"ttl,omitempty"`
	LeaseExpires *time.Time   `json:"lease_expires,omitempty"`
	Links        []linkView   `json:"links"`
	Paths        []pairView   `json:"paths"`
	Reason       string       `json:"reason,omitempty"`
	// Routers where the committed ON is not installed now; the manager re-drives them.
	NotEnforced []notEnforcedView `json:"not_enforced,omitempty"`
	// Which path has lost a link or router, and why; empty while all are intact.
	Degraded string `json:"degraded,omitempty"`
	// OverlayPrefix holds the members' overlay addresses (docs/cli.md).
	OverlayPrefix string     `json:"overlay_prefix,omitempty"`
	Created       *time.Time `json:"created,omitempty"`
	Updated       *time.Time `json:"updated,omitempty"`
}

type notEnforcedView struct {
	Router string `json:"router"`
	Reason string `json:"reason"`
}

type memberView struct {
	Name           string `json:"name"`
	Address        string `json:"address"`
	OverlayAddress string `json:"overlay_address,omitempty"`
}

type linkView struct {
	Link      string `json:"link"`
	Direction string `json:"direction"`
	RateBps   uint64 `json:"rate_bps"`
	// Copies of one message that cross the link: rate_bps = copies × the ON's rate.
	Copies uint32 `json:"copies"`
}

type pairView struct {
	From  string     `json:"from"`
	To    string     `json:"to"`
	Paths []pathJSON `json:"paths"`
}

func stateText(s vonv1.ReservationState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "RESERVATION_STATE_"))
}

func viewOf(r *vonv1.Reservation) reservationView {
	v := reservationView{
		Name: r.GetName(), OnID: r.GetOnId(), State: stateText(r.GetState()),
		Rate: topology.FormatRate(r.GetRateBps()), RateBps: r.GetRateBps(),
		Redundant: r.GetRedundant(), NodeDisjoint: r.GetNodeDisjoint(), Reason: r.GetFailureReason(), Degraded: r.GetDegraded(), OverlayPrefix: r.GetOverlayPrefix(),
		Members: []memberView{}, Links: []linkView{}, Paths: []pairView{},
	}
	if r.GetTtl() != nil {
		v.TTL = r.GetTtl().AsDuration().String()
	}
	tp := func(ts interface{ AsTime() time.Time }, ok bool) *time.Time {
		if !ok {
			return nil
		}
		t := ts.AsTime().Local()
		return &t
	}
	v.LeaseExpires = tp(r.GetLeaseExpireTime(), r.GetLeaseExpireTime() != nil)
	v.Created = tp(r.GetCreateTime(), r.GetCreateTime() != nil)
	v.Updated = tp(r.GetUpdateTime(), r.GetUpdateTime() != nil)
	for _, m := range r.GetMembers() {
		v.Members = append(v.Members, memberView{m.GetName(), m.GetAddress(), m.GetOverlayAddress()})
	}
	for _, e := range r.GetNotEnforced() {
		v.NotEnforced = append(v.NotEnforced, notEnforcedView{e.GetRouter(), e.GetReason()})
	}
	for _, l := range r.GetLinks() {
		d := "a->b"
		if l.GetDirection() == vonv1.LinkDirection_LINK_DIRECTION_B_TO_A {
			d = "b->a"
		}
		c := l.GetCopies()
		if c == 0 {
			c = 1
		}
		v.Links = append(v.Links, linkView{l.GetLink(), d, l.GetRateBps(), c})
	}
	for _, pp := range r.GetPaths() {
		pv := pairView{From: pp.GetSrcMember(), To: pp.GetDstMember()}
		for _, p := range pp.GetPaths() {
			pv.Paths = append(pv.Paths, pathJSON{Nodes: p.GetNodes(), Links: p.GetLinks(), Cost: int64(p.GetCost())})
		}
		v.Paths = append(v.Paths, pv)
	}
	return v
}

func memberNames(r *vonv1.Reservation) string {
	var names []string
	for _, m := range r.GetMembers() {
		names = append(names, m.GetName())
	}
	return strings.Join(names, ",")
}

func expiresText(r *vonv1.Reservation) string {
	if r.GetLeaseExpireTime() == nil || r.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
		return "-"
	}
	d := time.Until(r.GetLeaseExpireTime().AsTime()).Round(time.Second)
	return fmt.Sprintf("in %s", d)
}

// writeReservations prints reservations as a table or as json/yaml.
func writeReservations(w io.Writer, f clifmt.Format, rs []*vonv1.Reservation, single bool) error {
	if f != clifmt.Table {
		if single && len(rs) == 1 {
			return clifmt.Write(w, f, viewOf(rs[0]))
		}
		views := make([]reservationView, 0, len(rs))
		for _, r := range rs {
			views = append(views, viewOf(r))
		}
		return clifmt.Write(w, f, views)
	}
	if single && len(rs) == 1 {
		return writeDetail(w, rs[0])
	}
	tw := clifmt.NewTable(w)
	fmt.Fprintln(tw, "NAME\tON-ID\tSTATE\tRATE\tMEMBERS\tREDUNDANT\tEXPIRES")
	for _, r := range rs {
		state := stateText(r.GetState())
		if n := len(r.GetNotEnforced()); n > 0 {
			state += fmt.Sprintf(" (not enforced on %d)", n)
		}
		if r.GetDegraded() != "" {
			state += " (degraded)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%v\t%s\n", r.GetName(), r.GetOnId(), state,
			topology.FormatRate(r.GetRateBps()), memberNames(r), yesNo(r.GetRedundant()), expiresText(r))
	}
	return tw.Flush()
}

func writeDetail(w io.Writer, r *vonv1.Reservation) error {
	v := viewOf(r)
	tw := clifmt.NewTable(w)
	fmt.Fprintf(tw, "Name:\t%s\n", v.Name)
	fmt.Fprintf(tw, "ON id:\t%d (0x%08x)\n", v.OnID, v.OnID)
	fmt.Fprintf(tw, "State:\t%s\n", v.State)
	if v.Degraded != "" {
		fmt.Fprintf(tw, "DEGRADED:\t%s\n", v.Degraded)
	}
	for _, e := range v.NotEnforced {
		fmt.Fprintf(tw, "NOT ENFORCED on %s:\t%s (the manager keeps re-driving it)\n", e.Router, e.Reason)
	}
	if v.Reason != "" {
		fmt.Fprintf(tw, "Reason:\t%s\n", v.Reason)
	}
	fmt.Fprintf(tw, "Rate:\t%s\n", v.Rate)
	var ms []string
	for _, m := range v.Members {
		ms = append(ms, m.Name+" ("+m.Address+")")
	}
	fmt.Fprintf(tw, "Members:\t%s\n", strings.Join(ms, ", "))
	if v.OverlayPrefix != "" {
		var os []string
		for _, m := range v.Members {
			os = append(os, m.Name+" "+m.OverlayAddress)
		}
		fmt.Fprintf(tw, "Overlay:\t%s: %s\n", v.OverlayPrefix, strings.Join(os, ", "))
	}
	mode := "no (one path per pair)"
	if v.Redundant {
		mode = "yes (link-disjoint pair per member pair)"
		if v.NodeDisjoint {
			mode = "yes (router-disjoint pair per member pair)"
		}
	}
	fmt.Fprintf(tw, "Redundant:\t%s\n", mode)
	if v.LeaseExpires != nil {
		fmt.Fprintf(tw, "Lease:\t%s, expires %s (%s)\n", v.TTL, v.LeaseExpires.Format(time.RFC3339), expiresText(r))
	}
	// Admission arithmetic: each link direction is charged copies × rate, once for the
	// whole ON (not per member pair).
	links := map[string]bool{}
	var total uint64
	for _, l := range v.Links {
		total += l.RateBps
		if links[l.Link] {
			continue
		}
		links[l.Link] = true
		why := ""
		if l.Copies > 1 {
			why = " (both paths cross it: every message twice)"
		}
		fmt.Fprintf(tw, "Charged %s:\t%d × %s = %s each way%s\n", l.Link, l.Copies, v.Rate, topology.FormatRate(l.RateBps), why)
	}
	if len(v.Links) > 0 {
		fmt.Fprintf(tw, "Charged in all:\t%s over %d link directions\n", topology.FormatRate(total), len(v.Links))
	}
	for _, pp := range v.Paths {
		for i, p := range pp.Paths {
			fmt.Fprintf(tw, "Path %d %s→%s:\t%s (cost %d)\n", i, pp.From, pp.To, strings.Join(p.Nodes, " → "), p.Cost)
		}
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
