package vonlink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vonproject/von/overlay"
	"github.com/vonproject/von/sdk"
)

// DefaultDev is the interface vonlink creates unless told otherwise.
const DefaultDev = "von0"

// Errors. Each is wrapped with the detail.
var (
	// ErrConfig: the Config is wrong (a bad interface name, an MTU out of range).
	ErrConfig = errors.New("vonlink: bad config")
	// ErrDevice: the interface could not be created or configured (no
	// CAP_NET_ADMIN, the name taken, no /dev/net/tun).
	ErrDevice = errors.New("vonlink: interface")
	// ErrUnsupported: not Linux.
	ErrUnsupported = errors.New("vonlink: TUN interfaces need Linux")
	// ErrEnded: the ON ended (released, expired) while the link was up.
	ErrEnded = errors.New("vonlink: the ON ended")
)

// Config says which VON to join and what interface to give it.
type Config struct {
	// SDK is the VON to join and as whom (Manager, TLS, ON, Member, …). SDK.Netns,
	// if set, is also where the interface is created.
	SDK sdk.Config
	// Dev is the interface name (DefaultDev).
	Dev string
	// MTU overrides the interface MTU. Default: the MTU of the member's underlay
	// interface less the IPv4 and UDP headers and the VON's own header and tag
	// (at most sdk.MaxMessage), so no packet is fragmented on the way.
	MTU int
	// MulticastRoute routes 224.0.0.0/4 into the interface, so that programs that
	// send multicast without choosing an interface send it over the VON.
	MulticastRoute bool
	// Logger receives vonlink's and the SDK's logs (unless SDK.Logger is set); nil
	// discards.
	Logger *slog.Logger
}

// Link is a VON joined and its interface up. Its methods are safe for concurrent
// use.
type Link struct {
	cfg   Config
	log   *slog.Logger
	v     *sdk.VON
	dev   device
	ov    sdk.Overlay
	self  netip.Addr
	bcast netip.Addr
	// byAddr maps an overlay address to its member (fixed for the ON's life).
	byAddr map[netip.Addr]string
	mtu    int
	start  time.Time

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	done      chan struct{}
	failOnce  sync.Once
	err       error // why the link stopped by itself; set before done closes
	closeOnce sync.Once
	closeErr  error
	st        counters
}

type counters struct {
	txPackets, txBytes, rxPackets, rxBytes atomic.Uint64
	dropNotIPv4, dropOutside, dropNoMember, dropNotReady, dropIGMP, dropSend,
	dropSpoofed, dropNotForUs, dropWrite atomic.Uint64
}

// validDev says whether name can be an interface name.
func validDev(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n%") {
		return fmt.Errorf("%w: interface name %q (1 to 15 characters, none of '/', ':', '%%' or spaces)", ErrConfig, name)
	}
	return nil
}

// Up joins the VON and brings up its interface. It returns once packets flow; the
// link runs until Close, or until it fails (Done, Err): the ON ends, the interface
// is deleted under it.
func Up(ctx context.Context, cfg Config) (*Link, error) {
	if cfg.Dev == "" {
		cfg.Dev = DefaultDev
	}
	if err := validDev(cfg.Dev); err != nil {
		return nil, err
	}
	if cfg.MTU != 0 && (cfg.MTU < 576 || cfg.MTU > sdk.MaxMessage) {
		return nil, fmt.Errorf("%w: --mtu %d: between 576 and %d (the largest VON message)", ErrConfig, cfg.MTU, sdk.MaxMessage)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SDK.Logger == nil {
		cfg.SDK.Logger = cfg.Logger
	}
	if err := supported(); err != nil {
		return nil, err
	}
	v, err := sdk.Join(ctx, cfg.SDK)
	if err != nil {
		return nil, err
	}
	l, err := up(cfg, v)
	if err != nil {
		_ = v.Close()
		return nil, err
	}
	return l, nil
}

func up(cfg Config, v *sdk.VON) (*Link, error) {
	ov, err := v.Overlay()
	if err != nil {
		return nil, err
	}
	self, ok := ov.Members[cfg.SDK.Member]
	if !ok {
		return nil, fmt.Errorf("%w: %s has no overlay address in %s", sdk.ErrNotMember, cfg.SDK.Member, cfg.SDK.ON)
	}
	l := &Link{cfg: cfg, log: cfg.Logger, v: v, ov: ov, self: self, bcast: overlay.Broadcast(ov.Prefix),
		byAddr: map[netip.Addr]string{}, done: make(chan struct{}), start: time.Now()}
	for name, a := range ov.Members {
		l.byAddr[a] = name
	}
	dev, err := openDevice(deviceConfig{Netns: cfg.SDK.Netns, Name: cfg.Dev, Addr: netip.PrefixFrom(self, ov.Prefix.Bits()),
		Broadcast: l.bcast, MTU: cfg.MTU, MulticastRoute: cfg.MulticastRoute, Underlay: v.LocalAddr().Addr(), Log: l.log})
	if err != nil {
		return nil, err
	}
	l.dev, l.mtu = dev, dev.MTU()
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(3)
	go l.fromTUN()
	go l.toTUN()
	go l.watch()
	l.log.Info("vonlink up", "on", cfg.SDK.ON, "member", cfg.SDK.Member, "dev", dev.Name(),
		"address", netip.PrefixFrom(self, ov.Prefix.Bits()), "mtu", l.mtu, "redundant", v.Redundant())
	return l, nil
}

// fail stops the link from inside: the first reason wins.
func (l *Link) fail(err error) {
	l.failOnce.Do(func() {
		l.err = err
		l.log.Error("vonlink stopping", "err", err)
		close(l.done)
		l.cancel()
	})
}

// Done is closed when the link stopped by itself (Err says why); Close is still
// needed to remove the interface.
func (l *Link) Done() <-chan struct{} { return l.done }

// Err is why the link stopped by itself, once Done is closed.
func (l *Link) Err() error {
	select {
	case <-l.done:
		return l.err
	default:
		return nil
	}
}

// fromTUN carries what local programs send into the VON: one read, one message.
func (l *Link) fromTUN() {
	defer l.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, err := l.dev.Read(buf)
		if err != nil {
			if l.ctx.Err() == nil {
				l.fail(fmt.Errorf("%w: reading %s: %w", ErrDevice, l.cfg.Dev, err))
			}
			return
		}
		pkt := buf[:n]
		h, ok := parseIPv4(pkt)
		if !ok {
			l.st.dropNotIPv4.Add(1) // IPv6 (router solicitations) and the like
			continue
		}
		if h.proto == protoIGMP {
			// Membership reports: every multicast packet reaches every member
			// anyway, so there is nobody to tell.
			l.st.dropIGMP.Add(1)
			continue
		}
		switch classify(h.dst, l.ov.Prefix, l.bcast) {
		case destDrop:
			l.st.dropOutside.Add(1)
			continue
		case destAll:
			err = l.v.Broadcast(l.ctx, pkt)
		case destMember:
			to, ok := l.byAddr[h.dst]
			if !ok {
				l.st.dropNoMember.Add(1)
				continue
			}
			// A member that is down or has just joined and does not hold the key
			// yet: drop, as a link would, rather than stall every other flow.
			err = l.v.SendNow(l.ctx, to, pkt)
		}
		switch {
		case err == nil:
		case l.ctx.Err() != nil, errors.Is(err, sdk.ErrClosed):
			return
		case errors.Is(err, sdk.ErrUnknownMember):
			l.st.dropNotReady.Add(1)
			continue
		default:
			l.st.dropSend.Add(1)
			continue
		}
		l.st.txPackets.Add(1)
		l.st.txBytes.Add(uint64(n))
	}
}

// toTUN hands what members sent to local programs, if it is what that member may
// send and meant for this one.
func (l *Link) toTUN() {
	defer l.wg.Done()
	for {
		m, err := l.v.Recv(l.ctx)
		if err != nil {
			if l.ctx.Err() == nil && !errors.Is(err, sdk.ErrClosed) {
				l.fail(fmt.Errorf("receiving from the VON: %w", err))
			}
			return
		}
		h, ok := parseIPv4(m.Data)
		switch {
		case !ok:
			l.st.dropNotIPv4.Add(1)
			continue
		case h.src != l.ov.Members[m.From]:
			l.st.dropSpoofed.Add(1)
			continue
		case !acceptable(h.dst, l.self, l.bcast):
			l.st.dropNotForUs.Add(1)
			continue
		}
		if _, err := l.dev.Write(m.Data); err != nil {
			if l.ctx.Err() != nil {
				return
			}
			l.st.dropWrite.Add(1)
			continue
		}
		l.st.rxPackets.Add(1)
		l.st.rxBytes.Add(uint64(len(m.Data)))
	}
}

// watch ends the link when the ON ends.
func (l *Link) watch() {
	defer l.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
			if err := l.v.LeaseErr(); err != nil {
				l.fail(fmt.Errorf("%w: %w", ErrEnded, err))
				return
			}
		}
	}
}

// Close leaves the VON (the others rekey without this member at once) and removes
// the interface, its routes and its nftables table.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		derr := l.dev.Close() // unblocks the reader
		l.wg.Wait()
		verr := l.v.Close()
		if errors.Is(verr, sdk.ErrClosed) {
			verr = nil
		}
		l.closeErr = errors.Join(derr, verr)
		l.log.Info("vonlink down", "dev", l.cfg.Dev)
	})
	return l.closeErr
}

// Status is what `vonlink status` shows.
type Status struct {
	ON        string         `json:"on"`
	ONID      uint32         `json:"on_id"`
	Member    string         `json:"member"`
	Dev       string         `json:"dev"`
	Netns     string         `json:"netns,omitempty"`
	Address   string         `json:"address"` // this member's, with the ON's prefix length
	Prefix    string         `json:"prefix"`
	MTU       int            `json:"mtu"`
	Redundant bool           `json:"redundant"`
	Epoch     uint64         `json:"epoch"`
	Uptime    string         `json:"uptime"`
	Members   []MemberStatus `json:"members"`
	Counters  Counters       `json:"counters"`
}

// MemberStatus is one member of the ON.
type MemberStatus struct {
	Name     string `json:"name"`
	Address  string `json:"address"`            // overlay
	Underlay string `json:"underlay,omitempty"` // its ON socket, while live
	Live     bool   `json:"live"`
	Ready    bool   `json:"ready"` // holds the key this member seals with
}

// Counters count packets since Up.
type Counters struct {
	TxPackets uint64 `json:"tx_packets"` // read from the interface and sent
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"` // received and written to the interface
	RxBytes   uint64 `json:"rx_bytes"`
	// Dropped, by reason.
	NotIPv4      uint64 `json:"drop_not_ipv4"`
	Outside      uint64 `json:"drop_outside"`   // to an address outside the ON's prefix
	NoMember     uint64 `json:"drop_no_member"` // to an address no member has
	NotReady     uint64 `json:"drop_not_ready"` // to a member that is down or not keyed yet
	IGMP         uint64 `json:"drop_igmp"`
	SendErrors   uint64 `json:"drop_send"`
	Spoofed      uint64 `json:"drop_spoofed"`    // source is not the sender's overlay address
	NotForUs     uint64 `json:"drop_not_for_us"` // unicast to another member
	WriteErrors  uint64 `json:"drop_write"`      // the interface refused it
	Duplicates   uint64 `json:"duplicates"`      // second copies eliminated (redundant ON)
	Rejected     uint64 `json:"rejected"`        // did not open: forged, replayed, old key
	Strangers    uint64 `json:"strangers"`       // from an address that is no live member
	PathCopies0  uint64 `json:"path0_copies"`    // copies that arrived on path 0
	PathCopies1  uint64 `json:"path1_copies"`    // … and on path 1
	VONOverflow  uint64 `json:"recv_overflow"`   // arrived faster than the interface took them
	SocketErrors uint64 `json:"socket_errors"`   // datagrams the ON socket refused
}

// Status returns the link's members, epoch and counters.
func (l *Link) Status() Status {
	s := Status{ON: l.cfg.SDK.ON, ONID: l.v.ONID(), Member: l.cfg.SDK.Member, Dev: l.dev.Name(), Netns: l.cfg.SDK.Netns,
		Address: netip.PrefixFrom(l.self, l.ov.Prefix.Bits()).String(), Prefix: l.ov.Prefix.String(), MTU: l.mtu,
		Redundant: l.v.Redundant(), Epoch: l.v.Epoch(), Uptime: time.Since(l.start).Round(time.Second).String()}
	live := map[string]sdk.Member{}
	for _, m := range l.v.Members() {
		live[m.Name] = m
	}
	for name, a := range l.ov.Members {
		ms := MemberStatus{Name: name, Address: a.String()}
		if m, ok := live[name]; ok {
			ms.Live, ms.Underlay = true, m.Addr.String()
			ms.Ready = name == l.cfg.SDK.Member || l.v.Ready(name)
		}
		s.Members = append(s.Members, ms)
	}
	slices.SortFunc(s.Members, func(a, b MemberStatus) int {
		return netip.MustParseAddr(a.Address).Compare(netip.MustParseAddr(b.Address))
	})
	vs := l.v.Stats()
	c := &l.st
	s.Counters = Counters{TxPackets: c.txPackets.Load(), TxBytes: c.txBytes.Load(), RxPackets: c.rxPackets.Load(), RxBytes: c.rxBytes.Load(),
		NotIPv4: c.dropNotIPv4.Load(), Outside: c.dropOutside.Load(), NoMember: c.dropNoMember.Load(), NotReady: c.dropNotReady.Load(),
		IGMP: c.dropIGMP.Load(), SendErrors: c.dropSend.Load(), Spoofed: c.dropSpoofed.Load(), NotForUs: c.dropNotForUs.Load(),
		WriteErrors: c.dropWrite.Load(), Duplicates: vs.Duplicates, Rejected: vs.Rejected, Strangers: vs.Strangers,
		PathCopies0: vs.PerPath[0], PathCopies1: vs.PerPath[1], VONOverflow: vs.Overflow, SocketErrors: vs.SendErrors}
	return s
}

// device is the TUN interface (tun_linux.go).
type device interface {
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	Name() string
	MTU() int
	// Close deletes the interface and what was set up with it.
	Close() error
}

// deviceConfig is what openDevice creates.
type deviceConfig struct {
	Netns          string
	Name           string
	Addr           netip.Prefix // this member's address, with the ON's prefix length
	Broadcast      netip.Addr
	MTU            int        // 0: derived from the underlay interface of Underlay
	MulticastRoute bool       // route 224.0.0.0/4 into the interface
	Underlay       netip.Addr // the member's ON socket address
	Log            *slog.Logger
}
