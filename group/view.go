package group

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vonproject/von/credential"
)

// admit verifies a node's meta, using the cache for unchanged metas.
func (g *Group) admit(n *memberlist.Node, merge bool) (*peerInfo, error) {
	addr := nodeAddr(n.Addr, n.Port)
	g.mu.RLock()
	pi := g.verified[n.Name]
	g.mu.RUnlock()
	if pi != nil && pi.meta == string(n.Meta) && pi.Addr == addr {
		return pi, nil
	}
	g.vkMu.Lock()
	keys := g.vkeys
	g.vkMu.Unlock()
	pi, err := verifyMeta(g.cfg.VON, g.cfg.ONID, n.Name, addr, n.Meta, keys, time.Now())
	if err != nil {
		if errors.Is(err, credential.ErrUnknownKey) {
			g.requestRefresh(addr.String())
		}
		g.log.Debug("group: node rejected", "node", n.Name, "addr", addr, "merge", merge, "err", err)
		if h := g.cfg.hooks; h != nil && h.rejected != nil {
			h.rejected(n.Name, err)
		}
		return nil, err
	}
	g.mu.Lock()
	g.verified[n.Name] = pi
	g.mu.Unlock()
	return pi, nil
}

// nodeUp adds or refreshes a node in the view.
func (g *Group) nodeUp(n *memberlist.Node) {
	// memberlist only reports nodes NotifyAlive accepted, so this is normally a
	// cache hit; it re-verifies if a concurrent merge replaced the cached meta.
	pi, err := g.admit(n, false)
	if err != nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.view[n.Name]
	switch {
	case p != nil && p.Incarnation == pi.Incarnation:
		if p.state == stateAlive || p.bye {
			return
		}
		p.state = stateAlive // declared dead, refuted
	default:
		if p != nil && p.state == stateAlive { // restarted before we saw it die
			g.departLocked(p, stateDead)
		}
		p = &peer{peerInfo: pi}
		g.view[n.Name] = p
	}
	g.byAddr[p.Addr] = p.Name
	if p.Name != g.self.Name {
		g.emit(Event{Type: EventJoin, Member: p.Member})
	}
	g.rk.viewChanged()
	g.poke()
}

// nodeDown marks a node departed.
func (g *Group) nodeDown(name string, left bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.view[name]
	if p == nil || p.state != stateAlive || name == g.self.Name {
		return
	}
	st := stateDead
	if left {
		st = stateLeft
	}
	g.departLocked(p, st)
	g.poke()
}

// departLocked marks p left or dead and reports it.
func (g *Group) departLocked(p *peer, st int) {
	p.state = st
	if st == stateDead {
		p.failedAt = time.Now()
	}
	if g.byAddr[p.Addr] == p.Name {
		delete(g.byAddr, p.Addr)
	}
	t := EventFail
	if st == stateLeft {
		t = EventLeave
	}
	g.emit(Event{Type: t, Member: p.Member})
	g.rk.viewChanged()
}

// poke wakes the loop.
func (g *Group) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// requestRefresh asks the refresher to fetch the verification keys again and then
// retry the node at addr.
func (g *Group) requestRefresh(addr string) {
	g.vkMu.Lock()
	if len(g.retryAddrs) < 64 {
		g.retryAddrs[addr] = struct{}{}
	}
	g.vkMu.Unlock()
	select {
	case g.refreshCh <- struct{}{}:
	default:
	}
}

// refresher refetches the verification keys on request, at most every
// keyRefreshMin, and then pushes/pulls with the nodes that presented an unknown key
// so their alive messages are checked again.
func (g *Group) refresher() {
	defer g.wg.Done()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-g.refreshCh:
		}
		minGap := keyRefreshMin
		if h := g.cfg.hooks; h != nil && h.refreshMin > 0 {
			minGap = h.refreshMin
		}
		g.vkMu.Lock()
		wait := time.Until(g.vkFetched.Add(minGap))
		g.vkMu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-g.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		ctx, cancel := context.WithTimeout(g.ctx, keyFetchLimit)
		keys, err := g.cfg.VerificationKeys(ctx)
		cancel()
		g.vkMu.Lock()
		g.vkFetched = time.Now()
		var addrs []string
		if err == nil {
			g.vkeys = keys
			for a := range g.retryAddrs {
				if len(addrs) < 4 {
					addrs = append(addrs, a)
				}
			}
		}
		clear(g.retryAddrs)
		g.vkMu.Unlock()
		if err != nil {
			g.log.Warn("group: verification keys refresh failed", "err", err)
			continue
		}
		if len(addrs) > 0 && g.ctx.Err() == nil {
			_, _ = g.ml.Join(addrs)
		}
	}
}

// rejoinFor is how long a failed member's address is retried.
const rejoinFor = 10 * time.Minute

// rejoiner periodically pushes/pulls with members declared dead in the last
// rejoinFor and with seeds absent from the view. memberlist alone never contacts a
// dead member again, so without this two sides of a healed partition would stay
// apart; a push/pull makes each side refute the other's "dead" and they merge.
func (g *Group) rejoiner() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var addrs []string
		g.mu.RLock()
		live := map[string]bool{}
		for _, p := range g.view {
			if p.state == stateAlive {
				live[p.Addr.String()] = true
			} else if !p.bye && now.Sub(p.failedAt) < rejoinFor {
				addrs = append(addrs, p.Addr.String())
			}
		}
		leaving := g.rk.leaving
		g.mu.RUnlock()
		for _, s := range g.cfg.Seeds {
			if !live[s] && !slices.Contains(addrs, s) {
				addrs = append(addrs, s)
			}
		}
		if leaving || len(addrs) == 0 {
			continue
		}
		if len(addrs) > 2 { // each dead address may cost a TCPTimeout; Close waits for us
			addrs = addrs[:2]
		}
		_, _ = g.ml.Join(addrs)
	}
}
