package sdk

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"golang.org/x/net/ipv4"

	"github.com/vonproject/von/internal/nsexec"
)

// socket is a member's one ON socket: data and gossip, DSCP set, batched I/O.
type socket struct {
	conn  *net.UDPConn
	pc    *ipv4.PacketConn
	local netip.AddrPort
	gso   atomic.Bool // send trains of equal-size datagrams as one (UDP_SEGMENT)
	gro   bool        // reads may return a coalesced train (UDP_GRO)
}

func openSocket(ns string, addr netip.AddrPort, dscp int) (*socket, error) {
	var conn *net.UDPConn
	err := nsexec.Do(ns, func() error {
		var err error
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		where := ""
		if ns != "" {
			where = " in network namespace " + ns
		}
		return nil, fmt.Errorf("%w: ON socket at %s%s: %w", ErrConfig, addr, where, err)
	}
	pc := ipv4.NewPacketConn(conn)
	if err := pc.SetTOS(dscp << 2); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: set DSCP %d on the ON socket: %w", ErrConfig, dscp, err)
	}
	_ = conn.SetWriteBuffer(4 << 20)
	_ = conn.SetReadBuffer(8 << 20)
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	so := &socket{conn: conn, pc: pc, local: local}
	gso, gro := enableOffload(conn)
	so.gso.Store(gso)
	so.gro = gro
	return so, nil
}

// writeBatch sends every message (sendmmsg where the platform has it). sendmmsg stops
// at the first datagram the kernel refuses (no route, a full device queue): that one
// is skipped and counted, the rest still go. It returns the number refused and the
// last error; net.ErrClosed ends it.
func (s *socket) writeBatch(ms []ipv4.Message) (int, error) {
	failed := 0
	var last error
	for len(ms) > 0 {
		n, err := s.pc.WriteBatch(ms, 0)
		ms = ms[n:]
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return failed + len(ms), err
			}
			last = err
			if len(ms) > 0 {
				failed++
				ms = ms[1:]
			}
		}
	}
	return failed, last
}

func (s *socket) close() error { return s.conn.Close() }
