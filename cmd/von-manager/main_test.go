package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestVersion(t *testing.T) {
	cmd := command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.HasPrefix(s, "von-manager ") || !strings.Contains(s, runtime.Version()) {
		t.Errorf("--version printed %q", s)
	}
}

// The example EnvironmentFile the package installs explains every flag.
func TestEnvFileExplainsEveryFlag(t *testing.T) {
	b, err := os.ReadFile("../../deploy/von-manager.env")
	if err != nil {
		t.Fatal(err)
	}
	command().Flags().VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(string(b), "\n#   --"+f.Name+" ") {
			t.Errorf("deploy/von-manager.env does not explain --%s (want a line \"#   --%s ...\")", f.Name, f.Name)
		}
	})
}

func TestGendocs(t *testing.T) {
	dir := t.TempDir()
	cmd := command()
	cmd.SetArgs([]string{"gendocs", "--man", dir, "--completions", dir})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"man8/von-manager.8", "man8/von-manager-pki-issue.8", "bash/von-manager", "zsh/_von-manager", "fish/von-manager.fish"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}

// Bad flags and configuration exit 2 (the unit does not restart on it), other
// failures 1.
func TestUsageErrorsExit2(t *testing.T) {
	for _, k := range []string{"VON_CA", "VON_CERT", "VON_KEY"} {
		t.Setenv(k, "")
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--bogus"}, "unknown flag"},
		{[]string{"extra"}, "unknown command"},
		{[]string{"--insecure"}, "give --data-dir"},
		{[]string{"--data-dir", dir, "--insecure", "--log-format", "xml"}, "log-format"},
		{[]string{"--data-dir", dir, "--insecure", "--dscp", "64"}, "--dscp 64: want 1-63"},
		{[]string{"--data-dir", dir, "--insecure", "--port", "70000"}, "--port 70000: want 1-65535"},
		{[]string{"--data-dir", dir, "--insecure", "--retention", "40s"}, "--retention 40s: want at least twice --partition-lease (30s)"},
		{[]string{"--data-dir", dir, "--insecure", "--overlay-pool", "100.64.0.1/10"}, "--overlay-pool: invalid overlay pool: 100.64.0.1/10 has host bits set"},
		{[]string{"--data-dir", dir, "--insecure", "--http", "127.0.0.1:9400", "--metrics", "127.0.0.1:9401"}, "--metrics is another name for --http"},
		{[]string{"--data-dir", dir}, "von-manager pki issue"},
		{[]string{"--data-dir", dir, "--ca", "/nonexistent/ca.crt", "--cert", "c", "--key", "k"}, "CA certificate"},
	} {
		cmd := command()
		cmd.SetArgs(tc.args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.Execute()
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("von-manager %s: %v (exit %d); want exit 2 saying %q", strings.Join(tc.args, " "), err, exitCode(err), tc.says)
		}
	}
	if exitCode(errors.New("etcd: no leader")) != 1 {
		t.Error("a runtime failure does not exit 1")
	}
}
