package partition

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// sample is a desired state on pairNS: a0 and b0 managed, h0 access.
func sample() Desired {
	return Desired{
		Interfaces: []Interface{{Name: "a0", Capacity: 100e6}, {Name: "b0", Capacity: 50e6}},
		Access:     []string{"h0"},
		ONs: []ON{
			{ID: 0xA1B2C3D4, Rates: map[string]uint64{"a0": 10e6, "b0": 10e6},
				Pins: []Pin{
					{Path: 0, Dst: mustAddr("10.77.5.1"), NextHop: mustAddr("10.77.0.2"), Egress: "a0"},
					{Path: 1, Dst: mustAddr("10.77.5.1"), NextHop: mustAddr("10.77.0.6"), Egress: "b0"},
				},
				Policing: []Policing{{Access: "h0", Members: []netip.Addr{mustAddr("10.77.0.10")}}},
			},
			{ID: 7, Rates: map[string]uint64{"a0": 5e6}},
		},
	}
}

func newRouter(t *testing.T, ns string, cfg Config) *Router {
	t.Helper()
	cfg.Netns = ns
	r, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestApplyConvergesIdempotentAndRemoves(t *testing.T) {
	ctx := context.Background()
	ns, _ := pairNS(t)
	pristine := snapshot(t, ns)
	dir := t.TempDir()
	r := newRouter(t, ns, Config{StateDir: dir})

	if err := r.Apply(ctx, sample()); err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, ns)
	for _, want := range []string{
		"qdisc htb 7656: dev a0 root", "class htb 7656:1 root rate 100Mbit ceil 100Mbit",
		"class htb 7656:2 parent 7656:1 prio 1 rate 85Mbit ceil 100Mbit",
		"rate 10Mbit ceil 10Mbit", "rate 5Mbit ceil 5Mbit",
		"fwmark 0x76560000 lookup 17400", "fwmark 0x76560001 lookup 17401",
		"default via 10.77.0.2 dev a0 table 17400", "default via 10.77.0.6 dev b0 table 17401",
		"table ip von", "meta priority set",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("after Apply, missing %q in:\n%s", want, got)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// Re-apply is a no-op: same objects, same nft rule handles.
	handles := nsRun(t, ns, "nft", "-a", "list", "ruleset")
	if err := r.Apply(ctx, sample()); err != nil {
		t.Fatal(err)
	}
	if s := snapshot(t, ns); s != got {
		t.Fatalf("re-apply changed state:\n%s\nvs\n%s", s, got)
	}
	if h := nsRun(t, ns, "nft", "-a", "list", "ruleset"); h != handles {
		t.Fatalf("re-apply rebuilt nftables:\n%s\nvs\n%s", h, handles)
	}
	// A restarted router (new process, same state dir) keeps the minors and
	// its first Apply is a no-op too.
	r2 := newRouter(t, ns, Config{StateDir: dir})
	for id, m := range r.alloc.byID {
		if m2, ok := r2.alloc.minor(id); !ok || m2 != m {
			t.Fatalf("restart moved ON %d: %d → %d", id, m, m2)
		}
	}
	if err := r2.Apply(ctx, sample()); err != nil {
		t.Fatal(err)
	}
	if s := snapshot(t, ns); s != got {
		t.Fatalf("apply after restart changed state:\n%s\nvs\n%s", s, got)
	}
	// Without a state dir, the kernel's classes map restores the minors.
	r3 := newRouter(t, ns, Config{})
	for id, m := range r.alloc.byID {
		if m2, ok := r3.alloc.minor(id); !ok || m2 != m {
			t.Fatalf("kernel recovery moved ON %d: %d → %d", id, m, m2)
		}
	}
	// Remove one ON (r3 never applied: reconstructs from the kernel).
	if err := r3.Remove(ctx, 7); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, ns)
	if strings.Contains(after, "rate 5Mbit ceil 5Mbit") || !strings.Contains(after, "rate 10Mbit ceil 10Mbit") {
		t.Fatalf("Remove(7) left wrong classes:\n%s", after)
	}
	if !strings.Contains(after, "rate 90Mbit ceil 100Mbit") {
		t.Fatalf("best effort did not grow back after Remove:\n%s", after)
	}
	if err := r.Remove(ctx, 0xA1B2C3D4); err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(ctx, Desired{}); err != nil {
		t.Fatal(err)
	}
	if s := snapshot(t, ns); s != pristine {
		t.Fatalf("after removing everything:\n%s\nwant pristine:\n%s", s, pristine)
	}
}

func TestDriftIsRepaired(t *testing.T) {
	ctx := context.Background()
	ns, _ := pairNS(t)
	r := newRouter(t, ns, Config{})
	if err := r.Apply(ctx, sample()); err != nil {
		t.Fatal(err)
	}
	good := snapshot(t, ns)
	m, _ := r.alloc.minor(7)
	cls := "7656:" + strings.TrimLeft(strings.ToLower(hex16(m)), "0")
	drifts := [][]string{
		{"tc", "class", "del", "dev", "a0", "classid", cls},
		{"tc", "class", "change", "dev", "b0", "parent", "7656:1", "classid", "7656:2", "htb", "rate", "1mbit", "ceil", "2mbit"},
		{"tc", "class", "add", "dev", "a0", "parent", "7656:1", "classid", "7656:fffe", "htb", "rate", "1mbit"},
		{"ip", "rule", "del", "pref", "17401"},
		{"ip", "route", "del", "default", "table", "17400"},
		{"ip", "route", "add", "10.77.99.0/24", "via", "10.77.0.2", "table", "17400"},
		{"nft", "delete", "element", "ip", "von", "classes", "{ 7 }"},
		{"nft", "flush", "chain", "ip", "von", "on_in"},
		{"nft", "delete", "table", "ip", "von"},
		{"tc", "qdisc", "del", "dev", "b0", "root"},
	}
	for _, d := range drifts {
		nsRun(t, ns, d...)
		if err := r.Apply(ctx, sample()); err != nil {
			t.Fatalf("after %v: %v", d, err)
		}
		if s := snapshot(t, ns); s != good {
			t.Fatalf("drift %v not repaired:\n%s\nwant:\n%s", d, s, good)
		}
	}
}

func hex16(v uint16) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[v>>12], digits[v>>8&15], digits[v>>4&15], digits[v&15]})
}

func TestForeignQdiscAndRollback(t *testing.T) {
	ctx := context.Background()
	ns, _ := pairNS(t)
	nsRun(t, ns, "tc", "qdisc", "add", "dev", "b0", "root", "handle", "1:", "tbf", "rate", "10mbit", "burst", "32k", "latency", "50ms")
	before := snapshot(t, ns)
	r := newRouter(t, ns, Config{})
	err := r.Apply(ctx, sample())
	if !errors.Is(err, ErrForeignQdisc) || !errors.Is(err, ErrRolledBack) {
		t.Fatalf("Apply over foreign qdisc: %v", err)
	}
	if s := snapshot(t, ns); s != before {
		t.Fatalf("failed Apply left changes:\n%s\nwant:\n%s", s, before)
	}
	r.cfg.ForceRootQdisc = true
	if err := r.Apply(ctx, sample()); err != nil {
		t.Fatal(err)
	}
	good := snapshot(t, ns)
	// A change that fails late (unreachable next hop) undoes its early steps.
	bad := sample()
	bad.ONs = append(bad.ONs, ON{ID: 99, Rates: map[string]uint64{"a0": 1e6},
		Pins: []Pin{{Path: 0, Dst: mustAddr("10.77.5.9"), NextHop: mustAddr("10.77.44.4"), Egress: "a0"}}})
	bad.ONs[0].Rates["a0"] = 20e6
	if err := r.Apply(ctx, bad); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("Apply with unreachable next hop: %v", err)
	}
	if s := snapshot(t, ns); s != good {
		t.Fatalf("rollback incomplete:\n%s\nwant:\n%s", s, good)
	}
	if _, ok := r.alloc.minor(99); ok {
		t.Fatal("allocation of the failed change kept")
	}
}

func TestObserveAndValidation(t *testing.T) {
	ctx := context.Background()
	ns, _ := pairNS(t)
	r := newRouter(t, ns, Config{})
	if err := r.Apply(ctx, Desired{Interfaces: []Interface{{Name: "nope0", Capacity: 1e6}}}); !errors.Is(err, ErrNoSuchInterface) {
		t.Fatalf("missing interface: %v", err)
	}
	if err := r.Apply(ctx, sample()); err != nil {
		t.Fatal(err)
	}
	obs, err := r.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a0, ok := obs.Interfaces["a0"]
	if !ok || a0.Capacity != 100e6 || len(a0.ONs) != 2 {
		t.Fatalf("observed a0 = %+v", a0)
	}
	if _, ok := obs.Interfaces["b0"].ONs[0xA1B2C3D4]; !ok {
		t.Fatalf("observed b0 = %+v", obs.Interfaces["b0"])
	}
}
