package partition

import (
	"context"
	"fmt"
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
