package topodraw

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/vonproject/von/topology"
)

// Dir is one direction of a link: from its a end to its b end, or back.
type Dir int

// The two directions.
const (
	AtoB Dir = iota
	BtoA
)

// Suffix is how element ids and the dashboard name the direction: "ab" or "ba".
func (d Dir) Suffix() string {
	if d == BtoA {
		return "ba"
	}
	return "ab"
}

// Path is a path to highlight: its links, drawn in the style of its index
// (0 solid blue, 1 dashed purple, …).
type Path struct {
	Index int
	Links []string
	Label string // legend text, e.g. "path 1: cost 5"
}

// Picture is what Write draws.
type Picture struct {
	Topo   *topology.Topology
	Layout *Layout
	// Caption lines are drawn above the network, the first in bold.
	Caption []string
	// LinkLabels writes "name (cost)" beside every link.
	LinkLabels bool
	// Direction, when set, draws the two directions of every link as two
	// parallel lines (a→b on the right of the way from a to b) in the colour
	// it gives, with its title shown on hover. Nil: one grey line per link.
	Direction func(link int, d Dir) (color, title string)
	// Paths are drawn over the links, in their index's style.
	Paths []Path
	// Marked nodes are drawn emphasised (the two ends of `vonctl paths`).
	Marked map[string]bool
}

// Colours.
const (
	linkGrey  = "#9aa3ad"
	nodeFill  = "#ffffff"
	nodeLine  = "#37474f"
	markFill  = "#fff59d"
	labelText = "#263238"
)

var pathColors = []string{"#1565c0", "#8e24aa", "#00897b", "#ef6c00", "#6d4c41", "#d81b60", "#3949ab", "#7cb342"}

// PathColor is the stroke colour of path index i.
func PathColor(i int) string {
	return pathColors[((i%len(pathColors))+len(pathColors))%len(pathColors)]
}

// PathDash is the stroke-dasharray of path index i: odd indices are dashed.
func PathDash(i int) string {
	if i%2 == 1 {
		return "9 6"
	}
	return ""
}

// PathStyle names path index i's style for people: "blue, solid".
func PathStyle(i int) string {
	names := []string{"blue", "purple", "teal", "orange", "brown", "pink", "indigo", "green"}
	s := "solid"
	if PathDash(i) != "" {
		s = "dashed"
	}
	return names[((i%len(names))+len(names))%len(names)] + ", " + s
}

// Swatch is one entry of a legend.
type Swatch struct {
	Color string `json:"color"`
	Dash  string `json:"dash,omitempty"`
	Label string `json:"label"`
}

// UsageScale is UsageColor's legend, from nothing reserved to full.
var UsageScale = []Swatch{
	{Color: "#c5ccd3", Label: "nothing reserved"},
	{Color: "#43a047", Label: "≤ 25%"},
	{Color: "#c0ca33", Label: "≤ 50%"},
	{Color: "#fb8c00", Label: "≤ 75%"},
	{Color: "#e53935", Label: "> 75%"},
	{Color: "#8e0000", Label: "full"},
}

// PathScale is the legend of the first n path indices.
func PathScale(n int) []Swatch {
	out := make([]Swatch, n)
	for i := range out {
		out[i] = Swatch{Color: PathColor(i), Dash: PathDash(i), Label: fmt.Sprintf("path %d", i)}
	}
	return out
}

// UsageColor colours a link direction by the share of its reservable capacity
// that is reserved (UsageScale): grey when nothing is, then green, yellow,
// orange, red, dark red when full.
func UsageColor(reserved, reservable uint64) string {
	switch {
	case reserved == 0:
		return UsageScale[0].Color
	case reservable == 0 || reserved >= reservable:
		return UsageScale[5].Color
	}
	f := float64(reserved) / float64(reservable)
	switch {
	case f <= 0.25:
		return UsageScale[1].Color
	case f <= 0.5:
		return UsageScale[2].Color
	case f <= 0.75:
		return UsageScale[3].Color
	default:
		return UsageScale[4].Color
	}
}

// halo outlines text in white, so that it stays legible over lines.
const halo = ` stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke"`

// Geometry.
const (
	routerR   = 10.0
	hostW     = 20.0
	hostH     = 14.0
	dirOffset = 2.2  // half the gap between a link's two directions
	parallel  = 11.0 // between parallel links of the same two nodes
	lineH     = 18.0 // caption line height
)

// Segment is where a link is drawn: its centre line from the a end to the b end.
type Segment struct{ A, B Point }

// Segments gives the centre line of every link, parallel links between the same
// two nodes set apart.
func Segments(t *topology.Topology, l *Layout) []Segment {
	type pair struct{ a, b int }
	count := map[pair]int{}
	idx := make([]pair, len(t.Links))
	for i, lk := range t.Links {
		a, _ := t.NodeIndex(lk.A.Node)
		b, _ := t.NodeIndex(lk.B.Node)
		k := pair{min(a, b), max(a, b)}
		idx[i] = k
		count[k]++
	}
	seen := map[pair]int{}
	out := make([]Segment, len(t.Links))
	for i, lk := range t.Links {
		a, _ := t.NodeIndex(lk.A.Node)
		b, _ := t.NodeIndex(lk.B.Node)
		pa, pb := l.Pos[a], l.Pos[b]
		k := idx[i]
		j := seen[k]
		seen[k]++
		off := (float64(j) - float64(count[k]-1)/2) * parallel
		if a > b { // offsets are taken on the pair's own orientation
			off = -off
		}
		nx, ny := normal(pa, pb)
		out[i] = Segment{Point{pa.X + nx*off, pa.Y + ny*off}, Point{pb.X + nx*off, pb.Y + ny*off}}
	}
	return out
}

// normal is the unit vector to the right of the way from a to b (y down).
func normal(a, b Point) (float64, float64) {
	dx, dy := b.X-a.X, b.Y-a.Y
	d := math.Hypot(dx, dy)
	if d == 0 {
		return 0, 0
	}
	return -dy / d, dx / d
}

// Write writes the picture as a standalone SVG document. Element ids: n-I for
// node I (a <g class="node router|host" data-node=NAME>), l-I for link I (a
// <g class="link" data-link=NAME> with its centre line in data-x1 … data-y2),
// d-I-ab and d-I-ba for its two directions when Direction is set.
func (p *Picture) Write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	t, l := p.Topo, p.Layout
	top := 0.0
	if len(p.Caption) > 0 || len(p.Paths) > 0 {
		top = lineH*float64(len(p.Caption)+legendLines(p.Paths)) + 14
	}
	// The caption's width is guessed from its length (no font metrics here).
	width, height := l.Width, l.Height+top
	for _, c := range p.Caption {
		width = math.Max(width, math.Ceil(28+7.8*float64(utf8.RuneCountInString(c))))
	}
	for _, pa := range p.Paths {
		width = math.Max(width, math.Ceil(64+7.2*float64(utf8.RuneCountInString(pa.Label+PathStyle(pa.Index))+3)))
	}
	left := math.Round((width - l.Width) / 2)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" class="topodraw" viewBox="0 0 %s %s" width="%s" height="%s" font-family="Helvetica, Arial, sans-serif" font-size="11">`+"\n",
		num(width), num(height), num(width), num(height))
	fmt.Fprintf(bw, `<rect class="background" x="0" y="0" width="%s" height="%s" fill="#ffffff"/>`+"\n", num(width), num(height))
	p.writeCaption(bw)
	fmt.Fprintf(bw, `<g class="network" transform="translate(%s %s)">`+"\n", num(left), num(top))
	segs := Segments(t, l)
	onPath := map[string][]int{} // link → path indices
	for _, pa := range p.Paths {
		for _, ln := range pa.Links {
			onPath[ln] = append(onPath[ln], pa.Index)
		}
	}
	bw.WriteString(`<g class="links">` + "\n")
	for i, lk := range t.Links {
		s := segs[i]
		fmt.Fprintf(bw, `<g class="link" id="l-%d" data-link="%s" data-x1="%s" data-y1="%s" data-x2="%s" data-y2="%s">`,
			i, esc(lk.Name), num(s.A.X), num(s.A.Y), num(s.B.X), num(s.B.Y))
		fmt.Fprintf(bw, `<title>%s</title>`, esc(linkTitle(lk)))
		a, b := trim(s.A, s.B, endGap(t, lk.A.Node)), trim(s.B, s.A, endGap(t, lk.B.Node))
		if p.Direction == nil {
			fmt.Fprintf(bw, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2"/>`, num(a.X), num(a.Y), num(b.X), num(b.Y), linkGrey)
		} else {
			nx, ny := normal(s.A, s.B)
			for _, d := range []Dir{AtoB, BtoA} {
				color, title := p.Direction(i, d)
				o := dirOffset
				from, to := a, b
				if d == BtoA {
					o, from, to = -o, b, a
				}
				fmt.Fprintf(bw, `<line class="dir %s" id="d-%d-%s" x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="%s"><title>%s</title></line>`,
					d.Suffix(), i, d.Suffix(), num(from.X+nx*o), num(from.Y+ny*o), num(to.X+nx*o), num(to.Y+ny*o), esc(color), num(2*dirOffset), esc(title))
			}
		}
		if p.LinkLabels {
			nx, ny := normal(s.A, s.B)
			mx, my := (s.A.X+s.B.X)/2+nx*10, (s.A.Y+s.B.Y)/2+ny*10
			fill := "#546e7a"
			if ix := onPath[lk.Name]; len(ix) > 0 {
				fill = PathColor(ix[0])
			}
			fmt.Fprintf(bw, `<text class="link-label" x="%s" y="%s" font-size="9" text-anchor="middle" dominant-baseline="middle" fill="%s"%s>%s (%d)</text>`,
				num(mx), num(my), fill, halo, esc(lk.Name), lk.Cost)
		}
		bw.WriteString("</g>\n")
	}
	bw.WriteString("</g>\n")
	bw.WriteString(`<g class="paths" pointer-events="none">` + "\n")
	for _, pa := range p.Paths {
		for _, ln := range pa.Links {
			i, ok := t.LinkIndex(ln)
			if !ok {
				continue
			}
			s := segs[i]
			writePathLine(bw, pa.Index, ln, s)
		}
	}
	bw.WriteString("</g>\n")
	bw.WriteString(`<g class="nodes">` + "\n")
	for i, nd := range t.Nodes {
		q := l.Pos[i]
		kind := "router"
		if nd.Kind == topology.KindHost {
			kind = "host"
		}
		fill, sw := nodeFill, "1.5"
		if p.Marked[nd.Name] {
			fill, sw = markFill, "3"
		}
		fmt.Fprintf(bw, `<g class="node %s" id="n-%d" data-node="%s"><title>%s</title>`, kind, i, esc(nd.Name), esc(nodeTitle(nd)))
		if kind == "host" {
			fmt.Fprintf(bw, `<rect x="%s" y="%s" width="%s" height="%s" rx="2" fill="%s" stroke="%s" stroke-width="%s"/>`,
				num(q.X-hostW/2), num(q.Y-hostH/2), num(hostW), num(hostH), fill, nodeLine, sw)
		} else {
			fmt.Fprintf(bw, `<circle cx="%s" cy="%s" r="%s" fill="%s" stroke="%s" stroke-width="%s"/>`, num(q.X), num(q.Y), num(routerR), fill, nodeLine, sw)
		}
		fmt.Fprintf(bw, `<text x="%s" y="%s" text-anchor="middle" fill="%s"%s>%s</text></g>`+"\n", num(q.X), num(q.Y+routerR+12), labelText, halo, esc(nd.Name))
	}
	bw.WriteString("</g>\n</g>\n</svg>\n")
	return bw.Flush()
}

// writePathLine highlights link ln on path index i (the dashboard's script
// draws the same element).
func writePathLine(w *bufio.Writer, i int, ln string, s Segment) {
	dash := ""
	if d := PathDash(i); d != "" {
		dash = ` stroke-dasharray="` + d + `"`
	}
	fmt.Fprintf(w, `<line class="path p%d" data-link="%s" x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="5" stroke-linecap="round" opacity="0.9"%s/>`+"\n",
		i, esc(ln), num(s.A.X), num(s.A.Y), num(s.B.X), num(s.B.Y), PathColor(i), dash)
}

func legendLines(paths []Path) int {
	seen := map[int]bool{}
	n := 0
	for _, p := range paths {
		if !seen[p.Index] {
			seen[p.Index] = true
			n++
		}
	}
	return n
}

func (p *Picture) writeCaption(w *bufio.Writer) {
	y := 8.0
	for i, c := range p.Caption {
		y += lineH
		weight := ""
		if i == 0 {
			weight = ` font-weight="bold"`
		}
		fmt.Fprintf(w, `<text class="caption" x="14" y="%s" font-size="13"%s fill="%s">%s</text>`+"\n", num(y), weight, labelText, esc(c))
	}
	seen := map[int]bool{}
	for _, pa := range p.Paths {
		if seen[pa.Index] {
			continue
		}
		seen[pa.Index] = true
		y += lineH
		s := Segment{Point{14, y - 4}, Point{44, y - 4}}
		writePathLine(w, pa.Index, "", s)
		label := pa.Label
		if label == "" {
			label = fmt.Sprintf("path %d", pa.Index+1)
		}
		fmt.Fprintf(w, `<text class="legend" x="54" y="%s" font-size="12" fill="%s">%s (%s)</text>`+"\n", num(y), labelText, esc(label), PathStyle(pa.Index))
	}
}

// endGap is how far from a node's centre its links stop.
func endGap(t *topology.Topology, node string) float64 {
	if n, ok := t.Node(node); ok && n.Kind == topology.KindHost {
		return hostH/2 + 1
	}
	return routerR + 1
}

// trim moves a towards b by d (not past the middle).
func trim(a, b Point, d float64) Point {
	dx, dy := b.X-a.X, b.Y-a.Y
	l := math.Hypot(dx, dy)
	if l == 0 {
		return a
	}
	d = math.Min(d, l/2)
	return Point{a.X + dx/l*d, a.Y + dy/l*d}
}

func linkTitle(l topology.Link) string {
	return fmt.Sprintf("%s: %s — %s, %s, reservable %s, cost %d", l.Name, l.A, l.B,
		topology.FormatRate(l.Capacity), topology.FormatRate(l.ReservableRate()), l.Cost)
}

func nodeTitle(n topology.Node) string {
	s := n.Name + " (" + string(n.Kind)
	if n.Address.IsValid() {
		s += " " + n.Address.String()
	}
	return s + ")"
}

func num(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
