package dashboard

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/vonproject/von/etcdembed"
	"github.com/vonproject/von/reservation"
)

// Two hosts on one link: an ON between them crosses no router, so it commits
// without agents.
const direct = `nodes:
  - {name: h1, kind: host, address: 10.77.1.1}
  - {name: h2, kind: host, address: 10.77.1.2}
links:
  - {a: h1, b: h2, capacity: 100Mbit}
`

// The dashboard over a real manager on a real (embedded) etcd: what the
// manager does shows up on the stream and in /api/state.
func TestFollowsARealManager(t *testing.T) {
	e, err := etcdembed.Start(context.Background(), etcdembed.Options{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close) // cleanups run last first: the dashboard stops, then the manager, then etcd
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	m := reservation.New(cli, reservation.Config{ID: "m-test"})
	t.Cleanup(m.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	mctx, mcancel := context.WithCancel(ctx)
	mdone := make(chan error, 1)
	go func() { mdone <- m.Run(mctx) }()
	t.Cleanup(func() {
		mcancel()
		if err := <-mdone; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	select {
	case <-m.Leading():
	case <-ctx.Done():
		t.Fatal("the manager does not lead")
	}

	_, srv := running(t, FromManager(m), Options{})
	ch := stream(t, srv.URL)
	var s Snapshot
	next(t, ch, "state", &s)
	if s.Topology != nil || s.Leader != "m-test" || len(s.ONs) != 0 {
		t.Fatalf("before any topology: %+v", s)
	}
	if _, err := m.ApplyTopology(ctx, direct); err != nil {
		t.Fatal(err)
	}
	next(t, ch, "state", &s)
	if s.Topology == nil || len(s.Topology.Nodes) != 2 || len(s.Usage) != 2 {
		t.Fatalf("after the topology: %+v", s)
	}

	if _, err := m.Reserve(ctx, reservation.ReserveRequest{Name: "video", Members: []string{"h1", "h2"}, Rate: 20_000_000, TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	var on ON
	for on.State != "committed" {
		next(t, ch, "on", &on)
	}
	if on.Name != "video" || !on.Live || on.OnID == 0 || len(on.Paths) != 1 || len(on.Paths[0].Paths[0].Links) != 1 {
		t.Fatalf("on: %+v", on)
	}
	var u struct{ Usage []Usage }
	for len(u.Usage) == 0 || u.Usage[0].ReservedBps == 0 {
		next(t, ch, "usage", &u)
	}
	if len(u.Usage) != 2 || u.Usage[0].ReservedBps != 20_000_000 || u.Usage[1].ReservedBps != 20_000_000 {
		t.Fatalf("usage: %+v", u.Usage)
	}
	code, body, _ := get(t, srv.URL+"/api/state")
	if code != 200 || json.Unmarshal([]byte(body), &s) != nil || len(s.ONs) != 1 || s.ONs[0].State != "committed" || s.Usage[0].ReservedBps != 20_000_000 {
		t.Fatalf("/api/state: %d %s", code, body)
	}

	if _, err := m.Release(ctx, "video"); err != nil {
		t.Fatal(err)
	}
	for on.State != "released" {
		next(t, ch, "on", &on)
	}
	if on.Live {
		t.Errorf("a released ON is live: %+v", on)
	}
	for u.Usage[0].ReservedBps != 0 {
		next(t, ch, "usage", &u)
	}
}
