package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func runArgs(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	code := run(ctx, args, &out, &out)
	return code, out.String()
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	code, out := runArgs(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, f := range []string{"--node", "--manager", "--listen", "--netns", "--state-dir", "--metrics", "--log-format",
		"--log-level", "--force-root-qdisc", "--dscp", "--port", "--endpoint", "--interfaces", "lease"} {
		if !strings.Contains(out, f) {
			t.Errorf("help lacks %s", f)
		}
	}
}

func TestBadInvocationsExitNonZeroWithReason(t *testing.T) {
	t.Setenv("VON_MANAGER", "")
	dir := t.TempDir()
	for _, k := range []string{"VON_CA", "VON_CERT", "VON_KEY"} {
		t.Setenv(k, "")
	}
	base := []string{"--node", "r1", "--manager", "127.0.0.1:1", "--state-dir", dir, "--insecure"}
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--manager", "x:1"}, 2, "--node is required"},
		{[]string{"--node", "r1"}, 2, "--manager is required"},
		{[]string{"--bogus"}, 2, "unknown flag"},
		{[]string{"extra"}, 2, "unknown command"},
		{append(base, "--dscp", "64"), 2, "--dscp 64"},
		{append(base, "--port", "0"), 2, "--port 0"},
		{append(base, "--log-format", "xml"), 2, "--log-format"},
		{append(base, "--log-level", "loud"), 2, "--log-level"},
		{append(base, "--netns", "von-no-such-ns"), 1, `open network namespace "von-no-such-ns"`},
		{[]string{"--node", "r1", "--manager", "x:1", "--state-dir", "/proc/von-agent", "--insecure"}, 1, "state dir /proc/von-agent"},
		{[]string{"--node", "r1", "--manager", "x:1", "--state-dir", dir}, 2, "von-manager pki issue --dir DIR --kind agent"},
		{append(base, "--ca", "ca.crt"), 2, "choose one"},
		{[]string{"--node", "r1", "--manager", "x:1", "--state-dir", dir, "--ca", "/nonexistent/ca.crt", "--cert", "c", "--key", "k"}, 2, "CA certificate"},
	} {
		code, out := runArgs(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.says) {
			t.Errorf("von-agent %s: exit %d, output %q; want exit %d saying %q", strings.Join(tc.args, " "), code, out, tc.code, tc.says)
		}
	}
}
