package gossipnet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestSeqFilter(t *testing.T) {
	var f seqFilter
	for _, s := range []uint64{1, 2, 5, 3} {
		if f.seen(s) {
			t.Fatalf("%d seen before mark", s)
		}
		f.mark(s)
		if !f.seen(s) {
			t.Fatalf("%d not seen after mark", s)
		}
	}
	if f.seen(4) {
		t.Fatal("4 seen but never marked")
	}
	f.mark(5 + filterWindow - 1) // 5 is still inside the window; 3 and 2 are too old
	if !f.seen(5) || f.seen(3+filterWindow) || !f.seen(2) {
		t.Fatal("window slide wrong")
	}
	f.mark(10 * filterWindow) // everything before falls out: too old counts as seen
	if !f.seen(5) || f.seen(10*filterWindow-1) || !f.seen(10*filterWindow) {
		t.Fatal("jump wrong")
	}
	f.resetTo(42)
	if f.seen(1) {
		t.Fatal("reset kept state")
	}
}

func TestPacketSourcesBounded(t *testing.T) {
	var p packetIn
	p.init(4)
	now := time.Now()
	for i := range 10 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 4750)
		h := packetHeader{instance: 1, seq: 1, nfrag: 1}
		if buf, dup, _ := p.accept(h, []byte{1}, src, now); buf == nil || dup {
			t.Fatalf("source %d: first packet not delivered", i)
		}
		if _, dup, _ := p.accept(h, []byte{1}, src, now); !dup {
			t.Fatalf("source %d: duplicate delivered", i)
		}
	}
	if len(p.sources) != 4 || p.lru.Len() != 4 {
		t.Fatalf("%d sources tracked, want 4", len(p.sources))
	}
	// A new instance at the same source starts a fresh window.
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 9}), 4750)
	if buf, _, _ := p.accept(packetHeader{instance: 2, seq: 1, nfrag: 1}, []byte{1}, src, now); buf == nil {
		t.Fatal("restarted sender's packet dropped")
	}
}

func TestReassemblyBounded(t *testing.T) {
	var p packetIn
	p.init(16)
	src := netip.MustParseAddrPort("10.0.0.1:4750")
	now := time.Now()
	frag := make([]byte, 60000)
	// Incomplete packets never exceed the bounds.
	for seq := uint64(1); seq <= 100; seq++ {
		p.accept(packetHeader{instance: 1, seq: seq, frag: 0, nfrag: 64}, frag, src, now)
		if len(p.partials) > maxPartials || p.partialBytes > maxPartialBytes {
			t.Fatalf("partials %d, %d bytes", len(p.partials), p.partialBytes)
		}
	}
	// Expired partials are dropped.
	p.accept(packetHeader{instance: 1, seq: 500, frag: 0, nfrag: 2}, []byte{1}, src, now.Add(time.Hour))
	if len(p.partials) != 1 {
		t.Fatalf("%d partials after expiry", len(p.partials))
	}
}

// recvPackets collects packets from tr for d.
func recvPackets(tr *Transport, d time.Duration) []*memberlist.Packet {
	var got []*memberlist.Packet
	timeout := time.After(d)
	for {
		select {
		case p := <-tr.PacketCh():
			got = append(got, p)
		case <-timeout:
			return got
		}
	}
}

func TestPacketsDeduplicatedAndReassembled(t *testing.T) {
	em := netem{reorder: 0.2} // every datagram arrives twice, some reordered
	a, _ := newNode(t, em, Config{})
	b, _ := newNode(t, em, Config{PacketQueue: 1024})
	sizes := []int{1, 100, a.PacketPayload(), a.PacketPayload() + 1, 5000, 60000}
	const n = 300
	want := make(map[uint32][]byte)
	for i := range uint32(n) {
		msg := randBytes(max(4, sizes[int(i)%len(sizes)]))
		binary.BigEndian.PutUint32(msg, i)
		want[i] = msg
		if _, err := a.WriteTo(msg, b.LocalAddr().String()); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(5 * time.Millisecond) // let the receiver keep up
		}
	}
	got := recvPackets(b, 500*time.Millisecond)
	seen := make(map[uint32]bool)
	for _, p := range got {
		id := binary.BigEndian.Uint32(p.Buf)
		if seen[id] {
			t.Fatalf("packet %d delivered twice", id)
		}
		seen[id] = true
		if !bytes.Equal(p.Buf, want[id]) {
			t.Fatalf("packet %d corrupted", id)
		}
		if p.From.String() != a.LocalAddr().String() {
			t.Fatalf("From = %v, want %v", p.From, a.LocalAddr())
		}
		if _, ok := p.From.(*net.UDPAddr); !ok || p.Timestamp.IsZero() {
			t.Fatalf("bad packet metadata %T %v", p.From, p.Timestamp)
		}
	}
	st := b.Stats()
	if len(got) != n || st.PacketDuplicates == 0 {
		t.Fatalf("delivered %d of %d packets; stats %+v", len(got), n, st)
	}
}

func TestPacketsUnderLossNeverDuplicated(t *testing.T) {
	em := netem{dropCopy: 0.2, dropCall: 0.1, reorder: 0.2}
	a, _ := newNode(t, em, Config{})
	b, _ := newNode(t, em, Config{})
	for i := range uint32(200) {
		msg := binary.BigEndian.AppendUint32(nil, i)
		if _, err := a.WriteToAddress(msg, memberlist.Address{Addr: b.LocalAddr().String(), Name: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[uint32]bool)
	for _, p := range recvPackets(b, 300*time.Millisecond) {
		id := binary.BigEndian.Uint32(p.Buf)
		if seen[id] {
			t.Fatalf("packet %d delivered twice", id)
		}
		seen[id] = true
	}
	// Expected delivery: 0.9 * (1 - 0.2^2) = 86%.
	if len(seen) < 150 || len(seen) == 200 {
		t.Fatalf("delivered %d of 200 under loss", len(seen))
	}
}

func TestWriteToErrors(t *testing.T) {
	a, _ := newNode(t, netem{}, Config{})
	if _, err := a.WriteTo(make([]byte, maxFragments*a.PacketPayload()+1), "127.0.0.1:1"); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("huge packet: %v", err)
	}
	for _, addr := range []string{"", "localhost:80", "127.0.0.1:0", "0.0.0.0:4750"} {
		if _, err := a.WriteTo([]byte{1}, addr); err == nil {
			t.Fatalf("WriteTo(%q) succeeded", addr)
		}
	}
	if _, err := a.WriteTo(nil, "127.0.0.1:1"); err == nil {
		t.Fatal("empty packet accepted")
	}
	_ = a.Shutdown()
	if _, err := a.WriteTo([]byte{1}, "127.0.0.1:1"); !errors.Is(err, ErrShutdown) {
		t.Fatalf("WriteTo after Shutdown: %v", err)
	}
}

type fixedConduit struct{ addr netip.AddrPort }

func (c fixedConduit) WriteTo([]byte, netip.AddrPort) error { return nil }
func (c fixedConduit) LocalAddr() netip.AddrPort            { return c.addr }

func TestNewAndAdvertise(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without conduit succeeded")
	}
	if _, err := New(Config{Conduit: fixedConduit{}}); err == nil {
		t.Fatal("New with invalid local address succeeded")
	}
	if _, err := New(Config{Conduit: fixedConduit{netip.MustParseAddrPort("10.1.2.3:4750")}, MaxDatagram: 10}); err == nil {
		t.Fatal("tiny MaxDatagram accepted")
	}
	tr, err := New(Config{Conduit: fixedConduit{netip.MustParseAddrPort("[::ffff:10.1.2.3]:4750")}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown()
	ip, port, err := tr.FinalAdvertiseAddr("", 7946)
	if err != nil || ip.String() != "10.1.2.3" || len(ip) != 4 || port != 4750 {
		t.Fatalf("FinalAdvertiseAddr = %v %d %v", ip, port, err)
	}
	ip, port, err = tr.FinalAdvertiseAddr("192.0.2.7", 5000)
	if err != nil || ip.String() != "192.0.2.7" || port != 5000 {
		t.Fatalf("FinalAdvertiseAddr(explicit) = %v %d %v", ip, port, err)
	}
	if _, _, err := tr.FinalAdvertiseAddr("bogus", 1); err == nil {
		t.Fatal("bogus advertise address accepted")
	}
	un, err := New(Config{Conduit: fixedConduit{netip.MustParseAddrPort("0.0.0.0:4750")}})
	if err != nil {
		t.Fatal(err)
	}
	defer un.Shutdown()
	if _, _, err := un.FinalAdvertiseAddr("", 0); err == nil {
		t.Fatal("unspecified local address advertised")
	}
}
