//go:build linux

package testbed

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// UDPOverhead is the IPv4 + UDP header size counted into flow rates: rates here are
// IP-level bit/s (what a router forwards), payload + 28 bytes per packet.
const UDPOverhead = 28

// Flow is a paced UDP stream. Sending stops at Duration, at MaxPackets, or when the
// context ends, whichever comes first; at least one of Duration and MaxPackets is required.
type Flow struct {
	// Src binds the source address (zero: the kernel chooses); SrcPort 0 picks one.
	Src     netip.Addr
	SrcPort uint16
	Dst     netip.AddrPort
	// Rate is the IP-level send rate in bit/s.
	Rate uint64
	// Size is the UDP payload size in bytes (default 1000).
	Size       int
	Duration   time.Duration
	MaxPackets int
	// TOS is the IP TOS byte (DSCP << 2), e.g. 0xB0 for DSCP 44.
	TOS int
	// Fill writes the payload of packet seq (0, 1, …) into buf; nil sends zeros
	// with seq as the first 8 bytes.
	Fill func(seq uint64, buf []byte)
}

// SendStats counts what a sender put on the wire.
type SendStats struct {
	Packets, Bytes uint64 // Bytes at IP level
	Errors         uint64 // sends the local stack refused (e.g. ENOBUFS, unreachable)
	Elapsed        time.Duration
}

// Rate is the achieved IP-level send rate in bit/s.
func (s SendStats) Rate() float64 { return rate(s.Bytes, s.Elapsed) }

func rate(bytes uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes*8) / d.Seconds()
}

// Send runs f from node and blocks until it is done.
func (tb *Testbed) Send(ctx context.Context, node string, f Flow) (SendStats, error) {
	conn, err := tb.udpSocket(node, netip.AddrPortFrom(f.Src, f.SrcPort), f.TOS)
	if err != nil {
		return SendStats{}, err
	}
	defer conn.Close()
	return send(ctx, conn, f)
}

func send(ctx context.Context, conn *net.UDPConn, f Flow) (SendStats, error) {
	if f.Duration <= 0 && f.MaxPackets <= 0 {
		return SendStats{}, errors.New("testbed: flow needs a Duration or MaxPackets bound")
	}
	if f.Rate == 0 {
		return SendStats{}, errors.New("testbed: flow needs a Rate")
	}
	if f.Size <= 0 {
		f.Size = 1000
	}
	if f.Size < 8 || f.Size > 65000 {
		return SendStats{}, fmt.Errorf("testbed: payload size %d out of range [8, 65000]", f.Size)
	}
	interval := time.Duration(float64(time.Second) * float64((f.Size+UDPOverhead)*8) / float64(f.Rate))
	buf := make([]byte, f.Size)
	dst := net.UDPAddrFromAddrPort(f.Dst)
	var st SendStats
	start := time.Now()
	deadline := start.Add(f.Duration)
	for seq := uint64(0); ; seq++ {
		if f.MaxPackets > 0 && seq >= uint64(f.MaxPackets) {
			break
		}
		due := start.Add(time.Duration(seq) * interval)
		now := time.Now()
		if f.Duration > 0 && !due.Before(deadline) {
			break
		}
		if ahead := due.Sub(now); ahead > time.Millisecond {
			select {
			case <-ctx.Done():
				st.Elapsed = time.Since(start)
				return st, ctx.Err()
			case <-time.After(ahead):
			}
		} else if seq%256 == 0 && ctx.Err() != nil {
			st.Elapsed = time.Since(start)
			return st, ctx.Err()
		}
		if f.Fill != nil {
			f.Fill(seq, buf)
		} else {
			binary.BigEndian.PutUint64(buf, seq)
		}
		if _, err := conn.WriteToUDP(buf, dst); err != nil {
			st.Errors++
			continue
		}
		st.Packets++
		st.Bytes += uint64(f.Size + UDPOverhead)
	}
	st.Elapsed = time.Since(start)
	return st, nil
}

func (tb *Testbed) udpSocket(node string, local netip.AddrPort, tos int) (*net.UDPConn, error) {
	var conn *net.UDPConn
	err := tb.Do(node, func() error {
		var err error
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(local))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("testbed: udp socket on %s at %s: %w", node, local, err)
	}
	if tos != 0 {
		raw, err := conn.SyscallConn()
		if err == nil {
			cerr := raw.Control(func(fd uintptr) {
				err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TOS, tos)
			})
			err = errors.Join(cerr, err)
		}
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("testbed: set TOS %#x: %w", tos, err)
		}
	}
	_ = conn.SetWriteBuffer(4 << 20)
	_ = conn.SetReadBuffer(8 << 20)
	return conn, nil
}

// Count is what a sink received for one key.
type Count struct {
	Packets, Bytes uint64 // Bytes at IP level
	First, Last    time.Time
}

// Rate is the IP-level receive rate in bit/s between the first and the last packet.
func (c Count) Rate() float64 { return rate(c.Bytes, c.Last.Sub(c.First)) }

// Sink counts UDP datagrams arriving at a port of a node, in total and per key.
type Sink struct {
	conn *net.UDPConn
	key  func([]byte) uint64
	done chan struct{}

	mu    sync.Mutex
	total Count
	byKey map[uint64]*Count
}

// Listen opens a sink on node at addr (use the zero address for any). key maps a
// payload to a counting key (nil: everything under key 0), e.g. the ON id and path
// index of an ON header. Close the sink to stop it.
func (tb *Testbed) Listen(ctx context.Context, node string, addr netip.AddrPort, key func(payload []byte) uint64) (*Sink, error) {
	conn, err := tb.udpSocket(node, addr, 0)
	if err != nil {
		return nil, err
	}
	if key == nil {
		key = func([]byte) uint64 { return 0 }
	}
	s := &Sink{conn: conn, key: key, done: make(chan struct{}), byKey: map[uint64]*Count{}}
	go s.loop(ctx)
	return s, nil
}

func (s *Sink) loop(ctx context.Context) {
	defer close(s.done)
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	buf := make([]byte, 65536)
	for {
		n, _, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now()
		k := s.key(buf[:n])
		s.mu.Lock()
		for _, c := range []*Count{&s.total, s.counter(k)} {
			if c.Packets == 0 {
				c.First = now
			}
			c.Packets++
			c.Bytes += uint64(n + UDPOverhead)
			c.Last = now
		}
		s.mu.Unlock()
	}
}

func (s *Sink) counter(k uint64) *Count {
	c := s.byKey[k]
	if c == nil {
		c = &Count{}
		s.byKey[k] = c
	}
	return c
}

// Total is everything received so far.
func (s *Sink) Total() Count {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Key is what was received so far under key k.
func (s *Sink) Key(k uint64) Count {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.byKey[k]; c != nil {
		return *c
	}
	return Count{}
}

// Close stops the sink and waits for its goroutine.
func (s *Sink) Close() error {
	err := s.conn.Close()
	<-s.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
