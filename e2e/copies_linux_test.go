//go:build linux

package e2e

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/cluster"
)

// Issue 8 §0.1: on a redundant ON every message crosses a single-homed member's access
// link twice, once per path. The ON must be charged and shaped for 2R there, so a member
// sending at 0.9·R on both paths loses nothing — before the fix the class towards the
// receiver was R and dropped a third of the packets (path 1 lost 64%).
func TestBothCopiesAtNinetyPercent(t *testing.T) {
	c := start(t, "testdata/ring.yaml")
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "twice", "--members", "h1,h2", "--rate", "8Mbit", "--redundant", "--ttl", "10m"); err != nil {
		t.Fatal(err)
	}
	g := get(t, c, "twice")
	for _, l := range g.Links {
		want := uint64(8_000_000)
		if l.Link == "h1-r1" || l.Link == "r6-h2" {
			want = 16_000_000
		}
		if l.RateBps != want || uint64(l.Copies)*8_000_000 != want {
			t.Errorf("charged %s %s: %d bit/s, %d copies; want %d", l.Link, l.Direction, l.RateBps, l.Copies, want)
		}
	}
	table, err := c.Vonctl(ctx, "get", "twice")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`Charged r6-h2:\s+2 × 8Mbit = 16Mbit each way`).MatchString(table) ||
		!regexp.MustCompile(`Charged r2-r3:\s+1 × 8Mbit = 8Mbit each way`).MatchString(table) {
		t.Errorf("vonctl get does not show the admission arithmetic:\n%s", table)
	}
	// The class towards the receiver (r6:eth2) is shaped for both copies.
	cls, err := c.TB.Exec(ctx, "r6", "tc", "class", "show", "dev", "eth2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cls, "rate 16Mbit ceil 16Mbit") {
		t.Errorf("r6:eth2 classes:\n%s", cls)
	}

	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sink, err := c.TB.Listen(tctx, "h2", netip.AddrPortFrom(netip.IPv4Unspecified(), cluster.ONPort), cluster.ONKey)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	be, err := c.TB.Listen(tctx, "h2", netip.AddrPortFrom(netip.IPv4Unspecified(), cluster.FloodPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	// A best-effort flood from the stranger h3 fills the cores while both copies flow.
	floodDone := cluster.Flood(tctx, c.TB, "h3", "h2", 60_000_000, 3*time.Second)
	sent, err := cluster.SendON(tctx, c.TB, cluster.ONFlow{From: "h1", To: "h2", ONID: g.OnID, Rate: 7_200_000, Size: 1000, Duration: 3 * time.Second, Copies: 2})
	if err != nil {
		t.Fatal(err)
	}
	floodDone()
	time.Sleep(300 * time.Millisecond)
	for path := range 2 {
		got := sink.Key(cluster.Key(g.OnID, uint8(path)))
		loss := 1 - float64(got.Packets)/float64(sent[path].Packets)
		t.Logf("path %d: sent %d at %.2f Mbit/s, received %d (loss %.3f%%)", path, sent[path].Packets, sent[path].Rate()/1e6, got.Packets, 100*loss)
		if loss > 0.01 {
			t.Errorf("path %d lost %.2f%% at 0.9·R on both paths, want < 1%%", path, 100*loss)
		}
	}
}
