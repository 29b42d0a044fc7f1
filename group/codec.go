package group

import (
	"encoding/binary"
	"net/netip"
)

// Size limits of decoded fields. Decoders reject anything larger, so a hostile input
// can neither allocate much nor make a loop run long.
const (
	maxName   = 255  // member names, coordinator names, VON labels
	maxRecips = 1024 // recipients of one epoch
	maxBlob   = 512  // claims, sealed keys
)

// wbuf appends the compact encoding used by node meta and rekey messages: fixed
// big-endian integers and uvarint-length-prefixed byte strings.
type wbuf struct{ b []byte }

func (w *wbuf) u8(v byte)    { w.b = append(w.b, v) }
func (w *wbuf) u16(v uint16) { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *wbuf) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *wbuf) bytes(v []byte) {
	w.b = binary.AppendUvarint(w.b, uint64(len(v)))
	w.b = append(w.b, v...)
}
func (w *wbuf) str(v string) {
	w.b = binary.AppendUvarint(w.b, uint64(len(v)))
	w.b = append(w.b, v...)
}
func (w *wbuf) fixed(v []byte) { w.b = append(w.b, v...) }
func (w *wbuf) addr(a netip.AddrPort) {
	w.bytes(a.Addr().Unmap().AsSlice())
	w.u16(a.Port())
}

// rbuf reads what wbuf writes. The first failure sticks in ok; later reads return
// zero values, so a decoder checks ok once at the end.
type rbuf struct {
	b  []byte
	ok bool
}

func newR(b []byte) *rbuf { return &rbuf{b: b, ok: true} }

func (r *rbuf) take(n int) []byte {
	if !r.ok || n < 0 || n > len(r.b) {
		r.ok = false
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *rbuf) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *rbuf) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *rbuf) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *rbuf) bytes(max int) []byte {
	if !r.ok {
		return nil
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(max) {
		r.ok = false
		return nil
	}
	r.b = r.b[k:]
	return r.take(int(n))
}

func (r *rbuf) str(max int) string { return string(r.bytes(max)) }

func (r *rbuf) addr() netip.AddrPort {
	ip, ok := netip.AddrFromSlice(r.bytes(16))
	port := r.u16()
	if !ok {
		r.ok = false
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip.Unmap(), port)
}

// done reports whether everything decoded and nothing is left over.
func (r *rbuf) done() bool { return r.ok && len(r.b) == 0 }
