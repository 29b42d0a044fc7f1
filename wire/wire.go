// Package wire encodes and parses the VON wire format v1: the 16-byte ON header
// that starts the UDP payload of every ON data packet (docs/wire.md).
//
// A router needs only the first 4 bytes (the ON id) and byte 5 (the path index);
// the SDK needs the whole header. Parse never panics on any input.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire-format constants (docs/wire.md).
const (
	// HeaderLen is the length of the ON header at the start of the UDP payload.
	HeaderLen = 16
	// Version is the only header version this package speaks.
	Version = 1
	// DefaultDSCP is the ON codepoint (VOICE-ADMIT); the IPv4 TOS byte is DefaultDSCP<<2 = 0xB0.
	DefaultDSCP = 44
	// DefaultPort is the UDP destination port of ON packets.
	DefaultPort = 4750

	// FlagControl (flags bit 0) marks a VON group's own traffic — gossip, probes,
	// rekeys — carried inside the ON on the member's ON socket; its payload is
	// gossipnet framing, not application data sealed under the epoch key.
	FlagControl = 0x1

	// Byte offsets of the fields inside the UDP payload.
	OffsetONID      = 0
	OffsetVersion   = 4
	OffsetPathIndex = 5
	OffsetEpoch     = 6
	OffsetSeq       = 8
)

// Errors returned by Parse and Encode.
var (
	ErrShort     = errors.New("wire: ON header too short")
	ErrVersion   = errors.New("wire: unsupported ON header version")
	ErrPathIndex = errors.New("wire: path index must be 0 or 1")
	ErrFlags     = errors.New("wire: flags must fit in 4 bits")
)

// Header is the decoded ON header.
type Header struct {
	ONID      uint32 // global flow id
	Flags     uint8  // low 4 bits of byte 4
	PathIndex uint8  // 0 or 1
	KeyEpoch  uint16
	Seq       uint64
}

// AppendHeader appends the 16-byte encoding of h to b.
func AppendHeader(b []byte, h Header) ([]byte, error) {
	if h.PathIndex > 1 {
		return b, fmt.Errorf("%w: %d", ErrPathIndex, h.PathIndex)
	}
	if h.Flags > 0x0f {
		return b, fmt.Errorf("%w: %#x", ErrFlags, h.Flags)
	}
	b = binary.BigEndian.AppendUint32(b, h.ONID)
	b = append(b, Version<<4|h.Flags, h.PathIndex)
	b = binary.BigEndian.AppendUint16(b, h.KeyEpoch)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	return b, nil
}

// Encode returns the 16-byte encoding of h.
func Encode(h Header) ([]byte, error) {
	return AppendHeader(make([]byte, 0, HeaderLen), h)
}

// Parse decodes the ON header at the start of a UDP payload and returns it with
// the bytes that follow it (the sealed payload). It rejects short input, a
// version other than 1 and a path index other than 0 or 1.
func Parse(payload []byte) (Header, []byte, error) {
	if len(payload) < HeaderLen {
		return Header{}, nil, fmt.Errorf("%w: %d bytes, need %d", ErrShort, len(payload), HeaderLen)
	}
	if v := payload[OffsetVersion] >> 4; v != Version {
		return Header{}, nil, fmt.Errorf("%w: %d", ErrVersion, v)
	}
	h := Header{
		ONID:      binary.BigEndian.Uint32(payload[OffsetONID:]),
		Flags:     payload[OffsetVersion] & 0x0f,
		PathIndex: payload[OffsetPathIndex],
		KeyEpoch:  binary.BigEndian.Uint16(payload[OffsetEpoch:]),
		Seq:       binary.BigEndian.Uint64(payload[OffsetSeq:]),
	}
	if h.PathIndex > 1 {
		return Header{}, nil, fmt.Errorf("%w: %d", ErrPathIndex, h.PathIndex)
	}
	return h, payload[HeaderLen:], nil
}

// ONID returns the ON id from the first 4 bytes of a UDP payload without
// validating the rest of the header, as a router's classifier does.
func ONID(payload []byte) (uint32, bool) {
	if len(payload) < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(payload), true
}
