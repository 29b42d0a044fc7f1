package agent

import (
	"context"
	"slices"
	"testing"
	"time"
)

// The interface listing is cached, and any change of links, addresses or
// root qdiscs in the namespace drops the cache: a listing never misses one
// for longer than the event takes to arrive.
func TestInterfaceCacheFollowsTheKernel(t *testing.T) {
	tb := bed(t)
	ctx := context.Background()
	k, err := openKernel(tb.Namespace("r1"))
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	ifs, err := k.interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var dev string
	for n := range ifs {
		if n != "lo" {
			dev = n
			break
		}
	}
	if dev == "" {
		t.Fatalf("no interface on r1: %v", ifs)
	}
	k.mu.Lock()
	cached := k.cache != nil
	k.mu.Unlock()
	if !cached {
		t.Fatal("the listing was not cached (no netlink subscription?)")
	}
	steps := []struct {
		argv []string
		ok   func(ifaceInfo) bool
	}{
		{[]string{"ip", "addr", "add", "10.77.250.1/32", "dev", dev}, func(i ifaceInfo) bool { return slices.Contains(i.Addrs, "10.77.250.1/32") }},
		{[]string{"ip", "link", "set", dev, "down"}, func(i ifaceInfo) bool { return !i.Up }},
		{[]string{"ip", "link", "set", dev, "up"}, func(i ifaceInfo) bool { return i.Up }},
		{[]string{"tc", "qdisc", "replace", "dev", dev, "root", "handle", "9:", "htb"}, func(i ifaceInfo) bool { return i.Foreign != "" }},
	}
	for _, s := range steps {
		if _, err := tb.Exec(ctx, "r1", s.argv...); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			ifs, err := k.interfaces()
			if err != nil {
				t.Fatal(err)
			}
			if s.ok(ifs[dev]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %v the listing still shows %+v", s.argv, ifs[dev])
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Class changes (the agent's own, on every Commit) keep the cache.
	if _, err := k.interfaces(); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Exec(ctx, "r1", "tc", "class", "add", "dev", dev, "parent", "9:", "classid", "9:1", "htb", "rate", "1mbit"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	k.mu.Lock()
	cached = k.cache != nil
	k.mu.Unlock()
	if !cached {
		t.Fatal("a class change dropped the interface listing")
	}
}
