// Package vonlink carries unmodified IP traffic over a VON: it joins the VON as a
// member (package sdk), creates a TUN interface holding the member's overlay
// address (the ON's prefix routed into it, its MTU the largest packet a VON
// message can carry), and moves packets between the two. A unicast packet goes to
// the member that owns its destination address; IPv4 multicast and broadcast go to
// every member. Each packet is one VON message, so it is sealed under the group
// key, sent on both paths of a redundant ON and delivered once — ssh, iperf3 or a
// database replica get the ON's reserved bandwidth and its loss-free failover
// without knowing it.
//
// What arrives is written to the TUN only if its source address is the overlay
// address of the member that sealed it, so no member can pose as another. An
// nftables table (vonlink_<dev>) keeps the underlay out: packets for the ON's
// prefix that arrive on any other interface are dropped, and nothing is forwarded
// into or out of the VON's interface.
//
// Linux only (TUN, netlink, nftables); elsewhere Up returns ErrUnsupported.
// Creating the interface needs CAP_NET_ADMIN. See docs/vonlink.md.
package vonlink
