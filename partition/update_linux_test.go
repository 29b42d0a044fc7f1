package partition

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Update writes only the difference from what it installed last; after every
// step of a sequence of changes the kernel must hold exactly what a full
// Apply of the same state leaves.
func TestUpdateMatchesApply(t *testing.T) {
	ctx := context.Background()
	ns, _ := pairNS(t)
	r := newRouter(t, ns, Config{})
	pin := func(nh, egress string) Pin {
		return Pin{Path: 0, Dst: mustAddr("10.77.5.9"), NextHop: mustAddr(nh), Egress: egress}
	}
	base := sample()
	steps := []struct {
		name string
		d    Desired
	}{
		{"first state", base},
		{"one ON added", with(base, ON{ID: 42, Rates: map[string]uint64{"a0": 3e6}, Pins: []Pin{pin("10.77.0.2", "a0")}})},
		{"its rate changed and a new next hop", with(base, ON{ID: 42, Rates: map[string]uint64{"a0": 4e6, "b0": 1e6}, Pins: []Pin{pin("10.77.0.6", "b0")}})},
		{"a policed member added", with(base, ON{ID: 42, Rates: map[string]uint64{"a0": 4e6},
			Policing: []Policing{{Access: "h0", Members: []netip.Addr{mustAddr("10.77.0.21")}}}})},
		{"it is removed", base},
		{"another removed", Desired{Interfaces: base.Interfaces, Access: base.Access, ONs: base.ONs[:1]}},
		{"an interface dropped", Desired{Interfaces: base.Interfaces[:1], Access: base.Access,
			ONs: []ON{{ID: 9, Rates: map[string]uint64{"a0": 1e6}}}}},
		{"everything removed", Desired{}},
		{"back again", base},
	}
	for _, s := range steps {
		if err := r.Update(ctx, s.d); err != nil {
			t.Fatalf("%s: Update: %v", s.name, err)
		}
		settled(r)
		got := snapshot(t, ns)
		if err := r.Apply(ctx, s.d); err != nil {
			t.Fatalf("%s: Apply: %v", s.name, err)
		}
		if want := snapshot(t, ns); got != want {
			t.Fatalf("%s: Update left\n%s\nApply of the same state leaves\n%s", s.name, got, want)
		}
	}
}

// Update trusts its own record of classes and nftables entries (drift behind
// its back waits for the next Apply), but not of the pin routes, which the
// kernel flushes when an interface goes down and up again.
func TestUpdateNoticesInterfaceChanges(t *testing.T) {
	ctx := context.Background()
	ns, _ := pairNS(t)
	r := newRouter(t, ns, Config{})
	d := sample()
	if err := r.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, ns)
	nsRun(t, ns, "ip", "link", "set", "a0", "down")
	nsRun(t, ns, "ip", "link", "set", "a0", "up")
	if s := snapshot(t, ns); !strings.Contains(want, "default via 10.77.0.2 dev a0 table 17400") || strings.Contains(s, "default via 10.77.0.2 dev a0 table 17400") {
		t.Fatalf("the test expects the kernel to flush the pin route on link down:\n%s", s)
	}
	// a0 went down and up again between two calls: the next Update restores
	// the flushed route along with its own change.
	more := with(d, ON{ID: 42, Rates: map[string]uint64{"b0": 1e6}})
	if err := r.Update(ctx, more); err != nil {
		t.Fatal(err)
	}
	settled(r)
	got := snapshot(t, ns)
	if err := r.Apply(ctx, more); err != nil {
		t.Fatal(err)
	}
	if want := snapshot(t, ns); got != want {
		t.Fatalf("after the link flap, Update left\n%s\nApply leaves\n%s", got, want)
	}
	if err := r.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	want = snapshot(t, ns)
	m, _ := r.alloc.minor(7)
	nsRun(t, ns, "tc", "class", "del", "dev", "a0", "classid", fmt.Sprintf("7656:%x", m))
	if err := r.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	if s := snapshot(t, ns); s == want {
		t.Fatal("the class deleted behind the Router's back is back after Update: the test cannot tell Update from Apply")
	}
	if err := r.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	if s := snapshot(t, ns); s != want {
		t.Fatalf("Apply did not repair the drift:\n%s\nwant\n%s", s, want)
	}
}

// settled waits out the deletions Update defers (they go out a moment later).
func settled(r *Router) {
	r.mu.Lock()
	r.flushDeferred()
	r.mu.Unlock()
}

func with(d Desired, on ON) Desired {
	d.ONs = append(append([]ON{}, d.ONs...), on)
	return d
}

// Removing an ON defers the deletion of its nftables entries (the kernel
// makes such a transaction wait for an RCU grace period); they go out with
// the next change, so an ON id that comes back at once meets none of its old
// entries — here a member it no longer has — and shortly after by themselves.
func TestUpdateDefersDeletions(t *testing.T) {
	ctx := context.Background()
	ns, _ := pairNS(t)
	r := newRouter(t, ns, Config{})
	base := sample()
	on := func(member string) ON {
		return ON{ID: 42, Rates: map[string]uint64{"a0": 1e6}, Policing: []Policing{{Access: "h0", Members: []netip.Addr{mustAddr(member)}}}}
	}
	if err := r.Apply(ctx, with(base, on("10.77.0.21"))); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.holdFlush = true
	r.mu.Unlock()
	if err := r.Update(ctx, base); err != nil {
		t.Fatal(err)
	}
	if s := nsRun(t, ns, "nft", "list", "set", "ip", "von", "members"); !strings.Contains(s, "10.77.0.21") {
		t.Fatalf("the removed ON's member was deleted at once; the test cannot see deferral:\n%s", s)
	}
	if err := r.Update(ctx, with(base, on("10.77.0.22"))); err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, ns)
	if err := r.Apply(ctx, with(base, on("10.77.0.22"))); err != nil {
		t.Fatal(err)
	}
	if want := snapshot(t, ns); got != want || strings.Contains(got, "10.77.0.21") {
		t.Fatalf("the ON came back with its old entries:\n%s\nwant\n%s", got, want)
	}
	r.mu.Lock()
	r.holdFlush = false
	r.mu.Unlock()
	if err := r.Update(ctx, base); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for strings.Contains(nsRun(t, ns, "nft", "list", "set", "ip", "von", "members"), "10.77.0.22") {
		if time.Now().After(deadline) {
			t.Fatal("the deferred deletion never went out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A long random sequence of small changes, each an Update of the last: the
// patches (only the changed ONs written) must leave, every few steps, what a
// full Apply of the same state leaves.
func TestPatchMatchesApply(t *testing.T) {
	ctx := context.Background()
	ns, _ := pairNS(t)
	r := newRouter(t, ns, Config{})
	rnd := rand.New(rand.NewPCG(7, 11))
	hops := []struct{ nh, egress string }{{"10.77.0.2", "a0"}, {"10.77.0.6", "b0"}}
	randomON := func(id uint32) ON {
		on := ON{ID: id, Rates: map[string]uint64{}}
		for _, ifc := range []string{"a0", "b0"} {
			if rnd.IntN(3) > 0 {
				on.Rates[ifc] = uint64(1+rnd.IntN(10)) * 100e3
			}
		}
		for path := range uint8(2) {
			if rnd.IntN(2) == 0 {
				h := hops[rnd.IntN(2)]
				on.Pins = append(on.Pins, Pin{Path: path, Dst: mustAddr(fmt.Sprintf("10.77.5.%d", 1+rnd.IntN(3))), NextHop: mustAddr(h.nh), Egress: h.egress})
			}
		}
		if rnd.IntN(3) == 0 {
			pol := Policing{Access: "h0"}
			for range 1 + rnd.IntN(2) {
				pol.Members = append(pol.Members, mustAddr(fmt.Sprintf("10.77.0.%d", 10+rnd.IntN(4))))
			}
			on.Policing = []Policing{pol}
		}
		return on
	}
	d := Desired{Interfaces: []Interface{{Name: "a0", Capacity: 100e6}, {Name: "b0", Capacity: 50e6}}, Access: []string{"h0"}}
	for id := range uint32(30) {
		d.ONs = append(d.ONs, randomON(100+id))
	}
	// Both pin slots in use from the start, so the slots (and marks) stay.
	d.ONs[0].Pins = []Pin{{Path: 0, Dst: mustAddr("10.77.5.9"), NextHop: mustAddr("10.77.0.2"), Egress: "a0"},
		{Path: 1, Dst: mustAddr("10.77.5.9"), NextHop: mustAddr("10.77.0.6"), Egress: "b0"}}
	if err := r.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	nextID := uint32(200)
	for step := range 60 {
		ons := append([]ON{}, d.ONs...)
		for range 1 + rnd.IntN(3) {
			switch k := rnd.IntN(3); {
			case k == 0 || len(ons) < 5:
				ons = append(ons, randomON(nextID))
				nextID++
			case k == 1:
				i := 1 + rnd.IntN(len(ons)-1)
				ons = append(ons[:i:i], ons[i+1:]...)
			default:
				i := 1 + rnd.IntN(len(ons)-1)
				ons[i] = randomON(ons[i].ID)
			}
		}
		rnd.Shuffle(len(ons), func(i, j int) { ons[i], ons[j] = ons[j], ons[i] })
		d.ONs = ons
		if err := r.Update(ctx, d); err != nil {
			t.Fatalf("step %d: Update: %v", step, err)
		}
		if step%3 != 2 {
			continue
		}
		settled(r)
		got := snapshot(t, ns)
		if err := r.Apply(ctx, d); err != nil {
			t.Fatalf("step %d: Apply: %v", step, err)
		}
		if want := snapshot(t, ns); got != want {
			t.Fatalf("step %d: the patched Updates left\n%s\nApply of the same state leaves\n%s", step, got, want)
		}
	}
	if r.patched.tc < 30 || r.patched.nft < 30 {
		t.Fatalf("only %d HTB and %d nftables converges were patches: the test does not exercise them", r.patched.tc, r.patched.nft)
	}
}
