package vonv1_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// bufCmd is the pinned buf, run through the Go module proxy like the Makefile does.
const bufCmd = "github.com/bufbuild/buf/cmd/buf@v1.75.0"

// repoRoot finds the directory holding buf.yaml above the test's working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "buf.yaml")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("buf.yaml not found above the test directory")
		}
		dir = parent
	}
}

// buf runs the pinned buf in the repository root and returns its combined output.
func buf(t *testing.T, root string, args ...string) (string, error) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH; it is needed to run buf and the protoc plugins: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, append([]string{"run", bufCmd}, args...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestBufLint(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	if out, err := buf(t, root, "lint"); err != nil {
		t.Fatalf("buf lint found problems (fix the .proto files, then run `make proto`): %v\n%s", err, out)
	}
	if out, err := buf(t, root, "format", "--diff", "--exit-code"); err != nil {
		t.Fatalf("the .proto files are not buf-formatted (run `go run %s format -w`): %v\n%s", bufCmd, err, out)
	}
}

// TestGeneratedCodeUpToDate regenerates the Go code into a temporary directory and
// compares it with the committed files, so a .proto change without `make proto` fails.
func TestGeneratedCodeUpToDate(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	tmp := t.TempDir()
	if out, err := buf(t, root, "generate", "--output", tmp); err != nil {
		t.Fatalf("buf generate failed: %v\n%s", err, out)
	}

	generated := goFiles(t, tmp)
	if len(generated) == 0 {
		t.Fatal("buf generate produced no Go files; check buf.gen.yaml")
	}
	committed := goFiles(t, root, "proto")

	var problems []string
	for rel, want := range generated {
		got, ok := committed[rel]
		switch {
		case !ok:
			problems = append(problems, rel+": missing (generated but not committed)")
		case !bytes.Equal(got, want):
			problems = append(problems, rel+": differs from what the .proto files generate; "+firstDiff(got, want))
		}
	}
	for rel := range committed {
		if _, ok := generated[rel]; !ok && strings.HasSuffix(rel, ".pb.go") {
			problems = append(problems, rel+": committed but no longer generated (stale; delete it)")
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Fatalf("generated code is out of date with the .proto files:\n  %s\nRun `make proto` and commit the result.",
			strings.Join(problems, "\n  "))
	}
}

// goFiles returns the generated-code candidates under base/sub, keyed by path relative
// to base with forward slashes: every *.pb.go file.
func goFiles(t *testing.T, base string, sub ...string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	start := filepath.Join(append([]string{base}, sub...)...)
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".pb.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(base, path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// firstDiff describes the first line where committed and regenerated code differ.
func firstDiff(committed, regenerated []byte) string {
	a := strings.Split(string(committed), "\n")
	b := strings.Split(string(regenerated), "\n")
	for i := 0; i < len(a) || i < len(b); i++ {
		var la, lb string
		if i < len(a) {
			la = a[i]
		}
		if i < len(b) {
			lb = b[i]
		}
		if la != lb || i >= len(a) || i >= len(b) {
			return fmt.Sprintf("first difference at line %d:\n      committed:   %q\n      regenerated: %q", i+1, la, lb)
		}
	}
	return "files differ"
}
