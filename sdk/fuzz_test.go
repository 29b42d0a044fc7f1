package sdk

import (
	"testing"
	"time"

	"github.com/vonproject/von/seal"
	"github.com/vonproject/von/wire"
)

// FuzzReceive feeds arbitrary datagrams, from a member's address and from a
// stranger's, to a joined member's receive path: it never panics, and nothing but a
// packet sealed by the member is ever delivered.
func FuzzReceive(f *testing.F) {
	addr, c := startManager(f)
	reserve(f, c, "fuzz", true, "h1", "h2")
	vs := joinAll(f, addr, "fuzz", "h1", "h2")
	waitFor(f, 10*time.Second, "ready", func() bool { return vs["h1"].Ready("h2") })
	tx, rx := vs["h1"], vs["h2"]
	f.Add([]byte{}, false)
	f.Add(make([]byte, 16), true)
	f.Add([]byte{0, 0, 0, 1, 0x11, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff}, true)
	f.Fuzz(func(t *testing.T, b []byte, fromMember bool) {
		from := tx.LocalAddr()
		if !fromMember {
			from = rx.LocalAddr() // not a member's address as far as rx's data path goes
		}
		if len(b) >= wire.HeaderLen {
			b = append([]byte(nil), b...)
			copy(b, []byte{byte(rx.onID >> 24), byte(rx.onID >> 16), byte(rx.onID >> 8), byte(rx.onID)})
		}
		before := rx.Stats().Delivered
		rx.handle(b, from, time.Now())
		if rx.Stats().Delivered != before {
			t.Fatalf("a datagram nobody sealed was delivered: %x", b)
		}
		// A genuine packet still gets through afterwards.
		s, epoch, err := tx.sealer()
		if err != nil {
			t.Fatal(err)
		}
		pk, err := s.Seal(nil, wire.Header{ONID: tx.onID, KeyEpoch: uint16(epoch), Seq: tx.seq.Add(1)}, []byte("ok"))
		if err != nil {
			t.Fatal(err)
		}
		_ = seal.SetPath(pk, 1)
		rx.handle(pk, tx.LocalAddr(), time.Now())
		select {
		case m := <-rx.inbox:
			if string(m.Data) != "ok" {
				t.Fatalf("got %q", m.Data)
			}
		case <-time.After(time.Second):
			t.Fatal("a genuine packet was not delivered after the fuzz input")
		}
	})
}
