package vonlink

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header facts vonlink needs.
const (
	ipv4MinHeader = 20
	protoIGMP     = 2
)

// ipv4Header is what vonlink reads of a packet.
type ipv4Header struct {
	src, dst netip.Addr
	proto    uint8
}

// parseIPv4 reads the header of an IPv4 packet: version 4, a header length that
// fits, a total length equal to the packet's (a TUN hands one whole packet per
// read). Anything else is not a packet vonlink carries.
func parseIPv4(b []byte) (ipv4Header, bool) {
	if len(b) < ipv4MinHeader || b[0]>>4 != 4 {
		return ipv4Header{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < ipv4MinHeader || ihl > len(b) || total != len(b) {
		return ipv4Header{}, false
	}
	return ipv4Header{
		src:   netip.AddrFrom4([4]byte(b[12:16])),
		dst:   netip.AddrFrom4([4]byte(b[16:20])),
		proto: b[9],
	}, true
}

// dest is where a packet read from the TUN goes.
type dest int

const (
	destDrop   dest = iota // nowhere: not for the VON
	destMember             // the one member that owns the address
	destAll                // every member: multicast or broadcast
)

var (
	limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})
	multicastNet     = netip.MustParsePrefix("224.0.0.0/4")
)

// classify says where a packet to dst goes on an ON of prefix p whose broadcast
// address is bcast.
func classify(dst netip.Addr, p netip.Prefix, bcast netip.Addr) dest {
	switch {
	case dst == bcast, dst == limitedBroadcast, multicastNet.Contains(dst):
		return destAll
	case p.Contains(dst):
		return destMember
	}
	return destDrop
}

// acceptable says whether a packet that arrived from the VON may be written to
// the TUN of the member at self: for it, or for everyone.
func acceptable(dst, self netip.Addr, bcast netip.Addr) bool {
	return dst == self || dst == bcast || dst == limitedBroadcast || multicastNet.Contains(dst)
}
