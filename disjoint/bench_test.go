package disjoint

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func asNoPair(err error, e **NoPairError) bool { return errors.As(err, e) }

// randomLargeGraph returns a connected random graph of n nodes with average
// degree deg: a ring (so every pair has two link-disjoint paths) plus random
// chords, costs uniform in 1..100, capacities 1–10 Gbit/s.
func randomLargeGraph(rng *rand.Rand, n int, deg float64) *Graph {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("r%d", i)
	}
	m := int(float64(n) * deg / 2)
	links := make([]Link, 0, max(m, n))
	for i := range n {
		if n > 2 || i == 0 {
			links = append(links, Link{A: i, B: (i + 1) % n})
		}
	}
	for len(links) < m {
		a, b := rng.IntN(n), rng.IntN(n)
		if a != b {
			links = append(links, Link{A: a, B: b})
		}
	}
	for i := range links {
		links[i].Cost = uint32(1 + rng.IntN(100))
		links[i].Capacity = uint64(1+rng.IntN(10)) * 1e9
		links[i].Reservable = 0.8
	}
	g, err := New(names, links)
	if err != nil {
		panic(err)
	}
	return g
}

var benchSizes = []int{1_000, 10_000, 100_000}

type benchGraph struct {
	g     *Graph
	pairs [][2]int
}

var benchCache = map[int]benchGraph{}

func benchSetup(b *testing.B, n int) benchGraph {
	if bg, ok := benchCache[n]; ok {
		return bg
	}
	rng := rand.New(rand.NewPCG(uint64(n), 42))
	bg := benchGraph{g: randomLargeGraph(rng, n, 4)}
	for len(bg.pairs) < 256 {
		a, c := rng.IntN(n), rng.IntN(n)
		if a != c {
			bg.pairs = append(bg.pairs, [2]int{a, c})
		}
	}
	benchCache[n] = bg
	return bg
}

func BenchmarkShortestPath(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			bg := benchSetup(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p := bg.pairs[i%len(bg.pairs)]
				i++
				if _, err := bg.g.ShortestPath(p[0], p[1], Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchPair(b *testing.B, opt Options) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			bg := benchSetup(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p := bg.pairs[i%len(bg.pairs)]
				i++
				if _, err := bg.g.Disjoint(p[0], p[1], opt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkLinkDisjointPair(b *testing.B) { benchPair(b, Options{}) }
func BenchmarkNodeDisjointPair(b *testing.B) { benchPair(b, Options{Mode: NodeDisjoint}) }

// BenchmarkLinkDisjointPairCapacity asks for 1 Gbit/s with random
// reservations looked up through Options.Reserved on every relaxation.
func BenchmarkLinkDisjointPairCapacity(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			bg := benchSetup(b, n)
			rng := rand.New(rand.NewPCG(1, 1))
			res := make([]uint64, 2*bg.g.NumLinks())
			for i := range res {
				res[i] = uint64(rng.IntN(8)) * 1e8
			}
			opt := Options{Rate: 1e8, Reserved: ReservedSlice(res)}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p := bg.pairs[i%len(bg.pairs)]
				i++
				_, _ = bg.g.Disjoint(p[0], p[1], opt)
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			bg := benchSetup(b, n)
			names := make([]string, n)
			for i := range names {
				names[i] = bg.g.NodeName(i)
			}
			links := make([]Link, bg.g.NumLinks())
			for i := range links {
				links[i] = bg.g.Link(i)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(names, links); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPairOverDijkstra alternates one ShortestPath and one Disjoint
// call on the same pair and reports each one's mean time and their ratio;
// interleaving keeps the ratio fair on a busy machine.
func BenchmarkPairOverDijkstra(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			bg := benchSetup(b, n)
			var sp, pair time.Duration
			i := 0
			for b.Loop() {
				p := bg.pairs[i%len(bg.pairs)]
				i++
				t0 := time.Now()
				if _, err := bg.g.ShortestPath(p[0], p[1], Options{}); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := bg.g.Disjoint(p[0], p[1], Options{}); err != nil {
					b.Fatal(err)
				}
				pair += time.Since(t1)
				sp += t1.Sub(t0)
			}
			b.ReportMetric(float64(sp.Nanoseconds())/float64(i), "dijkstra-ns")
			b.ReportMetric(float64(pair.Nanoseconds())/float64(i), "pair-ns")
			b.ReportMetric(float64(pair)/float64(sp), "ratio")
		})
	}
}

// BenchmarkISP cycles through the host pairs of examples/isp.yaml (378
// nodes, 730 links, 38 SRLGs on the backbone) that have a redundant pair.
func BenchmarkISP(b *testing.B) {
	g := loadGraph(b, "../examples/isp.yaml")
	var hosts []int
	for v := range g.NumNodes() {
		if name := g.NodeName(v); name[0] == 'h' && name[len(name)-2:] != "-9" {
			hosts = append(hosts, v)
		}
	}
	for _, tc := range []struct {
		name string
		opt  Options
	}{{"srlg", Options{}}, {"ignore-srlg", Options{IgnoreSRLG: true}}, {"node-srlg", Options{Mode: NodeDisjoint}}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				a, c := hosts[i%len(hosts)], hosts[(i*7+3)%len(hosts)]
				i++
				if a == c {
					continue
				}
				if _, err := g.Disjoint(a, c, tc.opt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
