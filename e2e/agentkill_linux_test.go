//go:build linux

package e2e

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// Agents on both paths of a redundant ON are killed -9 under a stream and
// restarted: the partitions they installed stay in the kernel (their lease, not
// the process, decides), the restarted agents take them over from their
// journals without disturbing them, and the receiver loses nothing.
func TestAgentKillUnderTraffic(t *testing.T) {
	c := start(t, "testdata/ring.yaml", fastLeases...)
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "k", "--members", "h1,h2", "--rate", "4Mbit", "--redundant", "--ttl", "1h"); err != nil {
		t.Fatal(err)
	}
	before := htbClasses(t, c.TB)
	rs, ss, err := c.Stream(ctx, "k", 12*time.Second, 500, 3000, 500, func() error {
		time.Sleep(2 * time.Second)
		for _, n := range []string{"r2", "r5"} { // one router of each path
			c.StopAgent(n, syscall.SIGKILL)
		}
		time.Sleep(time.Second)
		for _, n := range []string{"r2", "r5"} {
			if err := c.StartAgent(ctx, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agents of r2 and r5 killed -9 and restarted under the stream: sent %d, delivered %d, lost %d, per path %v",
		ss.Sent, rs.Delivered, rs.Lost, rs.PerPath)
	if rs.Lost != 0 || rs.Delivered != ss.Sent || ss.Sent != 3000 {
		t.Errorf("lost %d of %d", rs.Lost, ss.Sent)
	}
	// Each path carried (nearly) every copy: a kill that disturbed the data plane
	// would cost a path the copies of the second the agent was down (≈500).
	if rs.PerPath["0"]+5 < ss.Sent || rs.PerPath["1"]+5 < ss.Sent {
		t.Errorf("a path dropped copies while its agent was down: %v", rs.PerPath)
	}
	if err := c.WaitAgents(ctx, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if after := htbClasses(t, c.TB); len(after) != len(before) {
		t.Errorf("classes before %v, after %v", before, after)
	}
}
