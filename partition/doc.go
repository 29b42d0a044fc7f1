// Package partition is the Linux data plane of one VON router: it turns a
// desired state (managed interfaces with their capacity, committed ONs with
// their per-interface rates, path pins and edge-policing members) into kernel
// state and keeps the kernel converged to it.
//
// Mechanisms (see docs/partition.md for the reasoning):
//
//   - HTB partitions: on every managed interface a root HTB qdisc with handle
//     Major: (default 0x7656), class Major:1 at link capacity, best effort in
//     Major:2 (rate = capacity − Σ reserved, may borrow up to capacity) and one
//     leaf class per ON with rate = ceil = its reservation. The ON's class minor
//     comes from a router-wide allocator that is persisted, so one minor names
//     the ON on every interface.
//   - Classification: an nftables map (table ip von) from ON id to
//     skb->priority = Major:minor, set in postrouting for packets with the ON
//     DSCP, UDP and the ON port; HTB honours skb->priority when it names one of
//     its leaf classes. One hash lookup per packet, whatever the number of ONs.
//   - Path pinning: in prerouting an nftables map (ON id . path index . dst)
//     → fwmark; one ip rule per distinct (next hop, egress) pair sends that mark
//     to a route table holding one default route via the next hop.
//   - Edge policing: on access interfaces an ON packet whose (iif . ON id .
//     saddr) is not in the member set is re-marked to DSCP 0 (or dropped),
//     so it gets no reserved service here or downstream.
//
// Router.Apply converges the whole state idempotently and rolls back a change
// that fails midway; Router.Observe reads per-ON counters.
package partition
