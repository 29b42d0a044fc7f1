//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// watch streams events; renew moves the lease; --keepalive keeps a short lease alive
// while it runs and the lease runs out after it stops; errors exit non-zero and say
// what to do.
func TestVonctlWatchRenewKeepalive(t *testing.T) {
	c := start(t, "testdata/ring.yaml", fastLeases...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	w, err := c.VonctlCmd(ctx, "watch", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	out, err := w.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []string
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev struct {
				Event       string `json:"event"`
				Reservation struct{ Name, State string }
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				mu.Lock()
				events = append(events, ev.Event+":"+ev.Reservation.Name+":"+ev.Reservation.State)
				mu.Unlock()
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)

	if _, err := c.Vonctl(ctx, "reserve", "w", "--members", "h1,h2", "--rate", "1Mbit", "--ttl", "1h"); err != nil {
		t.Fatal(err)
	}
	before := get(t, c, "w").LeaseExpires
	if _, err := c.Vonctl(ctx, "renew", "w", "--ttl", "2h"); err != nil {
		t.Fatal(err)
	}
	if after := get(t, c, "w").LeaseExpires; after.Sub(before) < 59*time.Minute {
		t.Errorf("renew --ttl 2h moved the lease from %s to %s", before, after)
	}
	if _, err := c.Vonctl(ctx, "release", "w"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	_ = w.Process.Signal(syscall.SIGINT)
	_ = w.Wait()
	mu.Lock()
	got := strings.Join(events, " ")
	mu.Unlock()
	for _, want := range []string{"created:w:preparing", "updated:w:committed", "updated:w:releasing", "updated:w:released"} {
		if !strings.Contains(got, want) {
			t.Errorf("watch events lack %q: %s", want, got)
		}
	}

	// --keepalive holds a 2 s lease for as long as vonctl runs.
	k, err := c.VonctlCmd(ctx, "reserve", "k", "--members", "h1,h2", "--rate", "1Mbit", "--ttl", "2s", "--keepalive")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	if g := get(t, c, "k"); g.State != "committed" {
		t.Fatalf("with --keepalive running, 5 s into a 2 s lease: %s", g.State)
	}
	_ = k.Process.Signal(syscall.SIGINT)
	if err := k.Wait(); err != nil {
		t.Errorf("vonctl --keepalive on interrupt: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for get(t, c, "k").State != "expired" {
		if time.Now().After(deadline) {
			t.Fatal("lease did not run out after --keepalive stopped")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// topology show, agents and list in every format.
	if out, err := c.Vonctl(ctx, "topology", "show"); err != nil || !strings.Contains(out, "r1-r2") || !strings.Contains(out, "20Mbit") {
		t.Errorf("topology show: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"topology", "show", "-o", "json"}, {"agents", "-o", "json"}, {"list", "-o", "json"}} {
		out, err := c.Vonctl(ctx, args...)
		if err != nil || !json.Valid([]byte(out)) {
			t.Errorf("vonctl %v: %v\n%s", args, err, out)
		}
	}
	if out, err := c.Vonctl(ctx, "list", "-o", "yaml"); err != nil || !strings.Contains(out, "name: k") {
		t.Errorf("list -o yaml: %v\n%s", err, out)
	}
	if out, err := c.Vonctl(ctx, "list", "--state", "expired"); err != nil || !strings.Contains(out, "k ") || strings.Contains(out, "w ") {
		t.Errorf("list --state expired: %v\n%s", err, out)
	}

	// Errors: exit 1 with what went wrong and what to do.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "nope"}, "vonctl list shows the reservations"},
		{[]string{"reserve", "big", "--members", "h1,h2", "--rate", "50Mbit"}, "ask for less bandwidth"},
		{[]string{"reserve", "x", "--members", "h1,h9", "--rate", "1Mbit"}, `"h9" is not a node`},
	} {
		_, err := c.Vonctl(ctx, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "exit status 1") {
			t.Errorf("vonctl %v: %v, want exit 1 mentioning %q", tc.args, err, tc.want)
		}
	}
	cmd, err := c.VonctlCmd(ctx, "--manager", "127.0.0.1:1", "list")
	if err != nil {
		t.Fatal(err)
	}
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "cannot reach the manager") {
		t.Errorf("unreachable manager: %v %s", err, b)
	}
}
