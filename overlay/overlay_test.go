package overlay

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePool(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"100.64.0.0/10", ""}, {"10.77.200.0/25", ""},
		{"fd00::/64", "not IPv4"}, {"100.64.0.1/10", "host bits set"}, {"10.0.0.0/26", "smaller than one /25"}, {"bogus", "not a prefix"},
	} {
		_, err := ParsePool(c.in)
		if c.want == "" && err != nil || c.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("ParsePool(%q) = %v, want %q", c.in, err, c.want)
		}
	}
}

// A block holds its members besides the network and broadcast addresses.
func TestBits(t *testing.T) {
	for n, want := range map[int]int{1: 2, 2: 2, 3: 3, 6: 3, 7: 4, 14: 4, 15: 5, 62: 6, 63: 7, 64: 7, 126: 7} {
		if got, err := Bits(n); err != nil || got != want {
			t.Errorf("Bits(%d) = %d, %v; want %d", n, got, err, want)
		}
	}
	if _, err := Bits(127); !errors.Is(err, ErrInvalid) {
		t.Errorf("127 members: %v", err)
	}
}

func TestPickMembersBroadcast(t *testing.T) {
	p, _ := ParsePool("100.64.0.0/10")
	for r := uint64(0); r < 5000; r += 37 {
		b := p.Pick(3, r*2654435761)
		if b.Bits() != 29 || b.Masked() != b || !p.Contains(b) {
			t.Fatalf("Pick = %s: not an aligned /29 in the pool", b)
		}
		ms := Members(b, 6)
		if ms[0] != b.Addr().Next() || !b.Contains(ms[5]) || ms[5].Next() != Broadcast(b) {
			t.Fatalf("block %s: members %v, broadcast %s", b, ms, Broadcast(b))
		}
	}
	if got := Broadcast(netip.MustParsePrefix("100.64.0.8/30")); got != netip.MustParseAddr("100.64.0.11") {
		t.Errorf("broadcast %s", got)
	}
}

// A claim covers every block that would overlap: those based inside it, and
// the larger ones that would contain it — and no other (a small block based
// where a large one would be does not overlap).
func TestClaimOf(t *testing.T) {
	c := ClaimOf(netip.MustParsePrefix("100.64.0.20/30"))
	if c.From != netip.MustParseAddr("100.64.0.20") || c.To != netip.MustParseAddr("100.64.0.24") {
		t.Fatalf("range %s-%s", c.From, c.To)
	}
	var got []string
	for _, p := range c.Enclosing {
		got = append(got, p.String())
	}
	if want := "100.64.0.16/29 100.64.0.16/28 100.64.0.0/27 100.64.0.0/26 100.64.0.0/25"; strings.Join(got, " ") != want {
		t.Fatalf("enclosing %v, want %s", got, want)
	}
	if k := Key(netip.MustParsePrefix("100.64.0.20/30")); k != "64400014/30" || KeyFrom(netip.MustParseAddr("100.64.0.20")) != "64400014" {
		t.Errorf("key %s", k)
	}
}
