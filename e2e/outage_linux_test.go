//go:build linux

package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Agents ride out a manager outage shorter than the partition lease; after a longer
// one they remove partitions by themselves (failsafe); a restarted manager, whose etcd
// kept the reservation, puts them back. Metrics report it all.
func TestManagerOutage(t *testing.T) {
	metrics := freeAddr(t)
	c := start(t, "testdata/ring.yaml", append(fastLeases, "--metrics", metrics)...)
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "steady", "--members", "h1,h2", "--rate", "3Mbit", "--ttl", "1h"); err != nil {
		t.Fatal(err)
	}
	want := len(htbClasses(t, c))
	if want == 0 {
		t.Fatal("no classes")
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`von_manager_reservations{state="committed"} 1`, `von_manager_twopc_seconds_count{outcome="commit"} 1`,
		`von_manager_agent_calls_total{method="prepare",result="ok"}`} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %q", m)
		}
	}

	// Short outage (1.5 s < 3 s lease): nothing changes.
	c.StopManager()
	time.Sleep(1500 * time.Millisecond)
	if got := len(htbClasses(t, c)); got != want {
		t.Fatalf("after a short outage: %d interfaces with classes, want %d", got, want)
	}
	if err := c.StartManager(ctx); err != nil {
		t.Fatal(err)
	}
	if g := get(t, c, "steady"); g.State != "committed" {
		t.Fatalf("after manager restart: %s", g.State)
	}
	time.Sleep(2 * time.Second) // refreshes resume
	if got := len(htbClasses(t, c)); got != want {
		t.Fatalf("after restart: %d interfaces with classes, want %d", got, want)
	}

	// Long outage: every agent removes the partition by itself once its lease passes.
	c.StopManager()
	deadline := time.Now().Add(15 * time.Second)
	for len(htbClasses(t, c)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("partitions still installed %s into an outage: %v", 15*time.Second, htbClasses(t, c))
		}
		time.Sleep(300 * time.Millisecond)
	}
	// The manager comes back; the reservation (still leased) is re-installed everywhere.
	if err := c.StartManager(ctx); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for len(htbClasses(t, c)) != want {
		if time.Now().After(deadline) {
			t.Fatalf("not re-installed after the manager returned: %v", htbClasses(t, c))
		}
		time.Sleep(300 * time.Millisecond)
	}
}
