package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vonproject/von/internal/testenv"
)

var packages = []string{"von-manager", "von-agent", "vonctl"}

// TestDebPackages builds the packages with `make package`, installs them with
// dpkg, runs each binary's --version, verifies the installed units against the
// installed binaries and man pages, and purges the packages, checking that
// every file they installed is gone. It needs root and dpkg; it skips when any
// of the packages is installed already rather than remove someone's
// installation. With a warm build cache it takes some 20 seconds; the first run
// on a machine also compiles nfpm and the static binaries.
func TestDebPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and installs packages")
	}
	testenv.RequireRoot(t, "installing packages with dpkg -i")
	for _, tool := range []string{"dpkg", "dpkg-query", "make", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: this test needs a Debian system (%v)", tool, err)
		}
	}
	for _, p := range packages {
		if installed(p) {
			t.Skipf("package %s is installed on this machine; the test would purge it", p)
		}
	}
	var newUsers []string
	for _, u := range []string{"von-manager", "von-agent"} {
		if exec.Command("getent", "passwd", u).Run() != nil {
			newUsers = append(newUsers, u)
		}
	}

	_, err := os.Stat("/etc/von")
	etcVonBefore := err == nil

	build := t.TempDir()
	start := time.Now()
	mk := exec.Command("make", "-C", "..", "--no-print-directory", "package", "BUILD="+build)
	// Independent of a make that runs this test (make test): its flags and jobserver.
	mk.Env = slices.DeleteFunc(os.Environ(), func(e string) bool {
		return strings.HasPrefix(e, "MAKEFLAGS=") || strings.HasPrefix(e, "MFLAGS=") || strings.HasPrefix(e, "MAKELEVEL=")
	})
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	t.Logf("make package: %v", time.Since(start).Round(time.Millisecond))
	debs, _ := filepath.Glob(filepath.Join(build, "deb", "*.deb"))
	if len(debs) != len(packages) {
		t.Fatalf("make package made %v, want one .deb for each of %v", debs, packages)
	}
	for _, d := range debs {
		out := run(t, "dpkg-deb", "--field", d, "Package", "Version", "Architecture", "Maintainer")
		t.Logf("%s:\n%s", filepath.Base(d), strings.TrimSpace(out))
	}

	t.Cleanup(func() {
		for _, p := range packages {
			if installed(p) {
				_ = exec.Command("dpkg", "--purge", p).Run()
			}
		}
		for _, u := range newUsers { // leave the machine as it was
			_ = exec.Command("userdel", u).Run()
			_ = exec.Command("groupdel", u).Run()
		}
	})
	run(t, append([]string{"dpkg", "-i"}, debs...)...)

	// What the packages installed.
	var files []string
	for _, p := range packages {
		for _, f := range strings.Split(strings.TrimSpace(run(t, "dpkg-query", "-L", p)), "\n") {
			if fi, err := os.Lstat(f); err == nil && !fi.IsDir() {
				files = append(files, f)
			}
		}
	}
	for _, want := range []string{
		"/usr/bin/von-manager", "/usr/bin/von-agent", "/usr/bin/vonctl",
		"/usr/lib/systemd/system/von-manager.service", "/usr/lib/systemd/system/von-agent.service",
		"/usr/lib/sysusers.d/von-manager.conf", "/usr/lib/sysusers.d/von-agent.conf",
		"/etc/von/von-manager.env", "/etc/von/von-agent.env",
		"/usr/share/man/man8/von-manager.8.gz", "/usr/share/man/man8/von-manager-pki-issue.8.gz",
		"/usr/share/man/man8/von-agent.8.gz", "/usr/share/man/man1/vonctl.1.gz", "/usr/share/man/man1/vonctl-reserve.1.gz",
		"/usr/share/bash-completion/completions/vonctl", "/usr/share/zsh/vendor-completions/_vonctl",
		"/usr/share/fish/vendor_completions.d/vonctl.fish", "/usr/share/bash-completion/completions/von-agent",
	} {
		if !slices.Contains(files, want) {
			t.Errorf("the packages do not install %s", want)
		}
	}
	conffiles := run(t, "dpkg-query", "-W", "-f", "${Conffiles}\n", "von-manager", "von-agent")
	for _, c := range []string{"/etc/von/von-manager.env", "/etc/von/von-agent.env"} {
		if !strings.Contains(conffiles, c) {
			t.Errorf("%s is not a conffile (dpkg would overwrite local changes):\n%s", c, conffiles)
		}
	}
	for _, u := range []string{"von-manager", "von-agent"} {
		if err := exec.Command("getent", "passwd", u).Run(); err != nil {
			t.Errorf("postinst did not create the system user %s", u)
		}
	}

	for _, p := range packages {
		out := run(t, "/usr/bin/"+p, "--version")
		if !strings.HasPrefix(out, p+" ") || !strings.Contains(out, "go1.") || strings.Count(out, "\n") != 1 {
			t.Errorf("%s --version printed %q", p, out)
		}
		t.Logf("%s", strings.TrimSpace(out))
	}

	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		_, version := systemdAnalyze(t)
		args := []string{"verify"}
		if _, err := exec.LookPath("man"); err != nil {
			args = append(args, "--man=no")
		}
		for _, u := range units {
			args = append(args, "/usr/lib/systemd/system/"+u)
		}
		out, err := exec.Command(sa, args...).CombinedOutput()
		checkVerify(t, version, out, err)
	}

	run(t, "dpkg", "-r", "vonctl", "von-agent", "von-manager")
	for _, c := range []string{"/etc/von/von-manager.env", "/etc/von/von-agent.env"} {
		if _, err := os.Stat(c); err != nil {
			t.Errorf("dpkg -r removed the conffile %s (only --purge should)", c)
		}
	}
	run(t, "dpkg", "--purge", "vonctl", "von-agent", "von-manager")
	for _, p := range packages {
		if installed(p) {
			t.Errorf("%s is still installed after dpkg --purge", p)
		}
	}
	for _, f := range files {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s is still there after dpkg --purge", f)
		}
	}
	if _, err := os.Stat("/etc/von"); err == nil && !etcVonBefore {
		t.Errorf("/etc/von is still there after dpkg --purge")
	}
}

// installed reports whether dpkg has package p in any state but not-installed.
func installed(p string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status}", p).Output()
	return err == nil && strings.TrimSpace(string(out)) != "not-installed" && strings.TrimSpace(string(out)) != ""
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
