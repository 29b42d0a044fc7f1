package group

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkRekeyAfterLeave50: 50 members on loopback; time from one member's
// Leave() to every survivor's SendKey returning a newer epoch. Target < 1 s.
func BenchmarkRekeyAfterLeave50(b *testing.B) { benchRekey(b, 50, true) }

// BenchmarkRekeyAfterKill50: the same after Close() (no leave: failure detection
// by memberlist's probes and suspicion). Target < 5 s.
func BenchmarkRekeyAfterKill50(b *testing.B) { benchRekey(b, 50, false) }

// benchRekey removes one member per iteration — the coordinator on even
// iterations, another member on odd ones — and replaces it (untimed) before the
// next.
func benchRekey(b *testing.B, n int, graceful bool) {
	c := newCluster(b)
	c.noRecord = true
	gs := c.grow(n, "b", nil)
	settle := func() uint64 {
		var e uint64
		c.waitFor(30*time.Second, fmt.Sprintf("%d members on one epoch", n), func() bool {
			var ok bool
			e, ok = converged(gs, n)
			return ok
		})
		return e
	}
	var total, worst time.Duration
	next := n
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e0 := settle()
		vi := 0
		if i%2 == 1 {
			vi = 1 + (i*17)%(len(gs)-1)
		}
		victim := gs[vi]
		survivors := slices.Delete(slices.Clone(gs), vi, vi+1)
		b.StartTimer()
		start := time.Now()
		done := make(chan error, 1) // Leave returns after its broadcast; the rekey runs meanwhile
		go func() {
			if graceful {
				done <- victim.Leave(context.Background())
			} else {
				done <- victim.Close()
			}
		}()
		c.waitFor(20*time.Second, "survivors on a newer epoch", func() bool {
			for _, g := range survivors {
				if epochOf(g) <= e0 {
					return false
				}
			}
			return true
		})
		d := time.Since(start)
		b.StopTimer()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		total += d
		worst = max(worst, d)
		c.remove(victim)
		gs = append(survivors, c.start(c.cfg(fmt.Sprintf("b%02d", next))))
		next++
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/op")
	b.ReportMetric(worst.Seconds(), "max-s")
}
