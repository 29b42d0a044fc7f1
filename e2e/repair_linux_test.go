//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/framework"
)

// A redundant ON carries a stream while a router on one of its paths loses the
// interface of that path (the router notices: its agent reports it down). The
// manager re-routes the broken path onto the third core within about a second
// of the agent's report; the receiver loses nothing throughout (the intact path
// carries every message meanwhile); the ON stays on its new pair after the link
// comes back.
func TestRepairLosesNothing(t *testing.T) {
	c := start(t, "testdata/threecore.yaml", fastLeases...)
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "red", "--members", "h1,h2", "--rate", "4Mbit", "--redundant", "--ttl", "1h"); err != nil {
		t.Fatal(err)
	}
	path0 := func() string {
		out, err := c.Vonctl(ctx, "get", "red", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Paths []struct {
				Paths []struct {
					Nodes []string `json:"nodes"`
				} `json:"paths"`
			} `json:"paths"`
			Degraded string `json:"degraded"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		return strings.Join(v.Paths[0].Paths[0].Nodes, ",")
	}
	if p := path0(); p != "h1,r1,r2,r3,r6,h2" {
		t.Fatalf("path 0 is %s", p)
	}
	var moved time.Duration
	rs, ss, err := c.Stream(ctx, "red", 14*time.Second, 500, 4000, 500, func() error {
		time.Sleep(3 * time.Second)
		cut := time.Now()
		if _, err := c.TB.Exec(ctx, "r2", "ip", "link", "set", "eth1", "down"); err != nil {
			return err
		}
		for moved == 0 && time.Since(cut) < 8*time.Second {
			if path0() != "h1,r1,r2,r3,r6,h2" {
				moved = time.Since(cut)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if moved == 0 {
		t.Fatalf("not re-routed 8 s after the cut; manager log:\n%s", framework.Tail(c.Log("manager"), 20))
	}
	t.Logf("re-routed %v after the cut (agents report every second); path 0 now %s; sent %d, delivered %d, lost %d, per path %v",
		moved.Round(time.Millisecond), path0(), ss.Sent, rs.Delivered, rs.Lost, rs.PerPath)
	if rs.Lost != 0 || rs.Delivered != ss.Sent || ss.Sent != 4000 {
		t.Errorf("lost %d of %d (delivered %d)", rs.Lost, ss.Sent, rs.Delivered)
	}
	if moved > 3*time.Second {
		t.Errorf("re-routing took %v", moved)
	}
	// The link comes back; the ON stays where it is.
	if _, err := c.TB.Exec(ctx, "r2", "ip", "link", "set", "eth1", "up"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if p := path0(); p != "h1,r1,r7,r8,r6,h2" {
		t.Errorf("after the link returned path 0 is %s", p)
	}
}
