// Package seal is the data-plane AEAD of a VON: per-sender keys derived from
// the epoch key, one seal per message shared by both copies.
//
// Each sender has its own data key per epoch and incarnation (SenderKey), so a
// (key, nonce) pair never repeats as long as a sender never reuses a sequence
// number within an incarnation (docs/groups.md). A packet is the 16-byte ON
// header (wire/) followed by the AES-256-GCM ciphertext and its 16-byte tag:
//
//	packet = header || AES-256-GCM(key, nonce, plaintext, ad)
//	nonce  = 0x00000000 || seq (8 bytes, big endian)
//	ad     = header with byte 5 (the path index) zeroed
//
// Everything in the header but the path index is authenticated; the path index
// is left out so that a redundant ON sends one ciphertext twice: Seal once,
// then SetPath on a copy for the other path. Both copies open, to the same
// plaintext and the same sequence number, which the receiver's replay.Window
// then delivers once.
//
// Open authenticates but does not detect replays: that is the replay
// package's job, and the caller's (see replay's package doc for the receive
// path). Sealer methods are safe for concurrent use.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/vonproject/von/wire"
)

const (
	// KeyLen is the length of a sender key (AES-256).
	KeyLen = 32
	// MinEpochKeyLen is the shortest epoch key SenderKey accepts.
	MinEpochKeyLen = 32
	// TagLen is the length of the GCM authentication tag.
	TagLen = 16
	// Overhead is what sealing adds to a plaintext: the ON header and the tag.
	Overhead = wire.HeaderLen + TagLen
	// MaxPlaintext is the largest plaintext Seal accepts, so that a packet is
	// at most 65535 bytes. A UDP datagram carries at most 65507 payload bytes
	// over IPv4 and real paths far fewer: fitting the MTU is the SDK's concern.
	MaxPlaintext = 65535 - Overhead

	// senderKeyLabel is the HKDF salt, separating sender keys from any other
	// use of the epoch key.
	senderKeyLabel = "von.v1 sender key"
	nonceLen       = 12
)

// Errors, to be tested with errors.Is. Header errors come from wire
// (wire.ErrShort, wire.ErrVersion, wire.ErrPathIndex, wire.ErrFlags). Open's
// hot failures (ErrAuth, ErrSeq, no room for the tag) are returned without
// allocating, so a flood of forgeries costs no garbage.
var (
	// ErrEpochKey: the epoch key is shorter than MinEpochKeyLen.
	ErrEpochKey = errors.New("seal: epoch key too short")
	// ErrSender: the sender name is empty or longer than 255 bytes.
	ErrSender = errors.New("seal: sender name must be 1 to 255 bytes")
	// ErrSeq: sequence number 0, which is never valid.
	ErrSeq = errors.New("seal: sequence number 0")
	// ErrTooLong: the plaintext is longer than MaxPlaintext.
	ErrTooLong = errors.New("seal: plaintext too long")
	// ErrOverlap: the output would overwrite the input other than exactly in place.
	ErrOverlap = errors.New("seal: output overlaps input")
	// ErrAuth: the packet did not authenticate under this key (forged,
	// corrupted, or sealed with another key).
	ErrAuth = errors.New("seal: message authentication failed")
)

// errNoTag is returned without allocating for a packet too short for a tag.
var errNoTag = fmt.Errorf("%w: no room for the %d-byte tag", wire.ErrShort, TagLen)

// SenderKey derives the data key of one sender for one epoch of one ON:
//
//	HKDF-SHA256(secret = epochKey, salt = "von.v1 sender key",
//	            info = onID (4 bytes BE) || epoch (8 BE) || incarnation (8 BE)
//	                   || len(sender) (1 byte) || sender)
//
// epoch is the full 64-bit epoch, not the 16 bits in the header. The epoch key
// must be at least MinEpochKeyLen bytes and the sender name 1 to 255 bytes.
func SenderKey(epochKey []byte, onID uint32, epoch uint64, sender string, incarnation uint64) ([KeyLen]byte, error) {
	var key [KeyLen]byte
	if len(epochKey) < MinEpochKeyLen {
		return key, fmt.Errorf("%w: %d bytes, need %d", ErrEpochKey, len(epochKey), MinEpochKeyLen)
	}
	if len(sender) == 0 || len(sender) > 255 {
		return key, fmt.Errorf("%w: %d bytes", ErrSender, len(sender))
	}
	info := make([]byte, 0, 4+8+8+1+len(sender))
	info = binary.BigEndian.AppendUint32(info, onID)
	info = binary.BigEndian.AppendUint64(info, epoch)
	info = binary.BigEndian.AppendUint64(info, incarnation)
	info = append(info, byte(len(sender)))
	info = append(info, sender...)
	k, err := hkdf.Key(sha256.New, epochKey, []byte(senderKeyLabel), string(info), KeyLen)
	if err != nil {
		return key, fmt.Errorf("seal: sender key: %w", err)
	}
	copy(key[:], k)
	return key, nil
}

// A Sealer seals and opens the packets of one sender key. It is safe for
// concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for one sender key (from SenderKey).
func NewSealer(key [KeyLen]byte) (*Sealer, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// scratch holds the nonce and the associated data of one call. The AEAD is an
// interface, so arrays on the stack passed to it would escape and cost an
// allocation per packet; pooled scratch does not.
type scratch struct {
	nonce [nonceLen]byte
	ad    [wire.HeaderLen]byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// Seal appends the packet for h and plaintext to dst and returns the extended
// slice: the header (wire.AppendHeader, with h.PathIndex), the ciphertext and
// the tag, len(plaintext)+Overhead bytes in all. It does not allocate if dst
// has that much spare capacity.
//
// h.Seq must not be 0 and must never repeat under one key; Seal does not keep
// count, the caller does. To seal in place, put the plaintext at
// dst[len(dst)+wire.HeaderLen:]; any other overlap of plaintext with the
// output is refused with ErrOverlap. On error Seal returns dst unchanged:
// ErrSeq, ErrTooLong, ErrOverlap, wire.ErrPathIndex or wire.ErrFlags.
func (s *Sealer) Seal(dst []byte, h wire.Header, plaintext []byte) ([]byte, error) {
	if h.Seq == 0 {
		return dst, ErrSeq
	}
	if len(plaintext) > MaxPlaintext {
		return dst, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLong, len(plaintext), MaxPlaintext)
	}
	path := h.PathIndex
	if path > 1 {
		return dst, fmt.Errorf("%w: %d", wire.ErrPathIndex, path)
	}
	n := len(dst)
	out := dst
	if need := wire.HeaderLen + len(plaintext) + TagLen; cap(dst)-n < need {
		// A fresh buffer cannot overlap the plaintext.
		out = make([]byte, n, n+need)
		copy(out, dst)
	} else if w := dst[n : n+need]; overlaps(w, plaintext) && !sameStart(w[wire.HeaderLen:], plaintext) {
		return dst, ErrOverlap
	}
	h.PathIndex = 0 // the associated data is the header with byte 5 zeroed
	out, err := wire.AppendHeader(out, h)
	if err != nil {
		return dst, err
	}
	sc := scratchPool.Get().(*scratch)
	sc.nonce = [nonceLen]byte{}
	binary.BigEndian.PutUint64(sc.nonce[4:], h.Seq)
	out = s.aead.Seal(out, sc.nonce[:], plaintext, out[n:n+wire.HeaderLen])
	scratchPool.Put(sc)
	out[n+wire.OffsetPathIndex] = path
	return out, nil
}

// SetPath sets the path index (byte 5) of a packet to path, 0 or 1, in place.
// It is how the copy of a sealed packet for the other path is made; the path
// index is not authenticated, so both copies open.
func SetPath(packet []byte, path uint8) error {
	if len(packet) < wire.HeaderLen {
		return fmt.Errorf("%w: %d bytes", wire.ErrShort, len(packet))
	}
	if v := packet[wire.OffsetVersion] >> 4; v != wire.Version {
		return fmt.Errorf("%w: %d", wire.ErrVersion, v)
	}
	if path > 1 {
		return fmt.Errorf("%w: %d", wire.ErrPathIndex, path)
	}
	packet[wire.OffsetPathIndex] = path
	return nil
}

// Open authenticates and decrypts a packet sealed with this Sealer's key. It
// appends the plaintext to dst and returns the header and the extended slice;
// it does not allocate if dst has len(packet)-Overhead bytes of spare
// capacity. On any error it returns the zero Header and dst unchanged (its
// spare capacity may have been overwritten), and never panics.
//
// Open does not detect replays: check h.Seq with a replay.Window first and
// Accept it after Open succeeded. To open in place, pass
// packet[wire.HeaderLen:wire.HeaderLen] as dst; a failed open then wipes the
// ciphertext. Any other overlap of dst's spare capacity with packet is
// refused with ErrOverlap.
//
// Errors: those of wire.Parse, wire.ErrShort if there is no room for the tag,
// ErrSeq for sequence number 0, ErrAuth if the packet does not authenticate.
func (s *Sealer) Open(dst, packet []byte) (wire.Header, []byte, error) {
	h, body, err := wire.Parse(packet)
	if err != nil {
		return wire.Header{}, dst, err
	}
	if len(body) < TagLen {
		return wire.Header{}, dst, errNoTag
	}
	if h.Seq == 0 {
		return wire.Header{}, dst, ErrSeq
	}
	n := len(dst)
	out := dst
	if need := len(body) - TagLen; cap(dst)-n < need {
		out = make([]byte, n, n+need)
		copy(out, dst)
	} else if w := dst[n : n+need]; overlaps(w, packet) && !sameStart(w, body) {
		return wire.Header{}, dst, ErrOverlap
	}
	sc := scratchPool.Get().(*scratch)
	copy(sc.ad[:], packet[:wire.HeaderLen])
	sc.ad[wire.OffsetPathIndex] = 0
	sc.nonce = [nonceLen]byte{}
	binary.BigEndian.PutUint64(sc.nonce[4:], h.Seq)
	out, err = s.aead.Open(out, sc.nonce[:], body, sc.ad[:])
	scratchPool.Put(sc)
	if err != nil {
		return wire.Header{}, dst, ErrAuth
	}
	return h, out, nil
}

// overlaps reports whether a and b share any byte of memory.
func overlaps(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	a0, a1 := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&a[len(a)-1]))
	b0, b1 := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&b[len(b)-1]))
	return a0 <= b1 && b0 <= a1
}

// sameStart reports whether a and b start at the same byte of memory.
func sameStart(a, b []byte) bool {
	return len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}
