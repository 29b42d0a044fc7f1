package replay

import (
	"cmp"
	"math"
	mrand "math/rand"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/quick"
)

// A scenario describes a sender and the two paths between it and the
// receiver. Every message is sent once per path; a path loses it with
// probability loss (in bursts of up to burst messages if burst > 1) and
// delivers it late by a uniform 0..delay messages plus a fixed lag.
type scenario struct {
	name  string
	n     int     // messages sent
	start uint64  // first sequence number
	gapP  float64 // probability that the sender skips ahead before a message
	gaps  []uint64
	paths [2]path
	dup   bool // every copy is delivered twice
}

type path struct {
	loss  float64
	burst int
	lag   int
	delay int
}

type arrival struct {
	at  float64 // arrival time, in message slots
	seq uint64
}

// run builds the arrival order of a scenario, feeds it to a Window and to the
// model, and checks what a receiver relies on:
//   - the window agrees with the model on every Check and Accept;
//   - no sequence number is delivered twice;
//   - every message that arrived on at least one path, at a time when it was
//     less than Width behind the highest delivered one, is delivered once;
//   - after the stream, every sequence number is rejected when offered again.
func (sc scenario) run(t *testing.T, rng *rand.Rand) {
	t.Helper()
	var sent []uint64
	for seq := sc.start; len(sent) < sc.n; seq++ {
		if sc.gapP > 0 && rng.Float64() < sc.gapP {
			g := sc.gaps[rng.IntN(len(sc.gaps))]
			if math.MaxUint64-seq < g {
				break
			}
			seq += g
		}
		sent = append(sent, seq)
		if seq == math.MaxUint64 {
			break
		}
	}
	var arr []arrival
	for p, ph := range sc.paths {
		lost := 0
		for i, s := range sent {
			if lost > 0 {
				lost--
				continue
			}
			if rng.Float64() < ph.loss {
				if ph.burst > 1 {
					lost = rng.IntN(ph.burst) // the rest of the burst
				}
				continue
			}
			at := float64(i+ph.lag) + float64(rng.IntN(ph.delay+1)) + float64(p)*0.5
			arr = append(arr, arrival{at, s})
			if sc.dup {
				arr = append(arr, arrival{at + 0.25, s})
			}
		}
	}
	slices.SortStableFunc(arr, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })

	var w Window
	m := newModel()
	delivered := map[uint64]int{}
	mustDeliver := map[uint64]bool{}
	for _, a := range arr {
		if _, ok := mustDeliver[a.seq]; !ok {
			// First copy: it must be delivered if it is inside the window.
			mustDeliver[a.seq] = a.seq > m.highest || m.highest-a.seq < Width
		}
		if step(t, &w, m, a.seq) {
			delivered[a.seq]++
		}
	}
	for s, must := range mustDeliver {
		if n := delivered[s]; n > 1 || (must && n != 1) || (!must && n != 0) {
			t.Fatalf("%s: seq %d delivered %d times (inside window on first arrival: %v)", sc.name, s, n, must)
		}
	}
	for s := range mustDeliver {
		if w.Check(s) || w.Accept(s) {
			t.Fatalf("%s: seq %d accepted after the stream", sc.name, s)
		}
	}
	// Unless the paths reorder by more than the width, nothing that arrived is
	// lost: the late path never costs a message.
	if maxLate := max(sc.paths[0].lag+sc.paths[0].delay, sc.paths[1].lag+sc.paths[1].delay); maxLate < Width/2 && sc.gapP == 0 {
		if len(delivered) != len(mustDeliver) {
			t.Fatalf("%s: %d of %d arrived messages delivered", sc.name, len(delivered), len(mustDeliver))
		}
	}
}

func TestStreams(t *testing.T) {
	const n = 40_000 // about 10 turns of the ring
	clean := path{}
	lossy := path{loss: 0.2}
	bursty := path{loss: 0.001, burst: 500}
	late := path{lag: 2000, delay: 50}
	jitter := path{delay: 300}
	scenarios := []scenario{
		{name: "in order, one path", n: n, start: 1, paths: [2]path{clean, {loss: 1}}},
		{name: "both paths clean", n: n, start: 1, paths: [2]path{clean, clean}},
		{name: "loss on one path", n: n, start: 1, paths: [2]path{lossy, clean}},
		{name: "loss on both", n: n, start: 1, paths: [2]path{lossy, lossy}},
		{name: "heavy loss on both", n: n, start: 1, paths: [2]path{{loss: 0.7}, {loss: 0.7}}},
		{name: "bursts on both", n: n, start: 1, paths: [2]path{bursty, bursty}},
		{name: "one path late", n: n, start: 1, paths: [2]path{clean, late}},
		{name: "late and lossy", n: n, start: 1, paths: [2]path{lossy, {loss: 0.3, burst: 50, lag: 3000, delay: 1000}}},
		{name: "late by almost the width", n: n, start: 1, paths: [2]path{bursty, {lag: Width - 100, delay: 50}}},
		{name: "late by more than the width", n: n, start: 1, paths: [2]path{bursty, {lag: Width, delay: 3000}}},
		{name: "jitter on both", n: n, start: 1, paths: [2]path{jitter, jitter}},
		{name: "duplication", n: n, start: 1, dup: true, paths: [2]path{lossy, late}},
		{name: "gaps of 10^6", n: n, start: 1, gapP: 0.001, gaps: []uint64{1e6}, paths: [2]path{lossy, late}},
		{name: "gaps of 2^40", n: n, start: 1, gapP: 0.001, gaps: []uint64{1 << 40, 1e6, 1000}, paths: [2]path{jitter, late}},
		{name: "up to 2^64-1", n: n, start: math.MaxUint64 - n + 1, paths: [2]path{lossy, late}},
		{name: "gaps near 2^64", n: n, start: math.MaxUint64 - 1<<41, gapP: 0.001, gaps: []uint64{1 << 37}, paths: [2]path{jitter, bursty}},
	}
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for seed := range uint64(2) {
				sc.run(t, rand.New(rand.NewPCG(uint64(i), seed)))
			}
		})
	}
}

// TestQuick feeds arbitrary streams built from small signed steps around the
// highest accepted sequence number, from an arbitrary start.
func TestQuick(t *testing.T) {
	prop := func(start uint64, steps []int16, big []uint8) bool {
		var w Window
		m := newModel()
		if w.Accept(start) != m.accept(start) {
			return false
		}
		for i, d := range steps {
			seq := m.highest + uint64(int64(d))
			if i < len(big) && big[i] < 8 {
				seq = m.highest + 1<<(8*big[i]) // sometimes a jump of 2^0 .. 2^56
			}
			if w.Check(seq) != m.check(seq) || w.Accept(seq) != m.accept(seq) {
				return false
			}
		}
		return true
	}
	cfg := &quick.Config{MaxCount: 2000, Rand: mrand.New(mrand.NewSource(1))}
	if err := quick.Check(prop, cfg); err != nil {
		t.Fatal(err)
	}
}
