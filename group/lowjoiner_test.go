package group

import (
	"testing"
	"time"
)

// A member whose name sorts first joins an existing group: it becomes the
// coordinator, and everyone — it included — converges on one epoch that all hold.
func TestLowestNameJoinsLate(t *testing.T) {
	c := newCluster(t)
	b := c.start(c.cfg("b01"))
	d := c.start(c.cfg("b02"))
	waitFor(t, 5*time.Second, "two members", func() bool { return len(b.Members()) == 2 && len(d.Members()) == 2 })
	a := c.start(c.cfg("b00"))
	gs := []*Group{a, b, d}
	waitFor(t, 5*time.Second, "one epoch for all three", func() bool {
		_, ok := converged(gs, 3)
		return ok
	})
	e, _, _ := a.SendKey()
	for _, g := range []*Group{b, d} {
		found := false
		for _, k := range g.ReceiveKeys(uint16(e)) {
			found = found || k.Epoch == e
		}
		if !found {
			t.Errorf("%s cannot open what b00 sends (epoch %d)", g.cfg.Member, e)
		}
	}
}

// Two members found a group each (both found the registry empty); a third seeded with
// both merges them: all three converge on one epoch that each holds.
func TestTwoFoundersMerge(t *testing.T) {
	c := newCluster(t)
	cb := c.mgr.config(c.mgr.issue(t, "c01", testONID, time.Now().Add(time.Hour)))
	cd := c.mgr.config(c.mgr.issue(t, "c02", testONID, time.Now().Add(time.Hour)))
	b, d := c.start(cb), c.start(cd)
	a := c.start(c.mgr.config(c.mgr.issue(t, "c00", testONID, time.Now().Add(time.Hour)), b.selfAddr.String(), d.selfAddr.String()))
	gs := []*Group{a, b, d}
	waitFor(t, 5*time.Second, "three members each", func() bool {
		return len(a.Members()) == 3 && len(b.Members()) == 3 && len(d.Members()) == 3
	})
	waitFor(t, 5*time.Second, "one epoch for all three", func() bool {
		_, ok := converged(gs, 3)
		return ok
	})
}
