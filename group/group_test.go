package group

import (
	"context"
	"crypto/hpke"
	"slices"
	"testing"
	"time"
)

// drain collects the events seen so far.
func drain(g *Group) []Event {
	var out []Event
	for {
		select {
		case e, ok := <-g.Events():
			if !ok {
				return out
			}
			out = append(out, e)
		default:
			return out
		}
	}
}

func hasEvent(evs []Event, t EventType, name string) bool {
	return slices.ContainsFunc(evs, func(e Event) bool { return e.Type == t && e.Member.Name == name })
}

func TestJoinFiveMembersShareOneEpoch(t *testing.T) {
	c := newCluster(t)
	gs := c.grow(5, "m", nil)
	c.waitFor(5*time.Second, "5 members on one epoch", func() bool { _, ok := converged(gs, 5); return ok })

	for _, g := range gs {
		ms := g.Members()
		if !slices.IsSortedFunc(ms, func(a, b Member) int { return compareNames(a.Name, b.Name) }) {
			t.Fatalf("%s: members not sorted: %v", g.self.Name, ms)
		}
		for _, o := range gs {
			m, ok := g.MemberAt(o.selfAddr)
			if !ok || m.Name != o.self.Name || m.Incarnation != o.self.Inc {
				t.Fatalf("%s: MemberAt(%s) = %+v, %v", g.self.Name, o.selfAddr, m, ok)
			}
		}
		e, k, _ := g.SendKey()
		rk := g.ReceiveKeys(uint16(e))
		if !slices.ContainsFunc(rk, func(x EpochKey) bool { return x.Epoch == e && string(x.Key) == string(k) }) {
			t.Fatalf("%s: ReceiveKeys(%d) lacks the sending key", g.self.Name, uint16(e))
		}
		if len(g.ReceiveKeys(uint16(e)+1000)) != 0 {
			t.Fatalf("%s: ReceiveKeys returned keys for an unused epoch", g.self.Name)
		}
	}
	// The first member saw the others join.
	evs := drain(gs[0])
	for _, o := range gs[1:] {
		if !hasEvent(evs, EventJoin, o.self.Name) {
			t.Fatalf("m00 saw no join of %s: %v", o.self.Name, evs)
		}
	}
	if !slices.ContainsFunc(evs, func(e Event) bool { return e.Type == EventRekey }) {
		t.Fatal("no rekey event")
	}
}

func compareNames(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestGracefulLeaveRekeysWithoutTheLeaver(t *testing.T) {
	c := newCluster(t)
	gs := c.grow(5, "m", func(cfg *Config) { cfg.Grace = 300 * time.Millisecond })
	e0, ok := converged(gs, 5)
	c.waitFor(5*time.Second, "convergence", func() bool { e0, ok = converged(gs, 5); return ok })
	for _, g := range gs {
		drain(g)
	}
	_, oldKey, _ := gs[0].SendKey()

	leaver, survivors := gs[2], slices.Delete(slices.Clone(gs), 2, 3)
	start := time.Now()
	if err := leaver.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.remove(leaver)
	var e1 uint64
	c.waitFor(time.Second, "survivors on a new epoch", func() bool {
		e1, ok = converged(survivors, 4)
		return ok && e1 > e0
	})
	t.Logf("graceful leave → all 4 survivors on epoch %d in %s", e1, time.Since(start))

	for _, g := range survivors {
		if !hasEvent(drain(g), EventLeave, "m02") {
			t.Fatalf("%s: no leave event for m02", g.self.Name)
		}
		if slices.ContainsFunc(g.Members(), func(m Member) bool { return m.Name == "m02" }) {
			t.Fatalf("%s still lists m02", g.self.Name)
		}
		if _, ok := g.MemberAt(leaver.selfAddr); ok {
			t.Fatalf("%s: MemberAt finds the departed member", g.self.Name)
		}
	}
	// The leaver holds nothing newer than e0 ...
	leaver.mu.RLock()
	for id := range leaver.rk.keys {
		if id.E > e0 {
			t.Errorf("leaver holds epoch %v", id)
		}
	}
	leaver.mu.RUnlock()
	if k := leaver.ReceiveKeys(uint16(e1)); len(k) != 0 {
		t.Fatalf("leaver can receive epoch %d", e1)
	}
	// ... and none of the proposals sent for newer epochs opens with its key.
	priv, err := hpke.NewDHKEMPrivateKey(leaver.cfg.SealKey)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	var newer int
	for _, msgs := range c.sent {
		for _, sm := range msgs {
			m, err := decodeMessage([]byte(sm[1]))
			if err != nil || m.Type != msgPropose || m.Epoch.E <= e0 {
				continue
			}
			newer++
			if sm[0] == "m02" || m.From.Name == "m02" || slices.ContainsFunc(m.Recips, func(r ref) bool { return r.Name == "m02" }) {
				t.Errorf("epoch %v proposal involves the leaver", m.Epoch)
			}
			for _, as := range []ref{leaver.self, m.From} {
				if _, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(),
					hpkeInfo(testVON, m.Epoch, m.CoordInc, as), m.Sealed); err == nil {
					t.Errorf("leaver opened the key of epoch %v", m.Epoch)
				}
			}
		}
	}
	c.mu.Unlock()
	if newer == 0 {
		t.Fatal("no proposals for the new epoch were recorded")
	}

	// The previous epoch stays receivable for Grace only.
	if !slices.ContainsFunc(survivors[0].ReceiveKeys(uint16(e0)), func(k EpochKey) bool { return string(k.Key) == string(oldKey) }) &&
		time.Since(start) < 200*time.Millisecond {
		t.Error("previous epoch not receivable within grace")
	}
	c.waitFor(time.Second, "grace to end", func() bool {
		return !slices.ContainsFunc(survivors[0].ReceiveKeys(uint16(e0)), func(k EpochKey) bool { return string(k.Key) == string(oldKey) })
	})
}

func TestKillIsDetectedAndRekeyed(t *testing.T) {
	c := newCluster(t)
	gs := c.grow(5, "m", nil)
	var e0 uint64
	var ok bool
	c.waitFor(5*time.Second, "convergence", func() bool { e0, ok = converged(gs, 5); return ok })
	for _, g := range gs {
		drain(g)
	}
	// Kill the coordinator: the next lowest takes over.
	victim, survivors := gs[0], gs[1:]
	start := time.Now()
	if err := victim.Close(); err != nil {
		t.Fatal(err)
	}
	c.remove(victim)
	var e1 uint64
	c.waitFor(5*time.Second, "survivors on a new epoch", func() bool {
		e1, ok = converged(survivors, 4)
		return ok && e1 > e0
	})
	t.Logf("kill → all 4 survivors on epoch %d in %s", e1, time.Since(start))
	for _, g := range survivors {
		evs := drain(g)
		if !hasEvent(evs, EventFail, "m00") || hasEvent(evs, EventLeave, "m00") {
			t.Fatalf("%s: want a fail (not leave) event for m00: %v", g.self.Name, evs)
		}
	}
	s := survivors[0]
	s.mu.RLock()
	if s.rk.send.id.C != "m01" || slices.ContainsFunc(s.rk.send.recips, func(r ref) bool { return r.Name == "m00" }) {
		t.Errorf("new epoch %v recipients %v", s.rk.send.id, s.rk.send.recips)
	}
	s.mu.RUnlock()
}

func TestPeriodicRekey(t *testing.T) {
	c := newCluster(t)
	gs := c.grow(3, "p", func(cfg *Config) { cfg.RekeyInterval = 300 * time.Millisecond })
	seen := map[uint64]bool{}
	deadline := time.Now().Add(3 * time.Second)
	for len(seen) < 4 && time.Now().Before(deadline) {
		if e, ok := converged(gs, 3); ok {
			seen[e] = true
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(seen) < 4 {
		t.Fatalf("saw %d converged epochs in 3 s with a 300 ms interval", len(seen))
	}
}

func TestEventsDropOldest(t *testing.T) {
	g := &Group{events: make(chan Event, 2)}
	for i := range 5 {
		g.emit(Event{Type: EventRekey, Epoch: uint64(i)})
	}
	if a, b := <-g.events, <-g.events; a.Epoch != 3 || b.Epoch != 4 {
		t.Fatalf("kept %d, %d; want 3, 4", a.Epoch, b.Epoch)
	}
}
