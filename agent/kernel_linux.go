package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vonproject/von/partition"
)

// kernel reads interfaces and root qdiscs of the managed namespace.
//
// The listing is cached: it costs a few netlink dumps per interface, and
// every Prepare and Commit needs it. A subscription to the namespace's link
// and address events drops the cache on any change; without one (it failed
// or broke) nothing is cached. Root qdiscs raise no such event: invalidate
// drops the cache after the agent's own changes and on each reconcile.
type kernel struct {
	h     *vnl.Handle
	ns    netns.NsHandle
	sysfs bool // the agent's own namespace: /sys/class/net speaks for it

	mu      sync.Mutex
	cache   map[string]ifaceInfo // nil: read afresh
	gen     uint64               // bumped by every event and invalidate
	watched bool                 // the subscription is live
	sock    *nl.NetlinkSocket
	wg      sync.WaitGroup
}

func openKernel(nsName string) (*kernel, error) {
	k := &kernel{ns: -1}
	var err error
	if nsName == "" {
		k.sysfs = true
		if k.h, err = vnl.NewHandle(); err != nil {
			return nil, fmt.Errorf("%w: netlink: %w", ErrUnavailable, err)
		}
		k.watch()
		return k, nil
	}
	if k.ns, err = netns.GetFromName(nsName); err != nil {
		return nil, fmt.Errorf("%w: open network namespace %q: %w", ErrInvalid, nsName, err)
	}
	if k.h, err = vnl.NewHandleAt(k.ns); err != nil {
		k.ns.Close()
		return nil, fmt.Errorf("%w: netlink in namespace %q: %w", ErrUnavailable, nsName, err)
	}
	k.watch()
	return k, nil
}

// watch subscribes to the namespace's link, address and traffic-control
// events; on failure the listing is simply never cached.
func (k *kernel) watch() {
	var (
		sock *nl.NetlinkSocket
		err  error
	)
	groups := []uint{unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR, unix.RTNLGRP_TC}
	if k.ns >= 0 {
		cur, cerr := netns.Get()
		if cerr != nil {
			return
		}
		sock, err = nl.SubscribeAt(k.ns, cur, unix.NETLINK_ROUTE, groups...)
		cur.Close()
	} else {
		sock, err = nl.Subscribe(unix.NETLINK_ROUTE, groups...)
	}
	if err != nil {
		return
	}
	k.sock, k.watched = sock, true
	k.wg.Go(func() {
		for {
			msgs, _, err := sock.Receive()
			if err == nil {
				if slices.ContainsFunc(msgs, changesListing) {
					k.invalidate()
				}
				continue
			}
			k.invalidate()
			if errors.Is(err, unix.ENOBUFS) {
				continue // events were lost, not the subscription
			}
			k.mu.Lock()
			k.watched = false // closed, or broken: stop caching
			k.mu.Unlock()
			return
		}
	})
}

// changesListing says whether an event can change the listing: any link or
// address event, and root qdiscs coming and going — not the stream of class
// and filter events the agent's own changes raise.
func changesListing(m syscall.NetlinkMessage) bool {
	switch m.Header.Type {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK, unix.RTM_NEWADDR, unix.RTM_DELADDR:
		return true
	case unix.RTM_NEWQDISC, unix.RTM_DELQDISC:
		// struct tcmsg: family, pad (4 bytes), ifindex, handle, parent, info.
		return len(m.Data) < 16 || binary.NativeEndian.Uint32(m.Data[12:16]) == vnl.HANDLE_ROOT
	}
	return false
}

// invalidate drops the cached listing.
func (k *kernel) invalidate() {
	k.mu.Lock()
	k.cache = nil
	k.gen++
	k.mu.Unlock()
}

func (k *kernel) close() {
	if k.sock != nil {
		k.sock.Close()
		k.wg.Wait()
	}
	if k.h != nil {
		k.h.Close()
	}
	if k.ns >= 0 {
		_ = k.ns.Close()
	}
}

// interfaces returns the listing, from the cache when it is still good. The
// map is shared: callers must not change it.
func (k *kernel) interfaces() (map[string]ifaceInfo, error) {
	k.mu.Lock()
	if k.cache != nil {
		c := k.cache
		k.mu.Unlock()
		return c, nil
	}
	gen := k.gen
	k.mu.Unlock()
	out, err := k.list()
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	if k.watched && k.gen == gen {
		k.cache = out // no event arrived while listing
	}
	k.mu.Unlock()
	return out, nil
}

// list lists every interface with addresses, state and root qdisc.
func (k *kernel) list() (map[string]ifaceInfo, error) {
	links, err := k.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("%w: list interfaces: %w", ErrUnavailable, err)
	}
	out := map[string]ifaceInfo{}
	for _, l := range links {
		a := l.Attrs()
		info := ifaceInfo{
			Name: a.Name, MTU: uint32(a.MTU),
			Up: a.Flags&net.FlagUp != 0 && (a.OperState == vnl.OperUp || a.OperState == vnl.OperUnknown),
		}
		if addrs, err := k.h.AddrList(l, vnl.FAMILY_ALL); err == nil {
			for _, ad := range addrs {
				if ad.IPNet != nil {
					info.Addrs = append(info.Addrs, ad.IPNet.String())
				}
			}
		}
		if qs, err := k.h.QdiscList(l); err == nil {
			for _, q := range qs {
				qa := q.Attrs()
				if qa.Parent != vnl.HANDLE_ROOT || qa.Handle == 0 {
					continue // the kernel's default root qdisc has handle 0
				}
				if q.Type() == "htb" && qa.Handle == uint32(partition.DefaultQdiscMajor)<<16 {
					continue // ours
				}
				info.Foreign = fmt.Sprintf("%s %x:", q.Type(), qa.Handle>>16)
			}
		}
		if k.sysfs {
			if b, err := os.ReadFile("/sys/class/net/" + a.Name + "/speed"); err == nil {
				if mbit, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && mbit > 0 {
					info.Speed = uint64(mbit) * 1e6
				}
			}
		}
		out[a.Name] = info
	}
	return out, nil
}
