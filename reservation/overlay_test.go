package reservation

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vonproject/von/overlay"
)

// Every ON gets its own block of the overlay pool, its members the block's
// first addresses in member order; a block taken is recorded, and the ON's
// end frees it (the ended record still shows what it had).
func TestOverlayPrefixesUniqueAndFreed(t *testing.T) {
	_, cli := newEtcd(t)
	pool, err := overlay.ParsePool("10.77.200.0/25") // 32 blocks of 2 members
	if err != nil {
		t.Fatal(err)
	}
	m := startManager(t, cli, Config{OverlayPool: pool})
	applyYAML(t, m, direct)
	ctx := context.Background()
	var blocks []netip.Prefix
	for i := range 12 {
		r, err := m.Reserve(ctx, ReserveRequest{Name: fmt.Sprintf("on%d", i), Members: []string{"h1", "h2"}, Rate: 1_000_000})
		if err != nil {
			t.Fatal(err)
		}
		b, err := netip.ParsePrefix(r.GetOverlayPrefix())
		if err != nil || b.Bits() != 30 || !pool.Contains(b) {
			t.Fatalf("%s: overlay prefix %q, want a /30 of %s", r.GetName(), r.GetOverlayPrefix(), pool)
		}
		for _, o := range blocks {
			if o.Overlaps(b) {
				t.Fatalf("%s got %s, which overlaps %s", r.GetName(), b, o)
			}
		}
		blocks = append(blocks, b)
		ms := r.GetMembers()
		if ms[0].GetOverlayAddress() != b.Addr().Next().String() || ms[1].GetOverlayAddress() != b.Addr().Next().Next().String() {
			t.Fatalf("%s members %v in %s", r.GetName(), ms, b)
		}
		if got, _, _ := m.store.Get(ctx, r.GetName()); got.GetOverlayPrefix() != b.String() {
			t.Fatalf("stored record has overlay prefix %q, want %s", got.GetOverlayPrefix(), b)
		}
	}
	taken := func() int {
		resp, err := cli.Get(ctx, m.store.overlayPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return int(resp.Count)
	}
	if n := taken(); n != 12 {
		t.Fatalf("%d blocks recorded taken, want 12", n)
	}
	if _, err := m.Release(ctx, "on3"); err != nil {
		t.Fatal(err)
	}
	if n := taken(); n != 11 {
		t.Fatalf("after a release %d blocks taken, want 11", n)
	}
	if r, _, _ := m.store.Get(ctx, "on3"); r.GetOverlayPrefix() != blocks[3].String() {
		t.Errorf("the released record shows overlay prefix %q, want %s", r.GetOverlayPrefix(), blocks[3])
	}
}

// A block is free unless one taken overlaps it: one based inside it, or a
// larger one containing it; a smaller one based where a larger one would be
// is no obstacle.
func TestOverlayClaimConflicts(t *testing.T) {
	_, cli := newEtcd(t)
	s := NewStore(cli, DefaultPrefix)
	ctx := context.Background()
	want := netip.MustParsePrefix("10.77.200.20/30")
	for _, c := range []struct {
		taken string
		free  bool
	}{
		{"10.77.200.0/30", true}, {"10.77.200.16/30", true}, {"10.77.200.24/30", true}, {"10.77.200.0/28", true},
		{"10.77.200.20/30", false}, {"10.77.200.16/29", false}, {"10.77.200.16/28", false}, {"10.77.200.0/25", false},
	} {
		taken := netip.MustParsePrefix(c.taken)
		if _, err := cli.Put(ctx, s.overlayKey(taken), "other"); err != nil {
			t.Fatal(err)
		}
		cmps, put := s.claimBlock(want, "mine")
		tr, err := cli.Txn(ctx).If(cmps...).Then(put).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if tr.Succeeded != c.free {
			t.Errorf("with %s taken, claiming %s succeeded %v, want %v", taken, want, tr.Succeeded, c.free)
		}
		if _, err := cli.Delete(ctx, s.overlayPrefix(), clientv3.WithPrefix()); err != nil {
			t.Fatal(err)
		}
	}
}
