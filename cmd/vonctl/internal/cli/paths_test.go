package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vonproject/von/disjoint"
	"github.com/vonproject/von/topology"
)

const (
	trapFile = "../../../../disjoint/testdata/trap.yaml"
	ispFile  = "../../../../examples/isp.yaml"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestPathsTrapTable(t *testing.T) {
	code, out, errs := run(t, "paths", "--topology", trapFile, "--from", "s", "--to", "t")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	want := `PATH  COST  HOPS  NODES      LINKS
1     4     2     s → a → t  s-a, a-t
2     4     2     s → b → t  s-b, b-t
total cost 8: 2 link-disjoint paths, no shared SRLG
`
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}

func TestPathsTrapJSON(t *testing.T) {
	for _, extra := range [][]string{nil, {"--node-disjoint"}, {"--bandwidth", "10Mbit"}} {
		args := append([]string{"paths", "--topology", trapFile, "--from", "s", "--to", "t", "-o", "json"}, extra...)
		code, out, errs := run(t, args...)
		if code != 0 || errs != "" {
			t.Fatalf("%v: exit %d, stderr %q", extra, code, errs)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(out)); err != nil {
			t.Fatal(err)
		}
		want := `{"paths":[{"nodes":["s","a","t"],"links":["s-a","a-t"],"cost":4},{"nodes":["s","b","t"],"links":["s-b","b-t"],"cost":4}],"total_cost":8}`
		if compact.String() != want {
			t.Fatalf("%v: got %s\nwant %s", extra, compact.String(), want)
		}
	}
}

func TestPathsYAMLAndShortest(t *testing.T) {
	code, out, _ := run(t, "paths", "-t", trapFile, "--from", "s", "--to", "t", "-o", "yaml", "-k", "1")
	if code != 0 || !strings.Contains(out, "total_cost: 3\n") || !strings.Contains(out, "- s-a\n  - a-b\n  - b-t\n") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestPathsDot(t *testing.T) {
	code, out, _ := run(t, "paths", "--topology", trapFile, "--from", "s", "--to", "t", "-o", "dot")
	if code != 0 || !strings.HasPrefix(out, "graph paths {") || !strings.HasSuffix(out, "}\n") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, line := range []string{
		`"s" -- "a" [label="s-a (1)", color="#d62728", penwidth=3`,
		`"a" -- "t" [label="a-t (3)", color="#d62728", penwidth=3`,
		`"s" -- "b" [label="s-b (3)", color="#1f77b4", penwidth=3`,
		`"b" -- "t" [label="b-t (1)", color="#1f77b4", penwidth=3`,
		`"a" -- "b" [label="a-b (1)"];`,
		`"s" [shape=box, style="bold,filled"`,
		`total cost 8`,
	} {
		if !strings.Contains(out, line) {
			t.Errorf("dot output lacks %q:\n%s", line, out)
		}
	}
}

// -o svg draws what -o dot draws, without Graphviz: every node, every link
// with "name (cost)", the two paths in their styles, the ends marked, the
// caption.
func TestPathsSVG(t *testing.T) {
	code, out, errs := run(t, "paths", "--topology", trapFile, "--from", "s", "--to", "t", "-o", "svg")
	if code != 0 || errs != "" || !strings.HasPrefix(out, "<svg ") || !strings.HasSuffix(out, "</svg>\n") {
		t.Fatalf("exit %d, stderr %q:\n%s", code, errs, out)
	}
	if err := xml.Unmarshal([]byte(out), new(struct{})); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	for _, want := range []string{
		`data-node="s"`, `data-node="a"`, `data-node="b"`, `data-node="t"`,
		`>s-a (1)</text>`, `>a-b (1)</text>`,
		`class="path p0" data-link="s-a"`, `class="path p0" data-link="a-t"`,
		`class="path p1" data-link="s-b"`, `class="path p1" data-link="b-t"`,
		`s → t, total cost 8: 2 link-disjoint paths, no shared SRLG`,
		`path 1: cost 4, 2 hops (blue, solid)`, `path 2: cost 4, 2 hops (purple, dashed)`,
		`fill="#fff59d"`, // the ends
	} {
		if !strings.Contains(out, want) {
			t.Errorf("svg lacks %q", want)
		}
	}
	if strings.Contains(out, `class="path p0" data-link="a-b"`) || strings.Contains(out, `class="path p1" data-link="a-b"`) {
		t.Error("a-b is on no path but drawn as one")
	}
	// The same file gives the same picture.
	if _, again, _ := run(t, "paths", "--topology", trapFile, "--from", "s", "--to", "t", "-o", "svg"); again != out {
		t.Error("two runs drew two pictures")
	}
	if code, _, errs := run(t, "paths", "--topology", trapFile, "--pairs", "-", "-o", "svg"); code != ExitUsage || !strings.Contains(errs, "no -o svg") {
		t.Errorf("--pairs -o svg: exit %d, %q", code, errs)
	}
}

func writeTopo(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "topo.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPathsNoPair(t *testing.T) {
	bridge := writeTopo(t, `
nodes: [{name: h1, kind: host}, {name: r1, kind: router}, {name: r2, kind: router}, {name: r3, kind: router}, {name: r4, kind: router}, {name: h2, kind: host}]
links:
  - {a: h1, b: r1, capacity: 1G}
  - {a: h1, b: r2, capacity: 1G}
  - {a: r1, b: r3, capacity: 1G}
  - {a: r2, b: r3, capacity: 1G}
  - {a: r3, b: r4, capacity: 1G}
  - {a: r4, b: h2, capacity: 1G}
  - {a: r4, b: h2, capacity: 1G}
`)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--from", "h1", "--to", "h2"}, []string{"link r3-r4 is a bridge", "hint: add a link that bypasses link r3-r4"}},
		{[]string{"--from", "h1", "--to", "h2", "-o", "json"}, []string{"link r3-r4 is a bridge"}},
		{[]string{"--from", "h1", "--to", "h2", "--bandwidth", "900Mbit", "-k", "1"}, []string{"no path has 900Mbit unreserved", "hint: try a smaller --bandwidth"}},
		{[]string{"--from", "h1", "--to", "nobody"}, []string{`--to "nobody": no such node`, "hint: nodes are named"}},
	} {
		code, out, errs := run(t, append([]string{"paths", "--topology", bridge}, tc.args...)...)
		if code != 1 || out != "" {
			t.Fatalf("%v: exit %d, stdout %q", tc.args, code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%v: stderr %q lacks %q", tc.args, errs, w)
			}
		}
	}
	bowtie := writeTopo(t, `
nodes: [{name: s, kind: host}, {name: a, kind: router}, {name: m, kind: router}, {name: b, kind: router}, {name: t, kind: host}]
links:
  - {a: s, b: a, capacity: 1G}
  - {a: s, b: m, capacity: 1G}
  - {a: a, b: m, capacity: 1G}
  - {a: m, b: b, capacity: 1G}
  - {a: m, b: t, capacity: 1G}
  - {a: b, b: t, capacity: 1G}
`)
	code, _, errs := run(t, "paths", "--topology", bowtie, "--from", "s", "--to", "t", "--node-disjoint")
	if code != 1 || !strings.Contains(errs, "passes through router m") || !strings.Contains(errs, "hint: drop --node-disjoint") {
		t.Fatalf("bowtie: exit %d %q", code, errs)
	}
	srlg := writeTopo(t, `
nodes: [{name: a, kind: host}, {name: b, kind: host}]
links:
  - {a: a, b: b, capacity: 1G, srlg: [duct-7]}
  - {a: a, b: b, capacity: 1G, srlg: [duct-7]}
`)
	code, _, errs = run(t, "paths", "--topology", srlg, "--from", "a", "--to", "b")
	if code != 1 || !strings.Contains(errs, "shares SRLG duct-7") || !strings.Contains(errs, "--ignore-srlg") {
		t.Fatalf("srlg: exit %d %q", code, errs)
	}
	if code, _, _ := run(t, "paths", "--topology", srlg, "--from", "a", "--to", "b", "--ignore-srlg"); code != 0 {
		t.Fatalf("--ignore-srlg: exit %d", code)
	}
	if code, _, errs := run(t, "paths", "--topology", writeTopo(t, "nodes: [{name: a, kind: hst}]\n"), "--from", "a", "--to", "b"); code != 1 || !strings.Contains(errs, "topo.yaml:1: ") {
		t.Fatalf("bad topology: exit %d %q", code, errs)
	}
}

func TestPathsUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"paths", "--topology", trapFile, "--from", "s"},
		{"paths", "--from", "s", "--to", "t"},
		{"paths", "--topology", trapFile, "--from", "s", "--to", "t", "--bogus"},
		{"paths", "--topology", trapFile, "--from", "s", "--to", "t", "-o", "xml"},
		{"paths", "--topology", trapFile, "--from", "s", "--to", "t", "--bandwidth", "10Mbps"},
		{"paths", "--topology", trapFile, "--from", "s", "--to", "t", "-k", "0"},
		{"paths", "extra-arg", "--topology", trapFile, "--from", "s", "--to", "t"},
		{"no-such-command"},
	} {
		code, out, errs := run(t, args...)
		if code != ExitUsage || out != "" || !strings.HasPrefix(errs, "vonctl: ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if code, out, _ := run(t, "paths", "--help"); code != 0 || !strings.Contains(out, "--node-disjoint") {
		t.Errorf("--help: exit %d", code)
	}
}

func TestManagerFromEnv(t *testing.T) {
	t.Setenv("VON_MANAGER", "10.77.0.1:7070")
	root := NewRoot(&bytes.Buffer{}, &bytes.Buffer{})
	if f := root.PersistentFlags().Lookup("manager"); f == nil || f.DefValue != "10.77.0.1:7070" {
		t.Fatalf("manager flag %+v", f)
	}
}

// TestPathsISP runs the README's example: the CLI prints the library's
// optimum (the library is checked against an independent min-cost flow on
// this file in disjoint's tests).
func TestPathsISP(t *testing.T) {
	topo, err := topology.Load(ispFile)
	if err != nil {
		t.Fatal(err)
	}
	g, err := disjoint.FromTopology(topo)
	if err != nil {
		t.Fatal(err)
	}
	from, _ := g.NodeIndex("h-sea")
	to, _ := g.NodeIndex("h-mia")
	for _, tc := range []struct {
		flags []string
		opt   disjoint.Options
	}{
		{nil, disjoint.Options{}},
		{[]string{"--ignore-srlg"}, disjoint.Options{IgnoreSRLG: true}},
		{[]string{"--node-disjoint", "--bandwidth", "500Mbit"}, disjoint.Options{Mode: disjoint.NodeDisjoint, Rate: 500e6}},
	} {
		res, err := g.Disjoint(from, to, tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		code, out, errs := run(t, append([]string{"paths", "--topology", ispFile, "--from", "h-sea", "--to", "h-mia", "-o", "json"}, tc.flags...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d %s", tc.flags, code, errs)
		}
		var got pathsJSON
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		if got.TotalCost != res.TotalCost || len(got.Paths) != 2 || got.Paths[0].Nodes[0] != "h-sea" {
			t.Fatalf("%v: got %+v, library total %d", tc.flags, got, res.TotalCost)
		}
	}
}

// Issue 8 §0.2: on the ring, `vonctl paths` between two single-homed hosts prints what
// the manager reserves for --members h1,h2 --redundant (reservation's
// TestPlaceRedundantSingleHomed asserts the same paths), including the access links that
// carry both copies; it used to fail with "link h1-r1 is a bridge".
func TestPathsSingleHomedHostsAsReserve(t *testing.T) {
	code, out, errs := run(t, "paths", "--topology", "../../../../e2e/testdata/ring.yaml", "--from", "h1", "--to", "h2", "--bandwidth", "8Mbit", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	var got pathsJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	want := []string{"h1 r1 r2 r3 r6 h2", "h1 r1 r4 r5 r6 h2"}
	if len(got.Paths) != 2 || strings.Join(got.Paths[0].Nodes, " ") != want[0] || strings.Join(got.Paths[1].Nodes, " ") != want[1] {
		t.Fatalf("paths %+v, want %q", got.Paths, want)
	}
	if got.TotalCost != 13 || len(got.Shared) != 2 || got.Shared[0] != (sharedJSON{"h1-r1", 2}) || got.Shared[1] != (sharedJSON{"r6-h2", 2}) {
		t.Fatalf("total %d, shared %+v", got.TotalCost, got.Shared)
	}
	code, out, _ = run(t, "paths", "--topology", "../../../../e2e/testdata/ring.yaml", "--from", "h1", "--to", "h2", "--bandwidth", "8Mbit")
	if code != 0 || !strings.Contains(out, "h1-r1 is on all 2 paths") || !strings.Contains(out, "charged 16Mbit there") {
		t.Fatalf("table: exit %d\n%s", code, out)
	}
	// Both copies must fit on the access link: 2 × 41Mbit > 80Mbit reservable.
	code, _, errs = run(t, "paths", "--topology", "../../../../e2e/testdata/ring.yaml", "--from", "h1", "--to", "h2", "--bandwidth", "41Mbit")
	if code != 1 || !strings.Contains(errs, "access link h1-r1") || !strings.Contains(errs, "2 copies") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	code, _, errs = run(t, "paths", "--topology", "../../../../e2e/testdata/ring.yaml", "--from", "h1", "--to", "h3")
	if code != 1 || !strings.Contains(errs, "both hang off router r1") {
		t.Fatalf("same router: exit %d, stderr %q", code, errs)
	}
}
