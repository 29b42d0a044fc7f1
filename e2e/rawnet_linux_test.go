//go:build linux

package e2e

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/vonproject/von/e2e/testbed"
)

// capture records the UDP payloads of IPv4 packets arriving in a node's namespace
// from src to dport, with an AF_PACKET socket (what tcpdump would see).
type capture struct {
	fd   int
	mu   sync.Mutex
	pkts [][]byte
	done chan struct{}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func startCapture(tb *testbed.Testbed, node string, src netip.Addr, dport uint16) (*capture, error) {
	c := &capture{done: make(chan struct{})}
	err := testbed.InNamespace(tb.Namespace(node), func() error {
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(syscall.ETH_P_IP)))
		if err != nil {
			return err
		}
		c.fd = fd
		return syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{Usec: 200_000})
	})
	if err != nil {
		return nil, err
	}
	_ = syscall.SetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<20)
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			n, from, err := syscall.Recvfrom(c.fd, buf, 0)
			if err == syscall.EAGAIN || err == syscall.EINTR {
				continue
			}
			if err != nil {
				return
			}
			if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == 4 { // PACKET_OUTGOING
				continue
			}
			p := buf[:n]
			if len(p) < 28 || p[0]>>4 != 4 || p[9] != syscall.IPPROTO_UDP {
				continue
			}
			ihl := int(p[0]&0x0f) * 4
			if len(p) < ihl+8 || netip.AddrFrom4([4]byte(p[12:16])) != src || binary.BigEndian.Uint16(p[ihl+2:]) != dport {
				continue
			}
			c.mu.Lock()
			c.pkts = append(c.pkts, append([]byte(nil), p[ihl+8:]...))
			c.mu.Unlock()
		}
	}()
	return c, nil
}

func (c *capture) packets() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.pkts...)
}

func (c *capture) close() {
	syscall.Close(c.fd)
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
	}
}

// inject sends a UDP datagram with a spoofed source from a node's namespace over a
// raw socket, TOS 0xB0 (the ON codepoint) — a replay or a forgery as an on-path
// attacker would send it.
func inject(tb *testbed.Testbed, node string, src, dst netip.AddrPort, payload []byte) error {
	return testbed.InNamespace(tb.Namespace(node), func() error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		pkt := make([]byte, 28+len(payload))
		pkt[0], pkt[1], pkt[8], pkt[9] = 0x45, 0xB0, 64, syscall.IPPROTO_UDP
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		s4, d4 := src.Addr().As4(), dst.Addr().As4()
		copy(pkt[12:], s4[:])
		copy(pkt[16:], d4[:])
		binary.BigEndian.PutUint16(pkt[10:], ipChecksum(pkt[:20]))
		binary.BigEndian.PutUint16(pkt[20:], src.Port())
		binary.BigEndian.PutUint16(pkt[22:], dst.Port())
		binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
		copy(pkt[28:], payload)
		return syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: d4})
	})
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
