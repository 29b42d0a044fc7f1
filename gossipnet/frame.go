package gossipnet

import "encoding/binary"

// Datagram types (first byte of every gossipnet datagram).
const (
	typePacket byte = 0x01
	typeSYN    byte = 0x02
	typeSYNACK byte = 0x03
	typeData   byte = 0x04
	typeACK    byte = 0x05
	typeFIN    byte = 0x06
	typeRST    byte = 0x07
)

// flagRetx marks a retransmitted (or probing) stream frame.
const flagRetx byte = 0x01

const (
	// packetHeaderLen is the length of a PACKET header.
	packetHeaderLen = 19
	// streamHeaderLen is the length of a stream frame header.
	streamHeaderLen = 24
	// maxFragments bounds the fragments of one packet.
	maxFragments = 64
)

// packetHeader is a decoded PACKET header.
type packetHeader struct {
	instance uint64
	seq      uint64
	frag     uint8
	nfrag    uint8
}

func appendPacketHeader(b []byte, h packetHeader) []byte {
	b = append(b, typePacket)
	b = binary.BigEndian.AppendUint64(b, h.instance)
	b = binary.BigEndian.AppendUint64(b, h.seq)
	return append(b, h.frag, h.nfrag)
}

// parsePacket decodes a PACKET datagram. It rejects short input, an empty
// payload, seq 0 and impossible fragment numbers.
func parsePacket(b []byte) (packetHeader, []byte, bool) {
	if len(b) <= packetHeaderLen || b[0] != typePacket {
		return packetHeader{}, nil, false
	}
	h := packetHeader{
		instance: binary.BigEndian.Uint64(b[1:]),
		seq:      binary.BigEndian.Uint64(b[9:]),
		frag:     b[17],
		nfrag:    b[18],
	}
	if h.seq == 0 || h.nfrag == 0 || h.nfrag > maxFragments || h.frag >= h.nfrag {
		return packetHeader{}, nil, false
	}
	return h, b[packetHeaderLen:], true
}

// frame is a decoded stream frame.
type frame struct {
	typ     byte
	id      uint64
	flags   byte
	seq     uint32
	ack     uint32
	wnd     uint16
	sack    uint32
	payload []byte
}

func appendFrame(b []byte, f *frame) []byte {
	b = append(b, f.typ)
	b = binary.BigEndian.AppendUint64(b, f.id)
	b = append(b, f.flags)
	b = binary.BigEndian.AppendUint32(b, f.seq)
	b = binary.BigEndian.AppendUint32(b, f.ack)
	b = binary.BigEndian.AppendUint16(b, f.wnd)
	b = binary.BigEndian.AppendUint32(b, f.sack)
	return append(b, f.payload...)
}

// parseFrame decodes a stream frame. DATA must carry a payload and the other
// types must not. The payload aliases b.
func parseFrame(b []byte) (frame, bool) {
	if len(b) < streamHeaderLen || b[0] < typeSYN || b[0] > typeRST {
		return frame{}, false
	}
	f := frame{
		typ:     b[0],
		id:      binary.BigEndian.Uint64(b[1:]),
		flags:   b[9],
		seq:     binary.BigEndian.Uint32(b[10:]),
		ack:     binary.BigEndian.Uint32(b[14:]),
		wnd:     binary.BigEndian.Uint16(b[18:]),
		sack:    binary.BigEndian.Uint32(b[20:]),
		payload: b[streamHeaderLen:],
	}
	if (f.typ == typeData) != (len(f.payload) > 0) {
		return frame{}, false
	}
	return f, true
}

// Serial-number comparisons for 32-bit segment numbers.
func seqLT(a, b uint32) bool { return int32(a-b) < 0 }
func seqGT(a, b uint32) bool { return int32(a-b) > 0 }
