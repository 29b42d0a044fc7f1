package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	code, out := runArgs(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "von-agent ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("--version: exit %d, output %q", code, out)
	}
}

// The example EnvironmentFile the package installs explains every flag.
func TestEnvFileExplainsEveryFlag(t *testing.T) {
	b, err := os.ReadFile("../../deploy/von-agent.env")
	if err != nil {
		t.Fatal(err)
	}
	_, help := runArgs(t, "--help")
	_, flags, ok := strings.Cut(help, "\nFlags:\n")
	if !ok {
		t.Fatalf("--help has no Flags section:\n%s", help)
	}
	n := 0
	for _, l := range strings.Split(flags, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || !strings.HasPrefix(f[0], "--") || f[0] == "--help" || f[0] == "--version" {
			continue
		}
		n++
		if !strings.Contains(string(b), "\n#   "+f[0]+" ") {
			t.Errorf("deploy/von-agent.env does not explain %s (want a line \"#   %s ...\")", f[0], f[0])
		}
	}
	if n < 20 {
		t.Fatalf("found %d flags in --help:\n%s", n, help)
	}
}

func TestGendocs(t *testing.T) {
	dir := t.TempDir()
	if code, out := runArgs(t, "gendocs", "--man", dir, "--completions", dir); code != 0 {
		t.Fatalf("gendocs: exit %d: %s", code, out)
	}
	for _, f := range []string{"man8/von-agent.8", "bash/von-agent", "zsh/_von-agent", "fish/von-agent.fish"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}
