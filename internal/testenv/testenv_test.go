package testenv

import (
	"os"
	"testing"
)

func TestRequireRoot(t *testing.T) {
	run := func(t *testing.T) (ran, skipped bool) {
		t.Run("needs-root", func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			RequireRoot(t, "testing testenv")
			ran = true
		})
		return ran, skipped
	}
	t.Run("no-root", func(t *testing.T) {
		t.Setenv(NoRootEnv, "1")
		if ran, skipped := run(t); ran || !skipped {
			t.Errorf("with %s set: ran %v, skipped %v; want skipped", NoRootEnv, ran, skipped)
		}
	})
	t.Run("default", func(t *testing.T) {
		t.Setenv(NoRootEnv, "")
		t.Setenv(RequireEnv, "0")
		ran, skipped := run(t)
		if root := os.Geteuid() == 0; ran != root || skipped == root {
			t.Errorf("root %v: ran %v, skipped %v", root, ran, skipped)
		}
	})
}
