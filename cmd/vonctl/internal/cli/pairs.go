package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vonproject/von/disjoint"
	"github.com/vonproject/von/internal/clifmt"
	"github.com/vonproject/von/topology"
)

// pairJSON is one answer of paths --pairs: the paths, or why there are none.
type pairJSON struct {
	From      string       `json:"from"`
	To        string       `json:"to"`
	Paths     []pathJSON   `json:"paths,omitempty"`
	TotalCost int64        `json:"total_cost,omitempty"`
	Shared    []sharedJSON `json:"shared_links,omitempty"`
	Error     string       `json:"error,omitempty"`
}

type pairsJSON struct {
	Pairs []pairJSON `json:"pairs"`
}

// maxPairs bounds a --pairs file, so that a wrong file (say, a topology
// passed as pairs) fails at once instead of planning for minutes.
const maxPairs = 1_000_000

// readPairs reads "FROM TO" lines; blank lines and # comments are skipped.
func readPairs(r io.Reader, name string) ([][2]string, error) {
	var out [][2]string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		switch {
		case len(fields) == 0:
			continue
		case len(fields) != 2:
			return nil, fmt.Errorf("%s:%d: want \"FROM TO\", got %q", name, line, strings.TrimSpace(text))
		case len(out) == maxPairs:
			return nil, fmt.Errorf("%s: more than %d pairs", name, maxPairs)
		}
		out = append(out, [2]string{fields[0], fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no pairs (want one \"FROM TO\" per line)", name)
	}
	return out, nil
}

func runPairs(g *Global, f *pathsFlags, opt disjoint.Options, format clifmt.Format, topo *topology.Topology, graph *disjoint.Graph) error {
	in, name := io.Reader(os.Stdin), "stdin"
	if f.pairs != "-" {
		file, err := os.Open(f.pairs)
		if err != nil {
			return failure(fmt.Errorf("--pairs: %w", err), "")
		}
		defer file.Close()
		in, name = file, f.pairs
	}
	pairs, err := readPairs(in, name)
	if err != nil {
		return usageError(fmt.Errorf("--pairs: %w", err))
	}
	out := pairsJSON{Pairs: make([]pairJSON, 0, len(pairs))}
	failed := 0
	for _, p := range pairs {
		pj := pairJSON{From: p[0], To: p[1]}
		var perr error
		for _, n := range p {
			if _, err := graph.NodeIndex(n); err != nil {
				perr = fmt.Errorf("%q: no such node in the topology", n)
				break
			}
		}
		if perr == nil {
			var (
				one *pathsJSON
				res *disjoint.Result
			)
			if one, res, perr = planPair(topo, graph, f, opt, p[0], p[1]); perr == nil {
				pj.Paths, pj.TotalCost, pj.Shared = one.Paths, one.TotalCost, one.Shared
				if res.Heuristic {
					fmt.Fprintf(g.Stderr, "warning: %s → %s: %s\n", p[0], p[1], res.Note)
				}
			}
		}
		if perr != nil {
			failed++
			pj.Error = strings.TrimPrefix(perr.Error(), "disjoint: ")
		}
		out.Pairs = append(out.Pairs, pj)
	}
	if format == clifmt.Table {
		err = pairsTable(g.Stdout, &out)
	} else {
		err = clifmt.Write(g.Stdout, format, out)
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return failure(fmt.Errorf("%d of %d pairs have no paths", failed, len(pairs)), "each failed pair's row says why")
	}
	return nil
}

func pairsTable(w io.Writer, out *pairsJSON) error {
	tw := clifmt.NewTable(w)
	fmt.Fprintln(tw, "FROM\tTO\tCOST\tPATHS")
	for _, p := range out.Pairs {
		if p.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\tno paths: %s\n", p.From, p.To, p.Error)
			continue
		}
		var ps []string
		for _, path := range p.Paths {
			ps = append(ps, strings.Join(path.Nodes, " → "))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", p.From, p.To, p.TotalCost, strings.Join(ps, " | "))
	}
	return tw.Flush()
}
