package group

import (
	"crypto/hpke"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestConcurrentCoordinatorsConverge makes two members coordinate at once (m03 is
// made to believe it is the lowest): every member must end on one epoch, for all
// five members, with the same key, and stay there.
func TestConcurrentCoordinatorsConverge(t *testing.T) {
	c := newCluster(t)
	gs := c.grow(5, "m", nil)
	var e0 uint64
	var ok bool
	c.waitFor(5*time.Second, "convergence", func() bool { e0, ok = converged(gs, 5); return ok })

	rival := gs[3]
	rival.cfg.hooks.forceCoordinator.Store(true)
	for _, g := range []*Group{gs[0], rival} {
		g.mu.Lock()
		g.rk.force = true
		g.mu.Unlock()
		g.poke()
	}
	idle := func(g *Group) bool {
		g.mu.RLock()
		defer g.mu.RUnlock()
		return g.rk.inflight == nil && !g.rk.force
	}
	// Settled: converged, both have proposed, and no change for 300 ms.
	var e1 uint64
	c.waitFor(5*time.Second, "convergence after the race", func() bool {
		e, ok := converged(gs, 5)
		if !ok || e <= e0 || !idle(gs[0]) || !idle(rival) ||
			len(c.proposedBy("m00", e0)) == 0 || len(c.proposedBy("m03", e0)) == 0 {
			return false
		}
		time.Sleep(300 * time.Millisecond)
		e1, ok = converged(gs, 5)
		return ok && e1 == e
	})
	rival.cfg.hooks.forceCoordinator.Store(false)
	for _, g := range gs {
		g.mu.RLock()
		n := len(g.rk.send.recips)
		g.mu.RUnlock()
		if n != 5 {
			t.Errorf("%s sends with an epoch for %d members", g.self.Name, n)
		}
	}
	t.Logf("m00 proposed %v, m03 proposed %v; all on %d", c.proposedBy("m00", e0), c.proposedBy("m03", e0), e1)
}

// proposedBy lists the epochs newer than e0 that name proposed.
func (c *cluster) proposedBy(name string, e0 uint64) (ids []epochID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sm := range c.sent[name] {
		if m, err := decodeMessage([]byte(sm[1])); err == nil && m.Type == msgPropose && m.Epoch.E > e0 && !slices.Contains(ids, m.Epoch) {
			ids = append(ids, m.Epoch)
		}
	}
	return ids
}

// cutTransport is memberlist's NetTransport with a switchable partition: it drops
// what its member sends to an address on the other side. Every member drops its
// own outgoing traffic, so no packet or stream crosses the cut.
type cutTransport struct {
	*memberlist.NetTransport
	cut func(addr string) bool
}

var errCut = errors.New("partitioned")

func (t *cutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.cut(a.Addr) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.cut(addr) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *cutTransport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	if t.cut(a.Addr) {
		return nil, errCut
	}
	return t.NetTransport.DialAddressTimeout(a, d)
}

func (t *cutTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	if t.cut(addr) {
		return nil, errCut
	}
	return t.NetTransport.DialTimeout(addr, d)
}

// TestPartitionHealConverges splits a 5-member group 3 | 2. Each side detects the
// other as failed and rekeys under its own coordinator — two coordinators, same
// epoch numbers. After the heal the sides merge and every member converges on one
// epoch whose recipients are all five.
func TestPartitionHealConverges(t *testing.T) {
	c := newCluster(t)
	var mu sync.Mutex
	side := map[string]int{} // address → side
	split := false
	cutFor := func(self *string) func(string) bool {
		return func(addr string) bool {
			mu.Lock()
			defer mu.Unlock()
			return split && side[addr] != side[*self]
		}
	}
	var gs []*Group
	for i, name := range []string{"m00", "m01", "m02", "m03", "m04"} {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		self := new(string)
		cfg := c.cfg(name)
		cfg.Transport = &cutTransport{NetTransport: nt, cut: cutFor(self)}
		cfg.RejoinInterval = 500 * time.Millisecond
		g := c.start(cfg)
		mu.Lock()
		*self = g.selfAddr.String()
		side[*self] = min(i/3, 1)
		mu.Unlock()
		gs = append(gs, g)
	}
	c.waitFor(5*time.Second, "convergence", func() bool { _, ok := converged(gs, 5); return ok })

	mu.Lock()
	split = true
	mu.Unlock()
	var ea, eb uint64
	e0 := epochOf(gs[0])
	c.waitFor(10*time.Second, "each side on its own epoch", func() bool {
		var oka, okb bool
		ea, oka = converged(gs[:3], 3)
		eb, okb = converged(gs[3:], 2)
		return oka && okb && ea > e0 && eb > e0
	})
	for _, g := range gs {
		g.mu.RLock()
		t.Logf("partitioned: %s sends with %v to %d", g.self.Name, g.rk.send.id, len(g.rk.send.recips))
		g.mu.RUnlock()
	}
	if ka, _ := sendID(gs[0]); ka.C != "m00" {
		t.Fatalf("side A coordinator %s, want m00", ka.C)
	}
	if kb, _ := sendID(gs[3]); kb.C != "m03" {
		t.Fatalf("side B coordinator %s, want m03", kb.C)
	}

	mu.Lock()
	split = false
	mu.Unlock()
	start := time.Now()
	var e uint64
	c.waitFor(15*time.Second, "convergence after the heal", func() bool {
		var ok bool
		e, ok = converged(gs, 5)
		return ok && e > max(ea, eb)
	})
	g := gs[4]
	g.mu.RLock()
	id, n := g.rk.send.id, len(g.rk.send.recips)
	g.mu.RUnlock()
	if id.C != "m00" || n != 5 {
		t.Fatalf("healed epoch %v with %d recipients", id, n)
	}
	t.Logf("sides on %d and %d; healed onto %v in %s", ea, eb, id, time.Since(start))
}

// TestMissedRekeyIsPulled: a member that loses every proposal and commit of a
// rekey catches up by itself once messages flow again (it sees the newer epoch in
// a probe ack and pulls it from the coordinator).
func TestMissedRekeyIsPulled(t *testing.T) {
	c := newCluster(t)
	var mu sync.Mutex
	deaf := false
	gs := c.grow(4, "m", func(cfg *Config) {
		if cfg.Member == "m03" {
			cfg.hooks.dropIn = func(typ byte) bool {
				mu.Lock()
				defer mu.Unlock()
				return deaf && (typ == msgPropose || typ == msgCommit)
			}
		}
	})
	var e0 uint64
	var ok bool
	c.waitFor(5*time.Second, "convergence", func() bool { e0, ok = converged(gs, 4); return ok })
	mu.Lock()
	deaf = true
	mu.Unlock()
	for _, g := range gs[:3] {
		g.mu.Lock()
		g.rk.force = true // a periodic rekey, now
		g.mu.Unlock()
		g.poke()
	}
	c.waitFor(3*time.Second, "the others on a new epoch", func() bool {
		e, ok := converged(gs[:3], 4)
		return ok && e > e0
	})
	if epochOf(gs[3]) != e0 {
		t.Fatal("the deaf member got the new epoch")
	}
	mu.Lock()
	deaf = false
	mu.Unlock()
	start := time.Now()
	c.waitFor(3*time.Second, "the deaf member to catch up", func() bool { _, ok := converged(gs, 4); return ok })
	t.Logf("caught up in %s", time.Since(start))
}

// TestRefuseEpochNamingDeparted injects proposals, validly signed by a live member,
// whose recipient list still names a member that left. A member that is not the
// coordinator refuses (nack) and installs nothing; the coordinator refuses too and
// issues a newer epoch, which everybody adopts.
func TestRefuseEpochNamingDeparted(t *testing.T) {
	c := newCluster(t)
	gs := c.grow(4, "m", nil)
	c.waitFor(5*time.Second, "convergence", func() bool { _, ok := converged(gs, 4); return ok })
	gone := gs[2].self
	if err := gs[2].Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.remove(gs[2])
	live := []*Group{gs[0], gs[1], gs[3]}
	var e1 uint64
	c.waitFor(2*time.Second, "rekey without m02", func() bool {
		var ok bool
		e1, ok = converged(live, 3)
		live[0].mu.RLock()
		defer live[0].mu.RUnlock()
		return ok && len(live[0].rk.send.recips) == 3
	})

	// m01 "proposes" epoch e1+5 naming m02 — to m03 (not coordinator) and m00 (coordinator).
	from := gs[1]
	bad := epochID{e1 + 5, from.self.Name}
	recips := []ref{gs[0].self, from.self, gone, gs[3].self}
	for _, to := range []*Group{gs[3], gs[0]} {
		sealed, err := hpke.Seal(to.hpkePriv.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(),
			hpkeInfo(testVON, bad, from.self.Inc, to.self), make([]byte, 32))
		if err != nil {
			t.Fatal(err)
		}
		m := &message{Type: msgPropose, VON: testVON, Epoch: bad, CoordInc: from.self.Inc,
			From: to.self, Recips: recips, Sealed: sealed}
		to.inbox <- inbound{raw: m.encode(from.cfg.SignKey)}
	}
	c.waitFor(3*time.Second, "a newer epoch from the coordinator", func() bool {
		e, ok := converged(live, 3)
		return ok && e > bad.E
	})
	for _, g := range live {
		g.mu.RLock()
		_, holds := g.rk.keys[bad]
		id := g.rk.send.id
		g.mu.RUnlock()
		if holds {
			t.Errorf("%s installed the epoch naming m02", g.self.Name)
		}
		if id.C != "m00" {
			t.Errorf("%s sends with %v", g.self.Name, id)
		}
	}
	nacked := func(name string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.ContainsFunc(c.sent[name], func(sm [2]string) bool {
			m, err := decodeMessage([]byte(sm[1]))
			return err == nil && m.Type == msgNack && m.Reason == nackDeparted && m.Epoch == bad
		})
	}
	if !nacked("m03") || !nacked("m00") {
		t.Errorf("nacks: m03 %v, m00 %v", nacked("m03"), nacked("m00"))
	}
}
