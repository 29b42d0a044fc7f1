// Package topodraw draws a topology: deterministic node positions (Compute)
// and an SVG picture of its routers, hosts and links with paths highlighted
// (Picture). The manager's dashboard and `vonctl paths -o svg` share it, so a
// network looks the same in both and every time it is drawn.
package topodraw

import (
	"math"

	"github.com/vonproject/von/topology"
)

// Point is a position in the picture, in SVG user units (y grows downwards).
type Point struct{ X, Y float64 }

// Layout is where each node of a topology is drawn: Pos[i] is the centre of
// Topo.Nodes[i], inside a Width × Height box.
type Layout struct {
	Width, Height float64
	Pos           []Point
}

// margin keeps nodes and their labels inside the box.
const margin = 40

// Compute lays a topology out: the routers on a circle in depth-first order
// (so a ring stays a ring), each host just outside the routers it hangs off,
// then a fixed number of force-directed steps (Fruchterman–Reingold). There is
// nothing random in it: the same topology always gets the same picture.
func Compute(t *topology.Topology) *Layout {
	n := len(t.Nodes)
	side := math.Round(math.Max(420, 110*math.Sqrt(float64(n))))
	l := &Layout{Width: side, Height: side, Pos: make([]Point, n)}
	if n == 0 {
		return l
	}
	adj := make([][]int, n)
	for _, lk := range t.Links {
		a, okA := t.NodeIndex(lk.A.Node)
		b, okB := t.NodeIndex(lk.B.Node)
		if !okA || !okB || a == b {
			continue
		}
		adj[a] = append(adj[a], b)
		adj[b] = append(adj[b], a)
	}
	p := initial(t, adj)
	relax(p, adj)
	fit(l, p)
	separate(l, 26)
	return l
}

// initial places routers on the unit circle in depth-first order and hosts
// outside the routers they are linked to. Without routers, the hosts take the
// circle.
func initial(t *topology.Topology, adj [][]int) []Point {
	n := len(t.Nodes)
	isRouter := func(i int) bool { return t.Nodes[i].Kind != topology.KindHost }
	var ring []int
	seen := make([]bool, n)
	var visit func(int)
	visit = func(v int) {
		seen[v] = true
		ring = append(ring, v)
		for _, w := range adj[v] {
			if !seen[w] && isRouter(w) {
				visit(w)
			}
		}
	}
	for i := range n {
		if !seen[i] && isRouter(i) {
			visit(i)
		}
	}
	if len(ring) == 0 {
		for i := range n {
			ring = append(ring, i)
		}
	}
	p := make([]Point, n)
	placed := make([]bool, n)
	for k, v := range ring {
		a := 2*math.Pi*float64(k)/float64(len(ring)) - math.Pi/2
		p[v] = Point{math.Cos(a), math.Sin(a)}
		placed[v] = true
	}
	// Hosts: outwards from the mean of their routers, siblings fanned out.
	siblings := map[int]int{} // router → hosts placed beside it so far
	for i := range n {
		if placed[i] {
			continue
		}
		var c Point
		first, k := -1, 0
		for _, w := range adj[i] {
			if placed[w] && isRouter(w) {
				c.X, c.Y = c.X+p[w].X, c.Y+p[w].Y
				k++
				if first < 0 {
					first = w
				}
			}
		}
		if k == 0 { // an isolated host, or one linked to hosts only
			a := 2*math.Pi*float64(i)/float64(n) - math.Pi/2
			p[i] = Point{1.3 * math.Cos(a), 1.3 * math.Sin(a)}
			placed[i] = true
			continue
		}
		c.X, c.Y = c.X/float64(k), c.Y/float64(k)
		a := math.Atan2(c.Y, c.X)
		if c.X == 0 && c.Y == 0 {
			a = -math.Pi / 2
		}
		s := siblings[first]
		siblings[first]++
		a += 0.18 * float64((s+1)/2) * float64(1-2*(s%2)) // 0, +, -, ++, --, …
		r := math.Hypot(c.X, c.Y) + 0.35
		p[i] = Point{r * math.Cos(a), r * math.Sin(a)}
		placed[i] = true
	}
	return p
}

// relax runs the force-directed steps: every pair repels, every link
// attracts, a weak pull keeps components together, and the step size cools
// to zero. The number of steps shrinks with the square of the node count so
// that a big topology is laid out in about a second.
func relax(p []Point, adj [][]int) {
	n := len(p)
	if n < 2 {
		return
	}
	if n > 4000 {
		return // the initial placement is the picture
	}
	iters := min(300, max(20, int(6e7/float64(n*n))))
	k := 1.6 / math.Sqrt(float64(n)) // ideal edge length in a box of side ~3
	k2 := k * k
	d := make([]Point, n)
	temp := 0.15
	for it := range iters {
		for i := range d {
			d[i] = Point{}
		}
		for i := range n {
			for j := i + 1; j < n; j++ {
				dx, dy := p[i].X-p[j].X, p[i].Y-p[j].Y
				dist2 := dx*dx + dy*dy
				if dist2 < 1e-12 { // coincident: push apart along a fixed direction
					dx, dy = 1e-3*float64(j-i), 1e-3
					dist2 = dx*dx + dy*dy
				}
				f := k2 / dist2 // (k²/d) / d: the force along the unit vector
				d[i].X, d[i].Y = d[i].X+dx*f, d[i].Y+dy*f
				d[j].X, d[j].Y = d[j].X-dx*f, d[j].Y-dy*f
			}
		}
		for i := range n {
			for _, j := range adj[i] {
				if j < i {
					continue
				}
				dx, dy := p[i].X-p[j].X, p[i].Y-p[j].Y
				dist := math.Hypot(dx, dy)
				f := dist / k // (d²/k) / d
				d[i].X, d[i].Y = d[i].X-dx*f, d[i].Y-dy*f
				d[j].X, d[j].Y = d[j].X+dx*f, d[j].Y+dy*f
			}
			d[i].X, d[i].Y = d[i].X-0.05*p[i].X/k, d[i].Y-0.05*p[i].Y/k
		}
		t := temp * (1 - float64(it)/float64(iters))
		for i := range n {
			m := math.Hypot(d[i].X, d[i].Y)
			if m < 1e-12 {
				continue
			}
			s := math.Min(m, t) / m
			p[i].X += d[i].X * s
			p[i].Y += d[i].Y * s
		}
	}
}

// fit scales the positions into the layout's box, keeping their aspect, and
// rounds them to a tenth of a unit.
func fit(l *Layout, p []Point) {
	minX, minY := math.Inf(1), math.Inf(1)
	maxX, maxY := math.Inf(-1), math.Inf(-1)
	for _, q := range p {
		minX, maxX = math.Min(minX, q.X), math.Max(maxX, q.X)
		minY, maxY = math.Min(minY, q.Y), math.Max(maxY, q.Y)
	}
	w, h := maxX-minX, maxY-minY
	inner := l.Width - 2*margin
	s := inner / math.Max(math.Max(w, h), 1e-9)
	if w == 0 && h == 0 {
		s = 0
	}
	// The box hugs the picture: a wide one needs less height, a tall one less width.
	ox, oy := float64(margin), float64(margin)
	l.Width = math.Round(w*s + 2*margin)
	l.Height = math.Round(h*s + 2*margin)
	for i, q := range p {
		l.Pos[i] = Point{round1(ox + (q.X-minX)*s), round1(oy + (q.Y-minY)*s)}
	}
}

// separate pushes apart nodes closer than gap (their shapes and labels would
// overlap), a few rounds over every pair, keeping them in the box.
func separate(l *Layout, gap float64) {
	n := len(l.Pos)
	if n > 4000 {
		return
	}
	p := l.Pos
	for range 30 {
		moved := false
		for i := range n {
			for j := i + 1; j < n; j++ {
				dx, dy := p[j].X-p[i].X, p[j].Y-p[i].Y
				d := math.Hypot(dx, dy)
				if d >= gap {
					continue
				}
				if d < 1e-9 {
					dx, dy, d = 1, 0, 1
				}
				push := (gap - d) / 2 / d
				p[i].X, p[i].Y = p[i].X-dx*push, p[i].Y-dy*push
				p[j].X, p[j].Y = p[j].X+dx*push, p[j].Y+dy*push
				moved = true
			}
		}
		for i := range p {
			p[i].X = math.Min(math.Max(p[i].X, margin), l.Width-margin)
			p[i].Y = math.Min(math.Max(p[i].Y, margin), l.Height-margin)
		}
		if !moved {
			break
		}
	}
	for i := range p {
		p[i] = Point{round1(p[i].X), round1(p[i].Y)}
	}
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
