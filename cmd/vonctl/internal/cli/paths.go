package cli

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vonproject/von/disjoint"
	"github.com/vonproject/von/internal/clifmt"
	"github.com/vonproject/von/internal/topodraw"
	"github.com/vonproject/von/onpath"
	"github.com/vonproject/von/topology"
)

type pathsFlags struct {
	topology     string
	from, to     string
	nodeDisjoint bool
	bandwidth    string
	k            int
	ignoreSRLG   bool
	pairs        string
}

func newPathsCmd(g *Global) *cobra.Command {
	f := &pathsFlags{}
	cmd := &cobra.Command{
		Use:   "paths --topology FILE --from A --to B",
		Short: "Print the cheapest set of disjoint paths between two nodes (offline)",
		Long: `paths reads a topology file and prints the pair of link-disjoint paths from A to B
with the least total cost (router-disjoint with --node-disjoint), the paths an ON uses
to send every packet twice. It needs no manager.

Only links whose reservable capacity carries --bandwidth in both directions are used,
and the paths share no shared-risk link group (srlg) unless --ignore-srlg is given.
With -o json the output is {"paths":[{"nodes":[...],"links":[...],"cost":N},...],"total_cost":N};
-o dot draws the topology with the paths coloured (render with Graphviz: dot -Tsvg);
-o svg draws the same picture as SVG itself, without Graphviz.
If no such paths exist, vonctl says which constraint made it impossible and exits 1.

--pairs FILE answers many pairs in one run (the topology is read once): FILE holds
one "FROM TO" pair per line (blank lines and # comments are skipped). The table has
one row per pair; -o json/yaml gives {"pairs":[{"from":..,"to":..,"paths":[..],
"total_cost":N} or {"from":..,"to":..,"error":".."},...]}. A pair without paths does
not stop the others; vonctl exits 1 if any pair failed.`,
		Example: `  vonctl paths --topology topo.yaml --from h1 --to h2
  vonctl paths --topology topo.yaml --from h1 --to h2 --node-disjoint --bandwidth 10Mbit -o json
  vonctl paths --topology topo.yaml --from h1 --to h2 -o dot | dot -Tsvg > paths.svg
  vonctl paths --topology topo.yaml --from h1 --to h2 -o svg > paths.svg
  vonctl paths --topology topo.yaml --pairs pairs.txt -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runPaths(g, f) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.topology, "topology", "t", "", "topology file (YAML, docs/topology.md)")
	fl.StringVar(&f.from, "from", "", "source node name")
	fl.StringVar(&f.to, "to", "", "target node name")
	fl.BoolVar(&f.nodeDisjoint, "node-disjoint", false, "paths share no router either (router-disjoint)")
	fl.StringVar(&f.bandwidth, "bandwidth", "", "rate every link must carry in both directions, e.g. 10Mbit")
	fl.IntVarP(&f.k, "paths", "k", 2, "number of disjoint paths (1 = plain shortest path)")
	fl.BoolVar(&f.ignoreSRLG, "ignore-srlg", false, "allow the paths to share shared-risk link groups")
	fl.StringVar(&f.pairs, "pairs", "", "answer every pair in FILE (one \"FROM TO\" per line, - for stdin) in one run")
	return cmd
}

// pathsJSON is the -o json/yaml shape docs/cli.md documents.
type pathsJSON struct {
	Paths     []pathJSON `json:"paths"`
	TotalCost int64      `json:"total_cost"`
	// Shared lists links that several of the paths cross (a single-homed host's access
	// link): every copy of a message crosses them, so an ON is charged copies × its
	// rate there.
	Shared []sharedJSON `json:"shared_links,omitempty"`
}

type sharedJSON struct {
	Link   string `json:"link"`
	Copies int    `json:"copies"`
}

type pathJSON struct {
	Nodes []string `json:"nodes"`
	Links []string `json:"links"`
	Cost  int64    `json:"cost"`
}

func runPaths(g *Global, f *pathsFlags) error {
	format, err := g.Format(append(clifmt.Common, clifmt.Dot, clifmt.SVG)...)
	if err != nil {
		return err
	}
	need := []struct{ name, v string }{{"--topology", f.topology}, {"--from", f.from}, {"--to", f.to}}
	if f.pairs != "" {
		if f.from != "" || f.to != "" {
			return usageError(errors.New("--pairs answers the pairs in its file: drop --from and --to"))
		}
		if format == clifmt.Dot || format == clifmt.SVG {
			return usageError(fmt.Errorf("--pairs has no -o %s (draw one pair at a time)", format))
		}
		need = need[:1]
	}
	var missing []string
	for _, m := range need {
		if m.v == "" {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return usageError(fmt.Errorf("paths needs %s (see 'vonctl paths --help')", strings.Join(missing, ", ")))
	}
	if f.k < 1 || f.k > 64 {
		return usageError(fmt.Errorf("--paths %d: want 1 to 64", f.k))
	}
	opt := disjoint.Options{K: f.k, IgnoreSRLG: f.ignoreSRLG}
	if f.nodeDisjoint {
		opt.Mode = disjoint.NodeDisjoint
	}
	if f.bandwidth != "" {
		if opt.Rate, err = topology.ParseRate(f.bandwidth); err != nil {
			return usageError(fmt.Errorf("--bandwidth: %w", err))
		}
	}

	topo, err := topology.Load(f.topology)
	if err != nil {
		return failure(err, "fix the topology file where the error points")
	}
	graph, err := disjoint.FromTopology(topo)
	if err != nil {
		return failure(err, "")
	}
	if f.pairs != "" {
		return runPairs(g, f, opt, format, topo, graph)
	}
	if _, err := nodeArg(topo, graph, "--from", f.from); err != nil {
		return err
	}
	if _, err := nodeArg(topo, graph, "--to", f.to); err != nil {
		return err
	}
	out, res, err := planPair(topo, graph, f, opt, f.from, f.to)
	if err != nil {
		return pathsFailure(err)
	}
	if res.Heuristic {
		fmt.Fprintf(g.Stderr, "warning: %s\n", res.Note)
	}
	switch format {
	case clifmt.Table:
		return pathsTable(g.Stdout, out, f, opt)
	case clifmt.Dot:
		return pathsDot(g.Stdout, topo, res, out, f, opt)
	case clifmt.SVG:
		return pathsSVG(g.Stdout, topo, out, f, opt)
	default:
		return clifmt.Write(g.Stdout, format, out)
	}
}

// planPair plans the paths between from and to as reserve would.
func planPair(topo *topology.Topology, graph *disjoint.Graph, f *pathsFlags, opt disjoint.Options, from, to string) (*pathsJSON, *disjoint.Result, error) {
	plan, err := onpath.PlanON(topo, graph, onpath.Request{Members: []string{from, to}, Paths: f.k,
		NodeDisjoint: f.nodeDisjoint, IgnoreSRLG: f.ignoreSRLG, Rate: opt.Rate})
	if err != nil {
		return nil, nil, err
	}
	res := plan.Pairs[0].Result
	out := &pathsJSON{TotalCost: res.TotalCost, Paths: make([]pathJSON, len(res.Paths))}
	for i, p := range res.Paths {
		pj := pathJSON{Cost: p.Cost, Nodes: make([]string, len(p.Nodes)), Links: make([]string, len(p.Links))}
		for j, v := range p.Nodes {
			pj.Nodes[j] = graph.NodeName(v)
		}
		for j, l := range p.Links {
			pj.Links[j] = graph.LinkName(l)
		}
		out.Paths[i] = pj
	}
	for _, l := range plan.Links {
		if c := plan.Copies[l]; c > 1 {
			out.Shared = append(out.Shared, sharedJSON{Link: graph.LinkName(l), Copies: c})
		}
	}
	return out, res, nil
}

func nodeArg(topo *topology.Topology, graph *disjoint.Graph, flag, name string) (int, error) {
	i, err := graph.NodeIndex(name)
	if err == nil {
		return i, nil
	}
	names := make([]string, 0, 8)
	for _, n := range topo.Nodes {
		if len(names) == 8 {
			names = append(names, "…")
			break
		}
		names = append(names, n.Name)
	}
	return 0, failure(fmt.Errorf("%s %q: no such node in the topology", flag, name),
		"nodes are named in the file's nodes: list ("+strings.Join(names, ", ")+")")
}

// pathsFailure turns a library error into the message and hint a user can act on.
func pathsFailure(err error) error {
	var npe *disjoint.NoPairError
	var ce *onpath.CapacityError
	switch {
	case errors.As(err, &ce):
		return failure(err, "try a smaller --bandwidth: every copy crosses the access link")
	case errors.Is(err, onpath.ErrSameRouter):
		return failure(err, "attach one of them to another router, or plan without redundancy (--paths 1)")
	case !errors.As(err, &npe):
		return failure(err, "")
	}
	err = errors.New(strings.TrimPrefix(err.Error(), "disjoint: "))
	hint := npe.Hint
	switch npe.Constraint {
	case disjoint.ConstraintCapacity:
		hint = "try a smaller --bandwidth"
		if npe.Found > 0 {
			hint += fmt.Sprintf(", or --paths %d", npe.Found)
		}
	case disjoint.ConstraintNodeDisjoint:
		hint = "drop --node-disjoint: link-disjoint paths exist"
	case disjoint.ConstraintSRLG:
		hint = "pass --ignore-srlg to accept the shared risk, or add a link outside " + strings.Join(npe.Cut, ", ")
	case disjoint.ConstraintSearchLimit:
		hint = "pass --ignore-srlg to accept shared risk; a pair without it may exist but was not found in time"
	case disjoint.ConstraintTopology:
		if npe.Found == 0 {
			hint = "check that " + npe.From + " and " + npe.To + " are linked in the topology file"
		} else if npe.Want > 1 {
			hint = npe.Hint + fmt.Sprintf(", or ask for --paths %d", npe.Found)
		}
	}
	return failure(err, hint)
}

func pathsTable(w io.Writer, out *pathsJSON, f *pathsFlags, opt disjoint.Options) error {
	tw := clifmt.NewTable(w)
	fmt.Fprintln(tw, "PATH\tCOST\tHOPS\tNODES\tLINKS")
	for i, p := range out.Paths {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\n", i+1, p.Cost, len(p.Links),
			strings.Join(p.Nodes, " → "), strings.Join(p.Links, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "total cost %d: %s\n", out.TotalCost, describe(len(out.Paths), f, opt)); err != nil {
		return err
	}
	for _, sl := range out.Shared {
		charge := ""
		if opt.Rate > 0 {
			charge = fmt.Sprintf(": an ON of %s is charged %s there", topology.FormatRate(opt.Rate), topology.FormatRate(uint64(sl.Copies)*opt.Rate))
		}
		if _, err := fmt.Fprintf(w, "%s is on all %d paths (the only link of its host), so it carries %d copies of every message%s\n",
			sl.Link, sl.Copies, sl.Copies, charge); err != nil {
			return err
		}
	}
	return nil
}

// describe says what the paths guarantee, e.g. "2 link-disjoint paths, no
// shared SRLG, 10Mbit free in both directions on every link".
func describe(n int, f *pathsFlags, opt disjoint.Options) string {
	var parts []string
	if n == 1 {
		parts = append(parts, "shortest path")
	} else {
		parts = append(parts, fmt.Sprintf("%d %s paths", n, opt.Mode))
		if !f.ignoreSRLG {
			parts = append(parts, "no shared SRLG")
		}
	}
	if opt.Rate > 0 {
		parts = append(parts, topology.FormatRate(opt.Rate)+" free in both directions on every link")
	}
	return strings.Join(parts, ", ")
}

var pathColors = []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

func pathsDot(w io.Writer, topo *topology.Topology, res *disjoint.Result, out *pathsJSON, f *pathsFlags, opt disjoint.Options) error {
	onPath := map[int]int{} // link → path index
	for i, p := range res.Paths {
		for _, l := range p.Links {
			onPath[l] = i
		}
	}
	var b strings.Builder
	b.WriteString("graph paths {\n")
	var legend []string
	for i, p := range out.Paths {
		legend = append(legend, fmt.Sprintf("path %d (%s): cost %d", i+1, colorName(i), p.Cost))
	}
	fmt.Fprintf(&b, "  graph [label=%s, labelloc=t, fontname=Helvetica];\n",
		dotQuote(fmt.Sprintf("%s → %s, total cost %d: %s\n%s", f.from, f.to, out.TotalCost,
			describe(len(out.Paths), f, opt), strings.Join(legend, "; "))))
	b.WriteString("  node [fontname=Helvetica, shape=ellipse];\n  edge [fontname=Helvetica, fontsize=10, color=\"#999999\"];\n")
	for _, n := range topo.Nodes {
		attrs := []string{}
		if n.Kind == topology.KindHost {
			attrs = append(attrs, "shape=box")
		}
		if n.Name == f.from || n.Name == f.to {
			attrs = append(attrs, "style=\"bold,filled\"", "fillcolor=\"#ffffcc\"")
		}
		fmt.Fprintf(&b, "  %s", dotQuote(n.Name))
		if len(attrs) > 0 {
			fmt.Fprintf(&b, " [%s]", strings.Join(attrs, ", "))
		}
		b.WriteString(";\n")
	}
	for i, l := range topo.Links {
		label := fmt.Sprintf("%s (%d)", l.Name, l.Cost)
		attrs := []string{"label=" + dotQuote(label)}
		if p, ok := onPath[i]; ok {
			attrs = append(attrs, "color="+dotQuote(pathColors[p%len(pathColors)]), "penwidth=3",
				"fontcolor="+dotQuote(pathColors[p%len(pathColors)]))
		}
		fmt.Fprintf(&b, "  %s -- %s [%s];\n", dotQuote(l.A.Node), dotQuote(l.B.Node), strings.Join(attrs, ", "))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// pathsSVG draws what pathsDot draws, as SVG, with the layout the manager's
// dashboard uses (package topodraw): no Graphviz needed.
func pathsSVG(w io.Writer, topo *topology.Topology, out *pathsJSON, f *pathsFlags, opt disjoint.Options) error {
	pic := topodraw.Picture{Topo: topo, Layout: topodraw.Compute(topo), LinkLabels: true,
		Caption: []string{fmt.Sprintf("%s → %s, total cost %d: %s", f.from, f.to, out.TotalCost, describe(len(out.Paths), f, opt))},
		Marked:  map[string]bool{f.from: true, f.to: true}}
	for i, p := range out.Paths {
		pic.Paths = append(pic.Paths, topodraw.Path{Index: i, Links: p.Links, Label: fmt.Sprintf("path %d: cost %d, %d hops", i+1, p.Cost, len(p.Links))})
	}
	return pic.Write(w)
}

func colorName(i int) string {
	return []string{"red", "blue", "green", "orange", "purple", "brown", "pink", "cyan"}[i%len(pathColors)]
}

// dotQuote quotes s as a DOT string; a newline becomes DOT's \n line break.
func dotQuote(s string) string { return strconv.Quote(s) }
