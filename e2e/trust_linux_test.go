//go:build linux

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vonproject/von/pki"
)

// The manager's etcd is lost and rebuilt from scratch: its election revisions
// start low again, far below the epochs the agents journaled. The new cluster
// takes the agents over when they register, with no journal deleted by hand,
// and reservations work again.
func TestEtcdRebuiltTakesOverAgents(t *testing.T) {
	c := start(t, "testdata/ring.yaml", fastLeases...)
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "before", "--members", "h1,h2", "--rate", "2Mbit", "--ttl", "1h"); err != nil {
		t.Fatal(err)
	}
	topo := filepath.Join(c.Dir, "topology.yaml")
	for range 30 { // raise the old cluster's revisions, and so the epochs agents saw
		if _, err := c.Vonctl(ctx, "topology", "apply", "-f", topo); err != nil {
			t.Fatal(err)
		}
	}
	c.StopManager()
	if err := os.RemoveAll(filepath.Join(c.Dir, "manager")); err != nil {
		t.Fatal(err)
	}
	if err := c.StartManager(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Vonctl(ctx, "topology", "apply", "-f", topo); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitAgents(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Vonctl(ctx, "reserve", "after", "--members", "h1,h2", "--rate", "2Mbit", "--ttl", "1h"); err != nil {
		t.Fatalf("reserve on the rebuilt cluster: %v\n%s", err, out)
	}
	// The old cluster's ON is gone with its etcd; the new one is installed.
	if n := len(htbClasses(t, c.TB)); n == 0 {
		t.Fatal("no classes installed after the rebuild")
	}
}

// Security errors say what to fix: a user who is not an admin cannot apply a
// topology, another user's ON is not theirs, an agent certificate is not a user.
func TestSecurityErrorsSayWhatToFix(t *testing.T) {
	c := start(t, "testdata/ring.yaml")
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "mine", "--members", "h1,h2", "--rate", "1Mbit"); err != nil {
		t.Fatal(err)
	}
	bob := pki.Identity{Kind: pki.KindUser, Name: "bob"}
	for _, tc := range []struct {
		id   pki.Identity
		args []string
		want string
	}{
		{bob, []string{"topology", "apply", "-f", filepath.Join(c.Dir, "topology.yaml")}, "needs an admin certificate"},
		{bob, []string{"release", "mine"}, "reserved by user admin"},
		{bob, []string{"get", "mine"}, "only its owner, its members or an admin"},
		{pki.Identity{Kind: pki.KindAgent, Name: "r1"}, []string{"list"}, "needs a certificate of kind user"},
	} {
		_, err := c.VonctlAs(ctx, tc.id, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("vonctl %v as %s: %v, want it to say %q", tc.args, tc.id, err, tc.want)
		}
	}
	out, err := c.VonctlAs(ctx, bob, "list")
	if err != nil || strings.Contains(out, "mine") {
		t.Errorf("bob's list: %v\n%s", err, out)
	}
}
