package seal_test

import (
	"fmt"

	"github.com/vonproject/von/replay"
	"github.com/vonproject/von/seal"
	"github.com/vonproject/von/wire"
)

// A sender seals each message once and sends it on both paths; the receiver
// delivers it once, whichever copy arrives first.
func Example() {
	epochKey := make([]byte, 32) // from the group's key distribution
	key, _ := seal.SenderKey(epochKey, 7, 1, "alice", 0x5eed)
	sender, _ := seal.NewSealer(key)
	receiver, _ := seal.NewSealer(key) // the receiver derives the same key
	var window replay.Window           // one per (sender incarnation, epoch)

	// Send: one seal, two copies.
	p0, _ := sender.Seal(nil, wire.Header{ONID: 7, KeyEpoch: 1, Seq: 1}, []byte("hello"))
	p1 := append([]byte(nil), p0...)
	_ = seal.SetPath(p1, 1)

	// Receive: path 1 happens to win.
	buf := make([]byte, 0, 1500)
	for _, pkt := range [][]byte{p1, p0} {
		h, _, err := wire.Parse(pkt)
		if err != nil || !window.Check(h.Seq) {
			fmt.Println("dropped a duplicate before the AEAD")
			continue
		}
		h, msg, err := receiver.Open(buf[:0], pkt)
		if err != nil || !window.Accept(h.Seq) {
			continue
		}
		fmt.Printf("path %d delivered seq %d: %s\n", h.PathIndex, h.Seq, msg)
	}
	// Output:
	// path 1 delivered seq 1: hello
	// dropped a duplicate before the AEAD
}
