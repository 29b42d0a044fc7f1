package cli

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	code, out, errs := run(t, "--version")
	if code != ExitOK || errs != "" || !strings.HasPrefix(out, "vonctl ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("vonctl --version: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// gendocs (hidden) writes a section-1 page for every command and the completions.
func TestGendocs(t *testing.T) {
	dir := t.TempDir()
	code, _, errs := run(t, "gendocs", "--man", dir, "--completions", dir)
	if code != ExitOK {
		t.Fatalf("gendocs: exit %d: %s", code, errs)
	}
	for _, f := range []string{"man1/vonctl.1", "man1/vonctl-reserve.1", "man1/vonctl-topology-apply.1", "bash/vonctl", "zsh/_vonctl", "fish/vonctl.fish"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "man1/vonctl-gendocs.1")); err == nil {
		t.Error("the hidden gendocs command got a man page")
	}
}
