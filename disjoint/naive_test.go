package disjoint

import (
	"math/rand/v2"
	"testing"
)

// TestNaiveIsWorse measures how often "shortest path, delete it, search
// again" misses the optimum on random graphs, and checks it never beats it.
// Figures (seeded, so stable) are quoted in docs/benchmarks.md.
func TestNaiveIsWorse(t *testing.T) {
	for _, tc := range []struct {
		n   int
		deg float64
	}{{30, 3}, {100, 4}, {1000, 4}} {
		rng := rand.New(rand.NewPCG(uint64(tc.n), 9))
		var pairs, failed, costlier int
		var extra float64
		for range 20 {
			g := randomLargeGraph(rng, tc.n, tc.deg)
			for range 50 {
				a, b := rng.IntN(tc.n), rng.IntN(tc.n)
				if a == b {
					continue
				}
				for _, mode := range []Mode{LinkDisjoint, NodeDisjoint} {
					opt := Options{Mode: mode}
					r, err := g.Disjoint(a, b, opt)
					if err != nil {
						continue // ring: only node-disjoint can fail
					}
					pairs++
					cost, ok := naive(g, a, b, opt)
					switch {
					case !ok:
						failed++
					case cost < r.TotalCost:
						t.Fatalf("naive %d beats optimum %d", cost, r.TotalCost)
					case cost > r.TotalCost:
						costlier++
						extra += float64(cost-r.TotalCost) / float64(r.TotalCost)
					}
				}
			}
		}
		avg := 0.0
		if costlier > 0 {
			avg = 100 * extra / float64(costlier)
		}
		t.Logf("n=%d deg=%.0f: %d pairs; naive finds no second path for %.1f%%, a costlier pair for %.1f%% (%.1f%% dearer on average)",
			tc.n, tc.deg, pairs, 100*float64(failed)/float64(pairs), 100*float64(costlier)/float64(pairs), avg)
	}
}
