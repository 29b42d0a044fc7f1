package replay

import (
	"math"
	"testing"
)

// model is the reference the Window is checked against: the set of accepted
// sequence numbers and the highest one, with the acceptance rule spelled out
// as in the Window documentation.
type model struct {
	seen    map[uint64]bool
	highest uint64
}

func newModel() *model { return &model{seen: map[uint64]bool{}} }

func (m *model) check(seq uint64) bool {
	switch {
	case seq == 0, m.seen[seq]:
		return false
	case seq <= m.highest && m.highest-seq >= Width:
		return false
	}
	return true
}

func (m *model) accept(seq uint64) bool {
	if !m.check(seq) {
		return false
	}
	m.seen[seq] = true
	m.highest = max(m.highest, seq)
	return true
}

func (m *model) reset() { *m = *newModel() }

// step offers seq to both the window and the model and fails on any
// disagreement, in Check or in Accept.
func step(t testing.TB, w *Window, m *model, seq uint64) bool {
	if got, want := w.Check(seq), m.check(seq); got != want {
		t.Helper() // only on failure: Helper is slow
		t.Fatalf("Check(%d) = %v, model %v (highest %d)", seq, got, want, m.highest)
	}
	got, want := w.Accept(seq), m.accept(seq)
	if got != want {
		t.Helper()
		t.Fatalf("Accept(%d) = %v, model %v (highest %d)", seq, got, want, m.highest)
	}
	return got
}

func TestZeroValue(t *testing.T) {
	var w Window
	if w.Check(0) || w.Accept(0) {
		t.Fatal("sequence number 0 accepted")
	}
	if !w.Check(1) || !w.Check(1) {
		t.Fatal("Check(1) on an empty window is false, or Check changed the window")
	}
	if !w.Accept(1) {
		t.Fatal("Accept(1) on an empty window failed")
	}
	if w.Check(1) || w.Accept(1) {
		t.Fatal("replay of 1 accepted")
	}
	// Everything up to Width is acceptable out of order from the start.
	if !w.Accept(Width) || !w.Accept(2) || w.Accept(2) {
		t.Fatal("out-of-order start failed")
	}
}

func TestEdgeOfWindow(t *testing.T) {
	const h = 1_000_000
	var w Window
	if !w.Accept(h) {
		t.Fatal("Accept(h)")
	}
	if w.Check(h-Width) || w.Accept(h-Width) {
		t.Errorf("seq Width below the highest accepted")
	}
	if !w.Check(h-Width+1) || !w.Accept(h-Width+1) {
		t.Errorf("seq Width-1 below the highest rejected")
	}
	if w.Accept(1) {
		t.Errorf("ancient seq accepted")
	}
	// Moving by one slides the edge by one: h-Width+1 was accepted, h-Width+2
	// was not and is still in.
	if !w.Accept(h+1) || w.Check(h-Width+1) || !w.Accept(h-Width+2) {
		t.Errorf("edge did not slide by one")
	}
}

func TestMaxUint64(t *testing.T) {
	const top = math.MaxUint64
	var w Window
	for _, s := range []uint64{top - 5, top, top - 1} {
		if !w.Accept(s) {
			t.Fatalf("Accept(%d) failed", s)
		}
	}
	if w.Accept(top) || w.Accept(top-1) || w.Accept(top-5) {
		t.Fatal("replay near 2^64 accepted")
	}
	if !w.Accept(top-Width+1) || w.Accept(top-Width) || w.Accept(1) {
		t.Fatal("edge of a window at 2^64-1 wrong")
	}
	// The window is stuck at the top: nothing wraps round to small numbers.
	for _, s := range []uint64{1, 2, Width, 1 << 63} {
		if w.Check(s) || w.Accept(s) {
			t.Fatalf("seq %d accepted after 2^64-1", s)
		}
	}
	// A first message at 2^64-1 on an empty window (a jump from 0) works too.
	w.Reset()
	if !w.Accept(top) || w.Accept(top) || !w.Accept(top-Width+1) {
		t.Fatal("jump from empty to 2^64-1")
	}
}

func TestReset(t *testing.T) {
	var w Window
	for s := uint64(1); s < 3*Width; s++ {
		w.Accept(s)
	}
	w.Reset()
	if w != (Window{}) {
		t.Fatal("Reset did not produce the zero value")
	}
	if !w.Accept(1) || !w.Accept(5) {
		t.Fatal("window not empty after Reset")
	}
}

func TestLongGaps(t *testing.T) {
	var w Window
	m := newModel()
	for _, s := range []uint64{1, 2, 3, 100} {
		step(t, &w, m, s)
	}
	for _, jump := range []uint64{Width - 1, Width, Width + 1, Blocks * 64, Blocks*64 + 1, 1e6, 1 << 40, 1 << 62} {
		base := m.highest
		// Before the jump, fill the window so that stale bits would show.
		for s := base + 1; s < base+Width; s++ {
			step(t, &w, m, s)
		}
		top := m.highest + jump
		if !step(t, &w, m, top) {
			t.Fatalf("jump of %d rejected", jump)
		}
		// Everything unseen inside the new window is accepted exactly once,
		// everything at or below the old highest that is now too old is not.
		for s := top - Width + 1; s < top; s++ {
			step(t, &w, m, s)
			step(t, &w, m, s)
		}
		step(t, &w, m, top-Width)
		step(t, &w, m, base)
	}
}

func TestRingWraps(t *testing.T) {
	// Run the window round the ring many times, with each message also
	// offered again half a window later and one full window later.
	var w Window
	m := newModel()
	const n = 20 * Blocks * 64
	for s := uint64(1); s <= n; s++ {
		if !step(t, &w, m, s) {
			t.Fatalf("in-order seq %d rejected", s)
		}
		if s > Width/2 && step(t, &w, m, s-Width/2) {
			t.Fatalf("replay of %d accepted", s-Width/2)
		}
		if s > Width && step(t, &w, m, s-Width) {
			t.Fatalf("too old seq %d accepted", s-Width)
		}
	}
}

// FuzzWindow drives a Window with operations decoded from the input and
// compares every answer with the reference model.
func FuzzWindow(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 1, 3})
	f.Add([]byte{3, 40, 1, 200, 2, 0xff, 0xff, 4, 0, 4, 1, 0, 1})
	f.Add([]byte{5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 1, 7, 0, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		var w Window
		m := newModel()
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		next16 := func() uint64 { return uint64(next())<<8 | uint64(next()) }
		for len(data) > 0 {
			var seq uint64
			switch op := next(); op % 9 {
			case 0: // small step forward
				seq = m.highest + uint64(next())
			case 1: // small step back
				seq = m.highest - uint64(next())
			case 2: // step back across the edge of the window
				seq = m.highest - next16()
			case 3: // jump forward by a power of two
				seq = m.highest + 1<<(next()%64)
			case 4: // near 2^64
				seq = math.MaxUint64 - uint64(next())
			case 5: // anywhere
				for range 8 {
					seq = seq<<8 | uint64(next())
				}
			case 6: // step forward past a few blocks
				seq = m.highest + next16()
			case 7: // Check only
				seq = m.highest - uint64(next())
				if got, want := w.Check(seq), m.check(seq); got != want {
					t.Fatalf("Check(%d) = %v, model %v", seq, got, want)
				}
				continue
			case 8:
				w.Reset()
				m.reset()
				continue
			}
			step(t, &w, m, seq)
		}
	})
}

func BenchmarkAcceptInOrder(b *testing.B) {
	var w Window
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		seq++
		if !w.Accept(seq) {
			b.Fatal("rejected")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkAcceptTwoCopies offers every message twice, the second copy on a
// path 100 messages late: one op is one message, two Accepts.
func BenchmarkAcceptTwoCopies(b *testing.B) {
	const lag = 100
	var w Window
	for s := uint64(1); s <= lag; s++ {
		w.Accept(s) // delivered by the first path before the loop
	}
	b.ReportAllocs()
	seq := uint64(lag)
	for b.Loop() {
		seq++
		if !w.Accept(seq) || w.Accept(seq-lag) {
			b.Fatal("wrong answer")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkAcceptJump is the worst case: every Accept jumps further than the
// window and clears the whole ring.
func BenchmarkAcceptJump(b *testing.B) {
	var w Window
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		seq += 1 << 20
		if !w.Accept(seq) {
			b.Fatal("rejected")
		}
	}
}
