package seal

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/vonproject/von/replay"
	"github.com/vonproject/von/wire"
)

func TestInPlace(t *testing.T) {
	s := testSealer(t, 1, 1, "alice", 1)
	msg := []byte("sealed where it lies")
	buf := make([]byte, 100)
	copy(buf[wire.HeaderLen:], msg)
	pkt, err := s.Seal(buf[:0], wire.Header{ONID: 1, Seq: 9}, buf[wire.HeaderLen:wire.HeaderLen+len(msg)])
	if err != nil {
		t.Fatal(err)
	}
	want, _ := s.Seal(nil, wire.Header{ONID: 1, Seq: 9}, msg)
	if !bytes.Equal(pkt, want) || &pkt[0] != &buf[0] {
		t.Fatal("in-place seal differs from a copying seal")
	}
	_, got, err := s.Open(pkt[wire.HeaderLen:wire.HeaderLen], pkt)
	if err != nil || !bytes.Equal(got, msg) || &got[0] != &pkt[wire.HeaderLen] {
		t.Fatalf("in-place open: %q %v", got, err)
	}
}

func TestOverlapRefused(t *testing.T) {
	s := testSealer(t, 1, 1, "alice", 1)
	buf := make([]byte, 200)
	h := wire.Header{ONID: 1, Seq: 9}
	// Plaintext where the header or the tag would go.
	for _, off := range []int{0, 1, wire.HeaderLen - 1, wire.HeaderLen + 1, 40} {
		if _, err := s.Seal(buf[:0], h, buf[off:off+20]); !errors.Is(err, ErrOverlap) {
			t.Errorf("plaintext at %d: %v", off, err)
		}
	}
	pkt, _ := s.Seal(buf[:0], h, make([]byte, 20))
	for _, dst := range [][]byte{pkt[:0], pkt[1:1], pkt[wire.HeaderLen+1 : wire.HeaderLen+1]} {
		if _, _, err := s.Open(dst, pkt); !errors.Is(err, ErrOverlap) {
			t.Errorf("open into %p: %v", dst, err)
		}
	}
	// Output after the packet, in the same array, is fine.
	if _, _, err := s.Open(buf[len(pkt):len(pkt)], pkt); err != nil {
		t.Errorf("open after the packet: %v", err)
	}
}

func TestNoAllocation(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	s := testSealer(t, 1, 1, "alice", 1)
	msg := make([]byte, 256)
	pkt := make([]byte, 0, 512)
	out := make([]byte, 0, 512)
	h := wire.Header{ONID: 1, Seq: 1}
	var w replay.Window
	allocs := testing.AllocsPerRun(100, func() {
		h.Seq++
		p, err := s.Seal(pkt[:0], h, msg)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Open(out[:0], p); err != nil || !w.Accept(h.Seq) {
			t.Fatal(err)
		}
		p[20] ^= 1
		if _, _, err := s.Open(out[:0], p); !errors.Is(err, ErrAuth) {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per seal, open and failed open", allocs)
	}
}

func TestConcurrent(t *testing.T) {
	s := testSealer(t, 1, 1, "alice", 1)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			msg := bytes.Repeat([]byte{byte(g)}, 100)
			for i := range 200 {
				p, err := s.Seal(nil, wire.Header{ONID: 1, Seq: uint64(g*1000 + i + 1)}, msg)
				if err != nil {
					t.Error(err)
					return
				}
				if _, got, err := s.Open(nil, p); err != nil || !bytes.Equal(got, msg) {
					t.Error("concurrent round trip failed", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// FuzzOpen feeds arbitrary packets to Open, which must never panic and must
// not open anything it did not seal, and round-trips a seal of the same bytes.
func FuzzOpen(f *testing.F) {
	s := testSealer(f, 1, 1, "alice", 1)
	good, _ := s.Seal(nil, wire.Header{ONID: 1, KeyEpoch: 1, Seq: 5}, []byte("hello"))
	f.Add(good, uint64(5), uint8(0))
	f.Add(good[:wire.HeaderLen], uint64(1), uint8(1))
	f.Add([]byte{}, uint64(0), uint8(2))
	f.Add(bytes.Repeat([]byte{0x10}, 40), uint64(1<<63), uint8(0x1f))
	f.Fuzz(func(t *testing.T, data []byte, seq uint64, pf uint8) {
		// Arbitrary bytes: no panic, and nothing forged opens.
		h, msg, err := s.Open(nil, data)
		if err == nil {
			// Only a genuine seal can open; the seed is the one we made.
			again, _ := s.Seal(nil, h, msg)
			if !bytes.Equal(again, data) {
				t.Fatalf("opened % x, which is not a seal of its own plaintext", data)
			}
		} else if h != (wire.Header{}) || msg != nil {
			t.Fatalf("failed open returned %+v %q", h, msg)
		}
		// In place into the packet itself, and into the start of it.
		buf := bytes.Clone(data)
		if len(buf) >= wire.HeaderLen {
			s.Open(buf[wire.HeaderLen:wire.HeaderLen], buf)
		}
		s.Open(bytes.Clone(data)[:0], data)

		// Round trip of a seal of the same bytes with a header from the input.
		hdr := wire.Header{ONID: 1, Flags: pf & 0x0f, PathIndex: pf >> 4 & 1, KeyEpoch: uint16(seq), Seq: seq}
		pkt, err := s.Seal(nil, hdr, data)
		if seq == 0 || len(data) > MaxPlaintext {
			if err == nil {
				t.Fatal("sealed seq 0 or an oversized plaintext")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := SetPath(pkt, 1-hdr.PathIndex); err != nil {
			t.Fatal(err)
		}
		gh, got, err := s.Open(nil, pkt)
		if err != nil || !bytes.Equal(got, data) || gh.Seq != seq || gh.PathIndex != 1-hdr.PathIndex || gh.Flags != hdr.Flags {
			t.Fatalf("round trip: %+v %v", gh, err)
		}
	})
}

const benchSize = 256

func benchSetup(b *testing.B) (*Sealer, []byte, []byte, []byte) {
	s := testSealer(b, 1, 1, "alice", 1)
	return s, make([]byte, benchSize), make([]byte, 0, benchSize+Overhead), make([]byte, 0, benchSize)
}

func reportMsgs(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkSeal(b *testing.B) {
	s, msg, pkt, _ := benchSetup(b)
	h := wire.Header{ONID: 1, Seq: 0}
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		h.Seq++
		if _, err := s.Seal(pkt, h, msg); err != nil {
			b.Fatal(err)
		}
	}
	reportMsgs(b)
}

func BenchmarkOpen(b *testing.B) {
	s, msg, pkt, out := benchSetup(b)
	pkt, _ = s.Seal(pkt, wire.Header{ONID: 1, Seq: 1}, msg)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Open(out, pkt); err != nil {
			b.Fatal(err)
		}
	}
	reportMsgs(b)
}

// BenchmarkSealWindowOpen is one message end to end: Seal, SetPath on a copy,
// then for both copies Open and Window.Accept; the second Accept is rejected.
func BenchmarkSealWindowOpen(b *testing.B) {
	s, msg, pkt, out := benchSetup(b)
	cp := make([]byte, 0, benchSize+Overhead)
	var w replay.Window
	h := wire.Header{ONID: 1}
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		h.Seq++
		p0, _ := s.Seal(pkt, h, msg)
		p1 := append(cp, p0...)
		if err := SetPath(p1, 1); err != nil {
			b.Fatal(err)
		}
		for i, p := range [][]byte{p0, p1} {
			rh, _, err := s.Open(out, p)
			if err != nil || w.Accept(rh.Seq) != (i == 0) {
				b.Fatal("copy", i, err)
			}
		}
	}
	reportMsgs(b)
}

// BenchmarkSealCheckOpen is the receive path of replay's package doc: the
// duplicate is dropped by Window.Check before the AEAD, so a message costs
// one Seal and one Open.
func BenchmarkSealCheckOpen(b *testing.B) {
	s, msg, pkt, out := benchSetup(b)
	cp := make([]byte, 0, benchSize+Overhead)
	var w replay.Window
	h := wire.Header{ONID: 1}
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		h.Seq++
		p0, _ := s.Seal(pkt, h, msg)
		p1 := append(cp, p0...)
		if err := SetPath(p1, 1); err != nil {
			b.Fatal(err)
		}
		delivered := 0
		for _, p := range [][]byte{p0, p1} {
			ph, _, err := wire.Parse(p)
			if err != nil || !w.Check(ph.Seq) {
				continue
			}
			if rh, _, err := s.Open(out, p); err == nil && w.Accept(rh.Seq) {
				delivered++
			}
		}
		if delivered != 1 {
			b.Fatal("delivered", delivered)
		}
	}
	reportMsgs(b)
}

// BenchmarkGCMBaseline is crypto/cipher's AES-256-GCM Seal of the same
// payload with nothing around it: the floor for BenchmarkSeal.
func BenchmarkGCMBaseline(b *testing.B) {
	s, msg, pkt, _ := benchSetup(b)
	var nonce [12]byte
	ad := make([]byte, wire.HeaderLen)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		nonce[11]++
		s.aead.Seal(pkt, nonce[:], msg, ad)
	}
	reportMsgs(b)
}
