//go:build linux

package vonlink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vonproject/von/internal/nsexec"
	"github.com/vonproject/von/sdk"
	"github.com/vonproject/von/seal"
)

func supported() error { return nil }

// VON headers on the underlay: what a packet carried in a VON message grows by.
const underlayOverhead = 20 + 8 + seal.Overhead // IPv4, UDP, ON header and tag

type tunDevice struct {
	f     *os.File
	name  string
	mtu   int
	netns string
}

func (d *tunDevice) Read(b []byte) (int, error)  { return d.f.Read(b) }
func (d *tunDevice) Write(b []byte) (int, error) { return d.f.Write(b) }
func (d *tunDevice) Name() string                { return d.name }
func (d *tunDevice) MTU() int                    { return d.mtu }

// Close closes the TUN (the kernel deletes a non-persistent interface with its
// addresses and routes when its last file closes) and deletes the guard table.
func (d *tunDevice) Close() error {
	err := d.f.Close()
	gerr := nsexec.Do(d.netns, func() error { return deleteGuard(d.name) })
	return errors.Join(err, gerr)
}

// openDevice creates and configures the interface in cfg.Netns.
func openDevice(cfg deviceConfig) (device, error) {
	d := &tunDevice{netns: cfg.Netns}
	err := nsexec.Do(cfg.Netns, func() error {
		f, name, err := createTUN(cfg.Name)
		if err != nil {
			return err
		}
		d.f, d.name = f, name
		if err := configure(d, cfg); err != nil {
			d.f.Close()
			_ = deleteGuard(d.name)
			return err
		}
		return nil
	})
	if err != nil {
		where := ""
		if cfg.Netns != "" {
			where = " in network namespace " + cfg.Netns
		}
		if errors.Is(err, ErrDevice) || errors.Is(err, ErrConfig) {
			return nil, fmt.Errorf("%w%s", err, where)
		}
		return nil, fmt.Errorf("%w %s%s: %w", ErrDevice, cfg.Name, where, err)
	}
	return d, nil
}

// createTUN opens /dev/net/tun and attaches it to a new interface name (IFF_TUN:
// IP packets; IFF_NO_PI: no packet-information prefix). Non-blocking, so reads
// go through Go's poller and Close interrupts them.
func createTUN(name string) (*os.File, string, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, "", fmt.Errorf("%w: open /dev/net/tun: %w (is the tun module loaded? vonlink needs CAP_NET_ADMIN)", ErrDevice, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("%w: interface name %q: %w", ErrConfig, name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.EBUSY):
			return nil, "", fmt.Errorf("%w: %s is in use (another vonlink?)", ErrDevice, name)
		case errors.Is(err, unix.EINVAL):
			return nil, "", fmt.Errorf("%w: an interface named %s exists and is not a TUN; choose another --dev", ErrDevice, name)
		case errors.Is(err, unix.EPERM):
			return nil, "", fmt.Errorf("%w: creating %s: %w (vonlink needs CAP_NET_ADMIN)", ErrDevice, name, err)
		}
		return nil, "", fmt.Errorf("%w: creating %s: %w", ErrDevice, name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), ifr.Name(), nil
}

// configure sets the MTU, the address (which routes the ON's prefix into the
// interface), the broadcast address and the guard, and brings the interface up.
// It runs in the target namespace.
func configure(d *tunDevice, cfg deviceConfig) error {
	link, err := vnl.LinkByName(d.name)
	if err != nil {
		return err
	}
	d.mtu = cfg.MTU
	if d.mtu == 0 {
		d.mtu = derivedMTU(cfg.Underlay)
	}
	if err := vnl.LinkSetMTU(link, d.mtu); err != nil {
		return fmt.Errorf("set MTU %d: %w", d.mtu, err)
	}
	// Drop the underlay's way in before the address makes the prefix local.
	if err := installGuard(d.name, cfg.Addr.Masked()); err != nil {
		return fmt.Errorf("nftables guard: %w", err)
	}
	addr := &vnl.Addr{IPNet: &net.IPNet{IP: cfg.Addr.Addr().AsSlice(), Mask: net.CIDRMask(cfg.Addr.Bits(), 32)},
		Broadcast: cfg.Broadcast.AsSlice()}
	if err := vnl.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("add address %s: %w", cfg.Addr, err)
	}
	if err := vnl.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring up: %w", err)
	}
	if cfg.MulticastRoute {
		_, mc, _ := net.ParseCIDR(multicastNet.String())
		if err := vnl.RouteAdd(&vnl.Route{LinkIndex: link.Attrs().Index, Dst: mc, Scope: vnl.SCOPE_LINK,
			Src: cfg.Addr.Addr().AsSlice()}); err != nil {
			return fmt.Errorf("route %s: %w", multicastNet, err)
		}
	}
	return nil
}

// derivedMTU is the largest packet that, sealed and sent to the underlay through
// the interface holding the member's address, needs no fragment: that
// interface's MTU less underlayOverhead, at most sdk.MaxMessage.
func derivedMTU(underlay netip.Addr) int {
	mtu := sdk.MaxMessage
	addrs, err := vnl.AddrList(nil, vnl.FAMILY_V4)
	if err != nil {
		return mtu
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == underlay {
			if l, err := vnl.LinkByIndex(a.LinkIndex); err == nil {
				mtu = min(mtu, l.Attrs().MTU-underlayOverhead)
			}
		}
	}
	return max(mtu, 576)
}

func guardTable(dev string) *nftables.Table {
	return &nftables.Table{Name: "vonlink_" + dev, Family: nftables.TableFamilyIPv4}
}

// ifname is an interface name as nftables compares it (IFNAMSIZ, NUL padded).
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// installGuard creates table ip vonlink_<dev>:
//
//	input:   iifname != dev ip daddr PREFIX drop; iifname != dev ip saddr PREFIX drop
//	forward: iifname dev drop; oifname dev drop
//
// so that only the VON reaches the overlay addresses, and a member that routes
// does not route strangers into the VON.
func installGuard(dev string, prefix netip.Prefix) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := guardTable(dev)
	c.DelTable(t) // one a crashed vonlink left
	_ = c.Flush()
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	a := prefix.Addr().As4()
	mask := net.CIDRMask(prefix.Bits(), 32)
	for _, off := range []uint32{16, 12} { // daddr, saddr
		c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(dev)},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(dev)},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	return c.Flush()
}

// deleteGuard deletes the table; one that is not there is fine.
func deleteGuard(dev string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	c.DelTable(guardTable(dev))
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete nftables table %s: %w", guardTable(dev).Name, err)
	}
	return nil
}
