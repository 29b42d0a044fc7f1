package testbed

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vonproject/von/topology"
)

func TestPlanSix(t *testing.T) {
	topo, err := topology.Load("testdata/six.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(topo)
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Links[0].Subnet.String(); s != "10.77.128.0/30" {
		t.Errorf("link 0 subnet %s", s)
	}
	if s := p.Links[7].Subnet.String(); s != "10.77.128.28/30" {
		t.Errorf("link 7 subnet %s", s)
	}
	r1, _ := p.Node("r1")
	// r1 reaches h2 over the cheap r2-r3 core (cost 3) rather than r4-r5 (cost 6).
	want := "10.77.1.2/32 via 10.77.128.6 dev eth1"
	found := false
	for _, r := range r1.Routes {
		if r.String() == want {
			found = true
		}
	}
	if !found {
		t.Errorf("r1 routes lack %q:\n%v", want, r1.Routes)
	}
	h1, _ := p.Node("h1")
	if len(h1.Routes) != 1 || h1.Routes[0].String() != "0.0.0.0/0 via 10.77.128.2 dev eth0 src 10.77.1.1" {
		t.Errorf("h1 routes = %v", h1.Routes)
	}
	if !r1.Forward || h1.Forward {
		t.Error("routers forward, hosts do not")
	}
}

// Routes never transit a host, even when that would be shorter.
func TestPlanNoHostTransit(t *testing.T) {
	topo, err := topology.Parse([]byte(`nodes:
  - {name: h, kind: host}
  - {name: r1}
  - {name: r2}
links:
  - {a: r1, b: h, capacity: 1G, cost: 1}
  - {a: h, b: r2, capacity: 1G, cost: 1}
  - {a: r1, b: r2, capacity: 1G, cost: 10}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(topo)
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := p.Node("r1")
	for _, r := range r1.Routes {
		if r.Dst.Addr() == p.Links[1].B.Addr && r.Dev != "l2" {
			// h-r2's subnet: via h would be cheaper but hosts do not forward.
			t.Errorf("route to h-r2 goes %v", r)
		}
	}
	h, _ := p.Node("h")
	if !h.Addr.IsValid() || !strings.HasPrefix(h.Addr.String(), "10.77.100.") {
		t.Errorf("host without address got %v", h.Addr)
	}
}

func TestPlanRejectsOutsideAddresses(t *testing.T) {
	topo, err := topology.Parse([]byte("nodes:\n  - {name: h, kind: host, address: 192.168.1.1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewPlan(topo); err == nil || !strings.Contains(err.Error(), "10.77.0.0/16") {
		t.Fatalf("err = %v", err)
	}
	_ = netip.Addr{}
}
