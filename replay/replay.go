// Package replay is the anti-replay and duplicate-elimination window of a VON
// receiver (RFC 6479 style).
//
// A receiver keeps one Window per (sender incarnation, epoch): the data key is
// per sender, incarnation and epoch (docs/groups.md), so each key has its own
// sequence space, starting at 1. On a redundant ON every message arrives twice,
// once per path; the window delivers the first copy and drops the second, and
// drops replays, whichever path is late.
//
// The receive path, per datagram from a known sender:
//
//	h, _, err := wire.Parse(pkt)  // drop on error
//	w.Check(h.Seq)                // drop if false: duplicates skip the AEAD
//	msg, err := open(pkt)         // seal.Sealer.Open; drop on error
//	w.Accept(h.Seq)               // drop if false: the other copy won the race
//	deliver(msg)
//
// Accept must be called only after the AEAD open succeeded, so that a forged
// packet cannot advance the window and make later legitimate packets look old.
//
// The window is a ring of 64-bit blocks (RFC 6479 §2): bit s%64 of block
// (s/64)%Blocks records sequence number s. One block more than the width needs
// is kept as slack, so advancing the window clears whole blocks and never has
// to shift bits; a jump forward clears at most Blocks blocks, however long the
// gap.
package replay

// Window geometry.
const (
	// Blocks is the number of 64-bit blocks in the bitmap ring (a power of two).
	Blocks = 256
	// Width is the number of sequence numbers the window tracks: with H the
	// highest accepted sequence number, a sequence number s ≤ H is accepted
	// (once) if and only if H-s < Width. Anything older is rejected as too old.
	// It is the ring minus one block of slack: 255 × 64 = 16320 messages.
	Width = (Blocks - 1) * blockBits

	blockBits  = 64
	blockShift = 6
	blockMask  = Blocks - 1
	bitMask    = blockBits - 1
)

// Window is an anti-replay window for one sequence space. Its zero value is an
// empty window, ready to use: every sequence number from 1 up is acceptable.
//
// Sequence number 0 is never valid and always rejected. The full uint64 range
// above it is valid, including math.MaxUint64, which is accepted once like any
// other; a window whose highest accepted sequence number is math.MaxUint64
// cannot advance any further, and from then on accepts only the unseen
// sequence numbers within Width below it. Senders never get there: a sender
// must change keys (new incarnation or epoch, hence a new Window) long before
// its counter wraps, since a wrapped counter would repeat an AEAD nonce.
//
// A Window is not safe for concurrent use; the caller serialises calls (one
// lock per Window, held for the Check or Accept only, not across the AEAD).
type Window struct {
	highest uint64 // highest accepted sequence number, 0 if none
	ring    [Blocks]uint64
}

// Check reports whether seq would be accepted now: it is not 0, it has not
// been accepted before, and it is not Width or more below the highest accepted
// sequence number. Check does not change the window.
func (w *Window) Check(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > w.highest {
		return true
	}
	if w.highest-seq >= Width {
		return false
	}
	return w.ring[(seq>>blockShift)&blockMask]&(1<<(seq&bitMask)) == 0
}

// Accept checks seq as Check does and, if it is acceptable, records it and
// returns true. For every sequence number Accept returns true at most once,
// and exactly once if it is first offered while inside the window. Call it
// only for packets that authenticated.
//
// Accepting a sequence number above the highest moves the window forward; a
// jump of any length costs at most Blocks block clears.
func (w *Window) Accept(seq uint64) bool {
	if seq == 0 {
		return false
	}
	block := seq >> blockShift
	if seq > w.highest {
		cur := w.highest >> blockShift
		// Clear the blocks between the old highest block (exclusive) and
		// the new one (inclusive): they held sequence numbers a whole ring
		// older, which are now outside the window.
		n := block - cur
		if n >= Blocks {
			w.ring = [Blocks]uint64{}
		} else {
			for i := cur + 1; i <= block; i++ {
				w.ring[i&blockMask] = 0
			}
		}
		w.highest = seq
	} else if w.highest-seq >= Width {
		return false
	}
	i, bit := block&blockMask, uint64(1)<<(seq&bitMask)
	if w.ring[i]&bit != 0 {
		return false
	}
	w.ring[i] |= bit
	return true
}

// Reset empties the window, as if it were new.
func (w *Window) Reset() {
	*w = Window{}
}
