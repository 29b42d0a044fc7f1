package clidocs

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func toy() *cobra.Command {
	root := &cobra.Command{Use: "toyd", Short: "A toy daemon", RunE: func(*cobra.Command, []string) error { return nil }}
	root.Flags().String("listen", ":1", "address to listen on")
	sub := &cobra.Command{Use: "pki", Short: "Certificates"}
	sub.AddCommand(&cobra.Command{Use: "init", Short: "Create a CA", RunE: func(*cobra.Command, []string) error { return nil }})
	root.AddCommand(sub, Command("8"))
	return root
}

func TestGendocsWritesManPagesAndCompletions(t *testing.T) {
	dir := t.TempDir()
	root := toy()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"gendocs", "--man", filepath.Join(dir, "man"), "--completions", filepath.Join(dir, "completions")})
	if err := root.Execute(); err != nil {
		t.Fatalf("gendocs: %v (%s)", err, out.String())
	}

	ents, err := os.ReadDir(filepath.Join(dir, "man", "man8"))
	if err != nil {
		t.Fatal(err)
	}
	var pages []string
	for _, e := range ents {
		pages = append(pages, e.Name())
	}
	sort.Strings(pages)
	// The hidden gendocs command gets no page; cobra's completion command does.
	want := []string{"toyd-completion-bash.8", "toyd-completion-fish.8", "toyd-completion-powershell.8",
		"toyd-completion-zsh.8", "toyd-completion.8", "toyd-pki-init.8", "toyd-pki.8", "toyd.8"}
	if strings.Join(pages, " ") != strings.Join(want, " ") {
		t.Errorf("man pages %v, want %v", pages, want)
	}
	page, err := os.ReadFile(filepath.Join(dir, "man", "man8", "toyd.8"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`.TH "TOYD" "8"`, "A toy daemon", `\fB--listen\fP`, "toyd-pki(8)"} {
		if !strings.Contains(string(page), s) {
			t.Errorf("toyd.8 lacks %q:\n%s", s, page)
		}
	}
	if strings.Contains(string(page), "gendocs") {
		t.Errorf("toyd.8 mentions the hidden gendocs command")
	}

	for _, p := range []string{"bash/toyd", "zsh/_toyd", "fish/toyd.fish"} {
		b, err := os.ReadFile(filepath.Join(dir, "completions", p))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "toyd") || len(b) < 500 {
			t.Errorf("completion %s looks wrong (%d bytes)", p, len(b))
		}
	}
}

func TestGendocsNeedsADirectory(t *testing.T) {
	root := toy()
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	root.SetArgs([]string{"gendocs"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "--man") {
		t.Fatalf("gendocs without directories: err %v", err)
	}
}

func TestSetVersion(t *testing.T) {
	root := toy()
	SetVersion(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "toyd ") || !strings.Contains(got, runtime.Version()) || !strings.HasSuffix(got, ")\n") {
		t.Errorf("--version printed %q", got)
	}
}
