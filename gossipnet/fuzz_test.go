package gossipnet

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// recordConduit records what the transport sends.
type recordConduit struct {
	mu   sync.Mutex
	sent int
}

func (c *recordConduit) WriteTo([]byte, netip.AddrPort) error {
	c.mu.Lock()
	c.sent++
	c.mu.Unlock()
	return nil
}
func (c *recordConduit) LocalAddr() netip.AddrPort { return netip.MustParseAddrPort("10.0.0.1:4750") }

// FuzzDeliver feeds a sequence of datagrams (each prefixed by a 2-byte length
// and a 1-byte source selector) to a fresh transport, reading any stream it
// accepts, and requires that nothing panics.
func FuzzDeliver(f *testing.F) {
	id := uint64(0x0102030405060708)
	syn := appendFrame(nil, &frame{typ: typeSYN, id: id, wnd: 4})
	data := appendFrame(nil, &frame{typ: typeData, id: id, seq: 0, wnd: 4, payload: []byte("hello")})
	ooo := appendFrame(nil, &frame{typ: typeData, id: id, seq: 2, wnd: 4, sack: 1, payload: []byte("x")})
	fin := appendFrame(nil, &frame{typ: typeFIN, id: id, seq: 1, ack: 0, wnd: 4})
	ack := appendFrame(nil, &frame{typ: typeACK, id: id, ack: 1, wnd: 0, sack: 0xffffffff})
	rst := appendFrame(nil, &frame{typ: typeRST, id: id})
	pkt := append(appendPacketHeader(nil, packetHeader{instance: 1, seq: 1, nfrag: 1}), 'm')
	frag0 := append(appendPacketHeader(nil, packetHeader{instance: 1, seq: 2, frag: 0, nfrag: 2}), 'a')
	frag1 := append(appendPacketHeader(nil, packetHeader{instance: 1, seq: 2, frag: 1, nfrag: 2}), 'b')
	seq := func(src byte, dgrams ...[]byte) []byte {
		var b []byte
		for _, d := range dgrams {
			b = binary.BigEndian.AppendUint16(b, uint16(len(d)))
			b = append(b, src)
			b = append(b, d...)
		}
		return b
	}
	f.Add(seq(0, syn, syn, data, ooo, fin, ack, data, fin, rst))
	f.Add(seq(0, pkt, pkt, frag1, frag0, frag0))
	f.Add(seq(1, syn, ack, ooo, rst, syn))
	f.Add(seq(0, data, fin, ack, []byte{typeSYNACK}))
	f.Add([]byte{0, 1, 0, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		tr, err := New(Config{Conduit: &recordConduit{}, Window: 4, MaxStreams: 4, AcceptQueue: 2, MaxSources: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Shutdown()
		srcs := []netip.AddrPort{
			netip.MustParseAddrPort("10.0.0.2:4750"),
			netip.MustParseAddrPort("[2001:db8::2]:4750"),
			netip.MustParseAddrPort("[::ffff:10.0.0.3]:1"),
			{},
		}
		for len(in) >= 3 {
			n := int(binary.BigEndian.Uint16(in))
			src := srcs[int(in[2])%len(srcs)]
			in = in[3:]
			n = min(n, len(in))
			tr.Deliver(in[:n], src)
			in = in[n:]
		drain:
			for {
				select {
				case c := <-tr.StreamCh():
					_ = c.SetDeadline(time.Now().Add(-time.Second))
					_, _ = c.Read(make([]byte, 16))
					_, _ = c.Write([]byte("reply"))
					_ = c.Close()
				case <-tr.PacketCh():
				default:
					break drain
				}
			}
		}
	})
}
