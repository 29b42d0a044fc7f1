package agent

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vonproject/von/partition"
)

// kernel reads interfaces and root qdiscs of the managed namespace.
type kernel struct {
	h     *vnl.Handle
	ns    netns.NsHandle
	sysfs bool // the agent's own namespace: /sys/class/net speaks for it
}

func openKernel(nsName string) (*kernel, error) {
	k := &kernel{ns: -1}
	var err error
	if nsName == "" {
		k.sysfs = true
		if k.h, err = vnl.NewHandle(); err != nil {
			return nil, fmt.Errorf("%w: netlink: %w", ErrUnavailable, err)
		}
		return k, nil
	}
	if k.ns, err = netns.GetFromName(nsName); err != nil {
		return nil, fmt.Errorf("%w: open network namespace %q: %w", ErrInvalid, nsName, err)
	}
	if k.h, err = vnl.NewHandleAt(k.ns); err != nil {
		k.ns.Close()
		return nil, fmt.Errorf("%w: netlink in namespace %q: %w", ErrUnavailable, nsName, err)
	}
	return k, nil
}

func (k *kernel) close() {
	if k.h != nil {
		k.h.Close()
	}
	if k.ns >= 0 {
		_ = k.ns.Close()
	}
}

// interfaces lists every interface with addresses, state and root qdisc.
func (k *kernel) interfaces() (map[string]ifaceInfo, error) {
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
