// Package overlay assigns the overlay addresses of ONs: each ON gets one
// aligned IPv4 prefix of the manager's overlay pool, sized for its members,
// and each member one address in it (in member order, from the prefix's
// first host address), for vonlink's TUN interfaces. The prefix's last
// address is the ON's broadcast address.
//
// Allocation is the manager's (package reservation): a block is claimed in
// etcd in the same transaction that admits the ON, by the conditions Claim
// returns, and freed when the ON ends.
package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
)

// DefaultPool is the pool von-manager assigns from: the shared address space
// of RFC 6598, which no host on the Internet uses.
var DefaultPool = netip.MustParsePrefix("100.64.0.0/10")

// Block sizes: the smallest holds two members (network, 2 hosts, broadcast);
// the largest holds reservation.MaxMembers (64) and is checked against
// MaxMembers there.
const (
	MinBits = 2 // a /30
	MaxBits = 7 // a /25: 126 hosts
)

// ErrInvalid is a pool or a member count that cannot be used.
var ErrInvalid = errors.New("invalid overlay pool")

// Pool is an IPv4 prefix that ON prefixes are carved from.
type Pool struct{ p netip.Prefix }

// ParsePool parses a pool such as 100.64.0.0/10: IPv4, its address the
// prefix's first (no host bits set), and large enough for one block of the
// largest size.
func ParsePool(s string) (Pool, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return Pool{}, fmt.Errorf("%w: %q is not a prefix (want e.g. 100.64.0.0/10)", ErrInvalid, s)
	}
	return NewPool(p)
}

// NewPool checks p as ParsePool does.
func NewPool(p netip.Prefix) (Pool, error) {
	switch {
	case !p.Addr().Is4():
		return Pool{}, fmt.Errorf("%w: %s is not IPv4 (overlay addresses are IPv4 for now)", ErrInvalid, p)
	case p.Masked() != p:
		return Pool{}, fmt.Errorf("%w: %s has host bits set (did you mean %s?)", ErrInvalid, p, p.Masked())
	case p.Bits() > 32-MaxBits:
		return Pool{}, fmt.Errorf("%w: %s is smaller than one /%d, the prefix of the largest ON", ErrInvalid, p, 32-MaxBits)
	}
	return Pool{p}, nil
}

// Prefix is the pool.
func (p Pool) Prefix() netip.Prefix { return p.p }

// String is the pool in CIDR notation.
func (p Pool) String() string { return p.p.String() }

// Bits is the size (host bits) of the block for n members: room for n hosts
// besides the network and broadcast addresses.
func Bits(n int) (int, error) {
	if n < 1 {
		return 0, fmt.Errorf("%w: %d members", ErrInvalid, n)
	}
	b := max(bits.Len(uint(n+1)), MinBits)
	if b > MaxBits {
		return 0, fmt.Errorf("%w: %d members do not fit a /%d", ErrInvalid, n, 32-MaxBits)
	}
	return b, nil
}

// Pick returns the block of hostBits host bits that the random value r
// chooses in the pool (every aligned block equally likely).
func (p Pool) Pick(hostBits int, r uint64) netip.Prefix {
	slots := uint64(1) << (32 - p.p.Bits() - hostBits)
	base := u32(p.p.Addr()) + uint32(r%slots)<<hostBits
	return netip.PrefixFrom(addr(base), 32-hostBits)
}

// Contains says whether block lies in the pool.
func (p Pool) Contains(block netip.Prefix) bool {
	return block.Bits() >= p.p.Bits() && p.p.Contains(block.Addr())
}

// Members are the addresses of n members in block, in order: the block's
// first host address onwards.
func Members(block netip.Prefix, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	base := u32(block.Addr())
	for i := range out {
		out[i] = addr(base + uint32(i) + 1)
	}
	return out
}

// Broadcast is block's last address.
func Broadcast(block netip.Prefix) netip.Addr {
	return addr(u32(block.Addr()) | (1<<(32-block.Bits()) - 1))
}

// Claim says what must be true of the store for block to be free. A block
// taken is stored under Key(block): its base address, then its size, so keys
// sort by base. It is free when no block is based inside it (no key in
// [KeyFrom(From), KeyFrom(To))) and none of the larger blocks that would
// contain it is taken (no key Key(e) for e in Enclosing; those based at
// block's own base are inside the range).
type Claim struct {
	From, To  netip.Addr     // the bases that must hold no block: [From, To); To invalid: to the end of IPv4
	Enclosing []netip.Prefix // the larger blocks based below block that would contain it
}

// ClaimOf is the Claim of block.
func ClaimOf(block netip.Prefix) Claim {
	base, hb := u32(block.Addr()), 32-block.Bits()
	c := Claim{From: block.Addr(), To: addr(base + 1<<hb)}
	if base+1<<hb == 0 { // the block ends at 255.255.255.255
		c.To = netip.Addr{}
	}
	for b := hb + 1; b <= MaxBits; b++ {
		if e := base &^ (1<<b - 1); e != base {
			c.Enclosing = append(c.Enclosing, netip.PrefixFrom(addr(e), 32-b))
		}
	}
	return c
}

// KeyFrom is the text that every key of a block based at base starts with:
// eight hex digits, so that keys sort as addresses.
func KeyFrom(base netip.Addr) string { return fmt.Sprintf("%08x", u32(base)) }

// Key is the store key text of block: KeyFrom its base, then its prefix
// length ("64400014/30").
func Key(block netip.Prefix) string { return fmt.Sprintf("%s/%d", KeyFrom(block.Addr()), block.Bits()) }

func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
