package sdk

import (
	"encoding/binary"
	"net"

	"golang.org/x/sys/unix"
)

// UDP segmentation offload. A batch of equal-size datagrams to one destination goes
// to the kernel as one super-datagram with a UDP_SEGMENT cmsg (GSO) and is cut into
// datagrams below the socket, or at the device; with UDP_GRO on the receiving socket
// the kernel hands up a train of datagrams in one read. Every datagram of a train
// carries the same path index (trains are per destination and path), so a router's
// nftables rule, which reads the first segment's ON header, pins all of them right.

const (
	maxSegments = 64
	maxTrain    = 65000 // bytes of UDP payload in one super-datagram
)

// enableOffload reports whether the socket can send with GSO and switches GRO on.
func enableOffload(conn *net.UDPConn) (gso, gro bool) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return false, false
	}
	_ = raw.Control(func(fd uintptr) {
		if _, err := unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT); err == nil {
			gso = true
		}
		if unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil {
			gro = true
		}
	})
	return gso, gro
}

// gsoCmsg is the control message that makes the kernel cut a send into size-byte
// datagrams.
func gsoCmsg(size int) []byte {
	b := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafeSlicePtr(b))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}

// groSize returns the segment size of a coalesced read (0: one datagram).
func groSize(oob []byte) int {
	cms, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, c := range cms {
		if c.Header.Level == unix.SOL_UDP && c.Header.Type == unix.UDP_GRO && len(c.Data) >= 2 {
			return int(binary.NativeEndian.Uint16(c.Data))
		}
	}
	return 0
}

const oobLen = 64
