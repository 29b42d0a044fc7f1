//go:build linux

package e2e

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/cluster"
)

func streamWithCut(t *testing.T, c *cluster.Cluster, on string, recvFor time.Duration) (cluster.RecvSummary, cluster.SendSummary) {
	t.Helper()
	rs, ss, err := c.StreamWithCut(context.Background(), on, "r2-r3", recvFor)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: sent %d (errors %d, refused %d, pacer slipped %d), delivered %d, lost %d, duplicates %d, reordered %d, overflow %d, per path %v, p50 %.2f ms, p99 %.2f ms, epochs %v",
		on, ss.Sent, ss.Errors, ss.SendErrors, ss.Slipped, rs.Delivered, rs.Lost, rs.Duplicates, rs.Reordered, rs.Overflow, rs.PerPath, rs.P50, rs.P99, rs.Epochs)
	return rs, ss
}

// Issue 8 §5: on a redundant ON a 3 s cut of one path under a best-effort flood loses no
// message; on a non-redundant ON the same cut loses messages.
func TestVONCutLosesNothing(t *testing.T) {
	c := start(t, "testdata/ring.yaml")
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "twin", "--members", "h1,h2", "--rate", "8Mbit", "--redundant", "--ttl", "10m"); err != nil {
		t.Fatal(err)
	}
	rs, ss := streamWithCut(t, c, "twin", 30*time.Second)
	if ss.Sent != 5040 || rs.Sent != 5040 {
		t.Fatalf("sent %d, receiver saw a run of %d, want 5040", ss.Sent, rs.Sent)
	}
	if rs.Lost != 0 || rs.Delivered != 5040 {
		t.Errorf("redundant ON lost %d of 5040 messages across a one-path cut", rs.Lost)
	}
	// Path 1 carried every copy; path 0 lost the cut's ~3 s worth; the SDK eliminated
	// every copy that made it on both.
	if rs.PerPath["1"] < 5000 || rs.PerPath["0"] > 5040-1500 || rs.PerPath["0"] < 1000 {
		t.Errorf("copies per path %v: want path 1 ≈ 5040, path 0 short by the cut", rs.PerPath)
	}
	// The group's own traffic rides the ON too: across the flood and the cut nobody
	// was declared dead, so no rekey happened.
	if len(rs.Epochs) != 1 {
		t.Errorf("epochs %v: a member was taken for dead during the cut", rs.Epochs)
	}
	if rs.Duplicates+rs.Delivered != rs.PerPath["0"]+rs.PerPath["1"] {
		t.Errorf("duplicates %d + delivered %d ≠ copies %v", rs.Duplicates, rs.Delivered, rs.PerPath)
	}
	if _, err := c.Vonctl(ctx, "release", "twin"); err != nil {
		t.Fatal(err)
	}
	// The routers saw r2-r3's carrier drop during the cut, and the manager plans new
	// ONs around links reported down: let every agent report it up again (they
	// register every second) so that "single" takes the cut link.
	time.Sleep(2500 * time.Millisecond)

	if _, err := c.Vonctl(ctx, "reserve", "single", "--members", "h1,h2", "--rate", "8Mbit", "--ttl", "10m"); err != nil {
		t.Fatal(err)
	}
	// Without a second path the cut loses messages (and may cost the group its
	// view of h2 for a moment: gossip rides the same path, so the run the receiver
	// counts can end early).
	rs, _ = streamWithCut(t, c, "single", 15*time.Second)
	if rs.Lost < 500 || rs.PerPath["1"] != 0 {
		t.Errorf("non-redundant ON: the receiver saw a run of %d, lost %d (want the cut's ~2500), per path %v", rs.Sent, rs.Lost, rs.PerPath)
		t.Logf("h1:\n%s\nh2:\n%s", c.PerfLog("h1"), c.PerfLog("h2"))
	}
}

// The same cut with many small messages, so the SDK sends them in trains (UDP
// segmentation offload: one super-datagram per destination and path): the routers pin
// every datagram of a train by its path byte, and nothing is lost.
func TestVONTrainsAcrossCut(t *testing.T) {
	c := start(t, "testdata/ring.yaml")
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "trains", "--members", "h1,h2", "--rate", "8Mbit", "--redundant", "--ttl", "10m"); err != nil {
		t.Fatal(err)
	}
	// 200-byte messages are 260-byte packets: 3000/s is 6.2 Mbit/s per copy.
	rs, ss, err := c.StreamWithCutAt(ctx, "trains", "r2-r3", 30*time.Second, 3000, 18000, 200)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d in %d trains (refused %d, pacer slipped %d), delivered %d, lost %d, overflow %d, rejected %d, strangers %d, per path %v, epochs %v",
		ss.Sent, ss.Trains, ss.SendErrors, ss.Slipped, rs.Delivered, rs.Lost, rs.Overflow, rs.Rejected, rs.Strangers, rs.PerPath, rs.Epochs)
	if rs.Lost != 0 || rs.Delivered != 18000 {
		t.Errorf("lost %d of 18000 across the cut", rs.Lost)
	}
	if rs.PerPath["1"] < 17900 {
		t.Errorf("path 1 carried %d copies, want all", rs.PerPath["1"])
	}
	if rs.PerPath["1"] < 18000 || rs.Lost > 0 {
		// Where did path-1 copies go? Kernel counters on the way.
		for _, n := range []string{"h2"} {
			out, _ := c.TB.Exec(ctx, n, "cat", "/proc/net/snmp")
			t.Logf("%s /proc/net/snmp:\n%s", n, out)
		}
		for _, rd := range [][2]string{{"r1", "eth2"}, {"r4", "eth1"}, {"r5", "eth1"}, {"r6", "eth2"}} {
			out, _ := c.TB.Exec(ctx, rd[0], "tc", "-s", "class", "show", "dev", rd[1])
			t.Logf("%s %s:\n%s", rd[0], rd[1], out)
		}
		for _, l := range []string{"h1-r1", "r1-r4", "r4-r5", "r5-r6", "r6-h2"} {
			cmd := exec.Command("ip", "netns", "exec", c.TB.WireNamespace(l), "tc", "-s", "qdisc", "show")
			out, _ := cmd.CombinedOutput()
			t.Logf("wire %s:\n%s", l, out)
		}
		for _, n := range []string{"h1", "r1", "r4", "r5", "r6", "h2"} {
			out, _ := c.TB.Exec(ctx, n, "ip", "-s", "link")
			t.Logf("%s links:\n%s", n, out)
		}
	}
}
