package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// One run answers every pair of the file, each as the single-pair command
// would, and a pair without paths is reported without hiding the others.
func TestPathsPairs(t *testing.T) {
	pairs := filepath.Join(t.TempDir(), "pairs.txt")
	if err := os.WriteFile(pairs, []byte("# pairs\ns t\n\n  s   a  # same router pair\ns nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, "paths", "--topology", trapFile, "--pairs", pairs, "-o", "json")
	if code != ExitError || !strings.Contains(errs, "1 of 3 pairs have no paths") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	var got pairsJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(got.Pairs) != 3 {
		t.Fatalf("pairs: %s", out)
	}
	for i, p := range got.Pairs[:2] {
		if p.Error != "" || len(p.Paths) == 0 {
			t.Fatalf("pair %d: %+v", i, p)
		}
		_, single, _ := run(t, "paths", "--topology", trapFile, "--from", p.From, "--to", p.To, "-o", "json")
		var want pathsJSON
		if err := json.Unmarshal([]byte(single), &want); err != nil {
			t.Fatal(err)
		}
		b1, _ := json.Marshal(pathsJSON{Paths: p.Paths, TotalCost: p.TotalCost, Shared: p.Shared})
		b2, _ := json.Marshal(want)
		if string(b1) != string(b2) {
			t.Errorf("pair %s→%s: batch %s, single %s", p.From, p.To, b1, b2)
		}
	}
	if p := got.Pairs[2]; p.From != "s" || p.To != "nope" || !strings.Contains(p.Error, "no such node") || p.Paths != nil {
		t.Errorf("failed pair: %+v", p)
	}

	code, out, _ = run(t, "paths", "--topology", trapFile, "--pairs", pairs)
	if code != ExitError || !strings.Contains(out, "s → a → t | s → b → t") || !strings.Contains(out, "no paths:") {
		t.Errorf("table: exit %d\n%s", code, out)
	}

	bad := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(bad, []byte("s t\ns\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--pairs", bad},
		{"--pairs", pairs, "--from", "s"},
		{"--pairs", pairs, "-o", "dot"},
		{"--pairs", filepath.Join(t.TempDir(), "empty")},
	} {
		code, out, errs := run(t, append([]string{"paths", "--topology", trapFile}, args...)...)
		if code == 0 || out != "" || !strings.HasPrefix(errs, "vonctl: ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if _, _, errs := run(t, "paths", "--topology", trapFile, "--pairs", bad); !strings.Contains(errs, "bad.txt:2:") {
		t.Errorf("bad line not named: %q", errs)
	}
}
