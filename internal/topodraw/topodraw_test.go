package topodraw

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vonproject/von/topology"
)

func load(t *testing.T, path string) *topology.Topology {
	t.Helper()
	tp, err := topology.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// The same topology always gets the same picture, inside its box, with no
// two nodes on top of each other.
func TestLayoutIsDeterministicAndSpread(t *testing.T) {
	for _, f := range []string{"../../e2e/testdata/ring.yaml", "../../e2e/testdata/threecore.yaml", "../../topology/testdata/six.yaml", "../../examples/isp.yaml"} {
		tp := load(t, f)
		t0 := time.Now()
		a := Compute(tp)
		took := time.Since(t0)
		b := Compute(tp)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two layouts differ", f)
		}
		minGap := math.Inf(1)
		for i, p := range a.Pos {
			if p.X < margin-1 || p.Y < margin-1 || p.X > a.Width-margin+1 || p.Y > a.Height-margin+1 {
				t.Errorf("%s: %s at %v is outside %v × %v", f, tp.Nodes[i].Name, p, a.Width, a.Height)
			}
			for j := range i {
				minGap = math.Min(minGap, math.Hypot(p.X-a.Pos[j].X, p.Y-a.Pos[j].Y))
			}
		}
		// Nodes are 20 units wide; a big network is drawn in a bigger box.
		if minGap < 12 {
			t.Errorf("%s: two nodes only %.1f apart", f, minGap)
		}
		t.Logf("%s: %d nodes in %v × %v, closest %.1f apart, laid out in %v", f, len(tp.Nodes), a.Width, a.Height, minGap, took)
	}
}

// A ring of routers is drawn as a ring: the routers are about as far from
// the centre of the picture as one another.
func TestRingStaysARing(t *testing.T) {
	var y strings.Builder
	y.WriteString("nodes:\n")
	for _, r := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		y.WriteString("  - {name: " + r + "}\n")
	}
	y.WriteString("links:\n")
	for _, l := range []string{"a, b: b", "b, b: c", "c, b: d", "d, b: e", "e, b: f", "f, b: g", "g, b: h", "h, b: a"} {
		y.WriteString("  - {a: " + l + ", capacity: 1G}\n")
	}
	tp, err := topology.Parse([]byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	l := Compute(tp)
	var cx, cy float64
	for _, p := range l.Pos {
		cx, cy = cx+p.X/8, cy+p.Y/8
	}
	lo, hi := math.Inf(1), 0.0
	for _, p := range l.Pos {
		r := math.Hypot(p.X-cx, p.Y-cy)
		lo, hi = math.Min(lo, r), math.Max(hi, r)
	}
	if lo < 0.85*hi {
		t.Errorf("radii from %.1f to %.1f: not a ring (%v)", lo, hi, l.Pos)
	}
}

type svgDoc struct {
	Groups []svgG `xml:"g"`
}

type svgG struct {
	Class  string    `xml:"class,attr"`
	ID     string    `xml:"id,attr"`
	Node   string    `xml:"data-node,attr"`
	Link   string    `xml:"data-link,attr"`
	Title  string    `xml:"title"`
	Lines  []svgLine `xml:"line"`
	Groups []svgG    `xml:"g"`
}

type svgLine struct {
	Class  string `xml:"class,attr"`
	ID     string `xml:"id,attr"`
	Link   string `xml:"data-link,attr"`
	Stroke string `xml:"stroke,attr"`
	Dash   string `xml:"stroke-dasharray,attr"`
	Title  string `xml:"title"`
}

func (g svgG) walk(fn func(svgG)) {
	fn(g)
	for _, c := range g.Groups {
		c.walk(fn)
	}
}

// The picture is well-formed SVG with a group per node and per link, the
// directions coloured and titled as asked, and the paths drawn in their
// styles.
func TestWriteSVG(t *testing.T) {
	tp := load(t, "../../e2e/testdata/ring.yaml")
	pic := Picture{Topo: tp, Layout: Compute(tp), Caption: []string{"h1 → h2 <test> & co"},
		Direction: func(link int, d Dir) (string, string) {
			return UsageColor(uint64(link), 4), tp.Links[link].Name + "/" + d.Suffix()
		},
		Paths: []Path{{Index: 0, Links: []string{"h1-r1", "r1-r2"}}, {Index: 1, Links: []string{"h1-r1", "r1-r4"}}},
	}
	var b bytes.Buffer
	if err := pic.Write(&b); err != nil {
		t.Fatal(err)
	}
	var doc svgDoc
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("not XML: %v\n%s", err, b.String())
	}
	if !strings.Contains(b.String(), "h1 → h2 &lt;test&gt; &amp; co") {
		t.Error("the caption is not escaped")
	}
	nodes := map[string]bool{}
	links := map[string]svgG{}
	var paths []svgLine
	for _, g := range doc.Groups {
		g.walk(func(g svgG) {
			switch {
			case strings.HasPrefix(g.Class, "node "):
				nodes[g.Node] = true
			case g.Class == "link":
				links[g.Link] = g
			case g.Class == "paths":
				paths = append(paths, g.Lines...)
			}
		})
	}
	for i, n := range tp.Nodes {
		if !nodes[n.Name] {
			t.Errorf("node %d (%s) not drawn", i, n.Name)
		}
	}
	for i, l := range tp.Links {
		g, ok := links[l.Name]
		if !ok || len(g.Lines) != 2 {
			t.Errorf("link %s: %+v", l.Name, g)
			continue
		}
		for k, d := range []Dir{AtoB, BtoA} {
			ln := g.Lines[k]
			if ln.ID != "d-"+strconv.Itoa(i)+"-"+d.Suffix() || ln.Title != l.Name+"/"+d.Suffix() || ln.Stroke != UsageColor(uint64(i), 4) {
				t.Errorf("link %s %s: %+v", l.Name, d.Suffix(), ln)
			}
		}
	}
	if len(paths) != 4 || paths[0].Link != "h1-r1" || paths[0].Stroke != PathColor(0) || paths[0].Dash != "" ||
		paths[3].Link != "r1-r4" || paths[3].Stroke != PathColor(1) || paths[3].Dash == "" {
		t.Errorf("paths: %+v", paths)
	}
	if PathColor(0) == PathColor(1) {
		t.Error("path 0 and path 1 look alike")
	}
}

// Parallel links between the same two nodes are drawn apart.
func TestParallelLinksApart(t *testing.T) {
	tp, err := topology.Parse([]byte("nodes: [{name: a}, {name: b}]\nlinks:\n  - {a: a, b: b, capacity: 1G}\n  - {a: b, b: a, capacity: 1G}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := Segments(tp, Compute(tp))
	if s[0] == s[1] || s[0] == (Segment{s[1].B, s[1].A}) {
		t.Errorf("parallel links on one line: %v", s)
	}
	if err := (&Picture{Topo: tp, Layout: Compute(tp)}).Write(io.Discard); err != nil {
		t.Fatal(err)
	}
}

func TestUsageColor(t *testing.T) {
	for _, tc := range []struct {
		r, max uint64
		want   int
	}{{0, 10, 0}, {1, 100, 1}, {25, 100, 1}, {26, 100, 2}, {60, 100, 3}, {90, 100, 4}, {100, 100, 5}, {5, 0, 5}} {
		if got := UsageColor(tc.r, tc.max); got != UsageScale[tc.want].Color {
			t.Errorf("UsageColor(%d, %d) = %s, want %s (%s)", tc.r, tc.max, got, UsageScale[tc.want].Color, UsageScale[tc.want].Label)
		}
	}
}
