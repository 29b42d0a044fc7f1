// Package clidocs gives the VON binaries their --version flag and writes their man
// pages and shell completions: each binary carries a hidden "gendocs" command built
// here, which `make man` runs to fill build/man and build/completions for the
// packages.
package clidocs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/vonproject/von/internal/buildinfo"
)

// SetVersion makes root answer --version (and -v, where the shorthand is free)
// with its name and the build, e.g.
//
//	von-manager v0.0.0-20261202123456-b960a7c1a2b3 (commit b960a7c, built 2026-12-02T12:34:56Z, go1.26.8)
func SetVersion(root *cobra.Command) {
	root.Version = buildinfo.Get().String()
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
}

// Command returns the hidden command
//
//	PROGRAM gendocs [--man DIR] [--completions DIR]
//
// that writes the man pages of the whole tree it is added to (in section; "1"
// for user commands, "8" for daemons) and its bash, zsh and fish completions.
func Command(section string) *cobra.Command {
	var man, completions string
	c := &cobra.Command{
		Use:    "gendocs [--man DIR] [--completions DIR]",
		Short:  "Write man pages and shell completions (for packaging)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if man == "" && completions == "" {
				return errors.New("give --man DIR, --completions DIR or both")
			}
			root := c.Root()
			if man != "" {
				if err := Man(root, section, man); err != nil {
					return err
				}
			}
			if completions != "" {
				return Completions(root, completions)
			}
			return nil
		},
	}
	c.Flags().StringVar(&man, "man", "", "write man pages into DIR/manSECTION/")
	c.Flags().StringVar(&completions, "completions", "", "write completions into DIR/bash/NAME, DIR/zsh/_NAME and DIR/fish/NAME.fish")
	return c
}

// Man writes one page per available command of root's tree into
// dir/man<section>/ (root.1, root-sub.1, ...). The pages are dated with the
// build's commit time, so rebuilding a commit gives the same pages.
func Man(root *cobra.Command, section, dir string) error {
	dir = filepath.Join(dir, "man"+section)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	bi := buildinfo.Get()
	h := &doc.GenManHeader{
		Section: section,
		Source:  "VON " + bi.Version,
		Manual:  "VON Manual",
	}
	if !bi.Time.IsZero() {
		t := bi.Time
		h.Date = &t
	}
	root.DisableAutoGenTag = true // the footer would name the generation date
	if err := doc.GenManTree(root, h, dir); err != nil {
		return fmt.Errorf("man pages for %s: %w", root.Name(), err)
	}
	return nil
}

// Completions writes root's bash, zsh and fish completion scripts under dir,
// named as bash-completion, zsh and fish look them up.
func Completions(root *cobra.Command, dir string) error {
	name := root.Name()
	for _, g := range []struct {
		path string
		gen  func(f *os.File) error
	}{
		{filepath.Join("bash", name), func(f *os.File) error { return root.GenBashCompletionV2(f, true) }},
		{filepath.Join("zsh", "_"+name), func(f *os.File) error { return root.GenZshCompletion(f) }},
		{filepath.Join("fish", name+".fish"), func(f *os.File) error { return root.GenFishCompletion(f, true) }},
	} {
		p := filepath.Join(dir, g.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		err = g.gen(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("completion %s: %w", p, err)
		}
	}
	return nil
}
