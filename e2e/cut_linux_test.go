//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/cluster"
)

// The network between the managers and one router's agent is cut (both ways,
// dropping everything). Shorter than the partition lease (3 s): nothing changes.
// Longer: the agent removes the partition by itself when its lease runs out,
// the manager reports the ON degraded (no live agent on the router), and once the
// network heals the partition is put back and the ON is whole again.
func TestManagerAgentCut(t *testing.T) {
	c := startWith(t, "testdata/ring.yaml", cluster.Options{ManagerArgs: fastLeases, CuttableAgents: true})
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "cut", "--members", "h1,h2", "--rate", "2Mbit", "--redundant", "--ttl", "1h"); err != nil {
		t.Fatal(err)
	}
	onR2 := func() bool { return htbClasses(t, c.TB)["r2:eth0"]+htbClasses(t, c.TB)["r2:eth1"] > 0 }
	degraded := func() string {
		out, err := c.Vonctl(ctx, "get", "cut", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Degraded string `json:"degraded"`
		}
		_ = json.Unmarshal([]byte(out), &v)
		return v.Degraded
	}
	if !onR2() {
		t.Fatal("r2 has no partition")
	}
	// Short cut.
	c.CutAgent("r2", true)
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if !onR2() {
			t.Fatal("r2 lost its partition during a cut shorter than the lease")
		}
	}
	c.CutAgent("r2", false)
	time.Sleep(2 * time.Second)
	if !onR2() {
		t.Fatal("r2 lost its partition after a short cut")
	}
	// Long cut.
	c.CutAgent("r2", true)
	cut := time.Now()
	var gone, marked time.Duration
	for time.Since(cut) < 10*time.Second && (gone == 0 || marked == 0) {
		if gone == 0 && !onR2() {
			gone = time.Since(cut)
		}
		if marked == 0 && degraded() != "" {
			marked = time.Since(cut)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if gone == 0 || marked == 0 {
		t.Fatalf("after 10 s cut: partition removed after %v, ON degraded after %v (0: not)", gone, marked)
	}
	c.CutAgent("r2", false)
	healed := time.Now()
	var back time.Duration
	for time.Since(healed) < 15*time.Second {
		if onR2() && degraded() == "" {
			back = time.Since(healed)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if back == 0 {
		t.Fatalf("not repaired 15 s after the network healed; degraded %q", degraded())
	}
	t.Logf("long cut: r2 removed the partition after %v (lease 3 s), the ON was degraded after %v; healed: back and whole after %v",
		gone.Round(100*time.Millisecond), marked.Round(100*time.Millisecond), back.Round(100*time.Millisecond))
}
