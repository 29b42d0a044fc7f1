package deploy

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var units = []string{"von-manager.service", "von-agent.service"}

// systemdAnalyze returns the path of systemd-analyze and systemd's version, or
// skips the test.
func systemdAnalyze(t *testing.T) (string, int) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found (Debian: apt-get install systemd), so the units cannot be verified")
	}
	out, err := exec.Command(sa, "--version").Output()
	if err != nil {
		t.Fatalf("systemd-analyze --version: %v", err)
	}
	m := regexp.MustCompile(`^systemd (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze --version printed %q", out)
	}
	v, _ := strconv.Atoi(string(m[1]))
	return sa, v
}

// checkVerify fails the test on anything `systemd-analyze verify` printed but the
// warnings that systemd older than 254 gives for the restart back-off keys it
// does not know (the units document that it ignores them).
func checkVerify(t *testing.T, version int, out []byte, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l == "" {
			continue
		}
		if version < 254 && (strings.Contains(l, "Unknown key 'RestartSteps'") || strings.Contains(l, "Unknown key 'RestartMaxDelaySec'")) {
			continue
		}
		t.Errorf("systemd-analyze verify (systemd %d): %s", version, l)
	}
}

// unitRoot lays out a root directory for systemd-analyze --root: this host's
// system units (for the targets ours name), ours, their EnvironmentFiles and an
// executable at each ExecStart path. verify checks that ExecStart names an
// executable file, not what it does, so stand-ins do here; TestDebPackages
// verifies the installed units against the installed binaries.
func unitRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	unitDir := filepath.Join(root, "usr/lib/systemd/system")
	if err := os.Symlink("usr/lib", filepath.Join(root, "lib")); err != nil { // absolute links into /lib
		t.Fatal(err)
	}
	for _, src := range []string{"/lib/systemd/system", "/usr/lib/systemd/system"} {
		if err := copyTree(src, unitDir); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	for _, u := range units {
		copyFile(t, u, filepath.Join(unitDir, u), 0o644)
		name := strings.TrimSuffix(u, ".service")
		copyFile(t, name+".env", filepath.Join(root, "etc/von", name+".env"), 0o644)
		stub := filepath.Join(root, "usr/bin", name)
		if err := os.MkdirAll(filepath.Dir(stub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestUnitsVerify(t *testing.T) {
	sa, version := systemdAnalyze(t)
	root := unitRoot(t)
	// --man=no: the man pages are not installed here (TestDebPackages checks them).
	out, err := exec.Command(sa, append([]string{"verify", "--man=no", "--root=" + root}, units...)...).CombinedOutput()
	checkVerify(t, version, out, err)
}

// TestUnitsExposure keeps the sandboxes tight: systemd-analyze security rates
// von-manager 1.2 and von-agent 1.7 (of 10; "OK" is below 4.9). It fails above 2.5.
func TestUnitsExposure(t *testing.T) {
	sa, version := systemdAnalyze(t)
	if version < 250 {
		t.Skipf("systemd %d: security --offline needs systemd 250", version)
	}
	root := unitRoot(t)
	for _, u := range units {
		out, err := exec.Command(sa, "security", "--offline=true", "--threshold=25", "--no-pager", "--root="+root, u).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for \S+: (\S+)`).FindSubmatch(out)
		if err != nil || m == nil {
			t.Errorf("systemd-analyze security %s: %v\n%s", u, err, out)
			continue
		}
		t.Logf("%s: exposure %s", u, m[1])
	}
}

// TestUnitsAndEnvFilesAgree checks what systemd-analyze cannot: each unit reads
// the env file the packages install, and runs its binary with the options
// variable that file sets.
func TestUnitsAndEnvFilesAgree(t *testing.T) {
	for _, u := range units {
		name := strings.TrimSuffix(u, ".service")
		unit := read(t, u)
		env := read(t, name+".env")
		opts := strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_OPTS"
		for _, want := range []string{
			"EnvironmentFile=/etc/von/" + name + ".env\n",
			"ExecStart=/usr/bin/" + name + " $" + opts + "\n",
			"User=" + name + "\n",
			"StateDirectory=" + name + "\n",
			"Restart=on-failure\n",
			"RestartPreventExitStatus=2\n",
		} {
			if !strings.Contains(unit, want) {
				t.Errorf("%s lacks %q", u, want)
			}
		}
		if !regexp.MustCompile(`(?m)^` + opts + `="[^"]*"$`).MatchString(env) {
			t.Errorf("%s.env does not set %s", name, opts)
		}
		// Every line is a comment, blank, or VAR=value as systemd reads it.
		for i, l := range strings.Split(env, "\n") {
			if l != "" && !strings.HasPrefix(l, "#") && !regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=("[^"]*"|[^\s"]*)$`).MatchString(l) {
				t.Errorf("%s.env:%d: %q is not VAR=value", name, i+1, l)
			}
		}
		sysusers := read(t, name+".sysusers")
		if !strings.Contains(sysusers, "\nu "+name+" ") {
			t.Errorf("%s.sysusers does not create user %s", name, name)
		}
	}
	if !strings.Contains(read(t, "von-agent.service"), "CapabilityBoundingSet=CAP_NET_ADMIN\n") ||
		!strings.Contains(read(t, "von-manager.service"), "CapabilityBoundingSet=\n") {
		t.Error("the agent must keep CAP_NET_ADMIN alone, the manager no capability")
	}
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies src into dst, keeping symbolic links as they are (unit
// aliases are relative links) and skipping what exists already.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if _, err := os.Lstat(to); err == nil && !d.IsDir() {
			return nil
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o644)
		}
		return nil
	})
}
