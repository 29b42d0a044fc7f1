package group

import (
	"crypto/hpke"
	"slices"
	"time"
)

// handle verifies and dispatches one rekey message. Proposals and commits from a
// coordinator not yet in the view are stashed (fresh ones only) and retried when
// the view changes: a joiner may hear the coordinator before gossip about it.
func (g *Group) handle(raw []byte, fresh bool) {
	m, err := decodeMessage(raw)
	if err != nil {
		g.log.Debug("group: bad rekey message", "err", err)
		return
	}
	if m.VON != g.cfg.VON {
		return
	}
	now := time.Now()
	var out []outbound
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	s := &g.rk
	signer := m.signer()
	p := g.view[signer.Name]
	if p == nil || p.Incarnation != signer.Inc || p.state != stateAlive || signer.Name == g.self.Name {
		if fresh && (m.Type == msgPropose || m.Type == msgCommit) && (p == nil || p.Incarnation != signer.Inc) {
			s.stash = append(s.stash, stashed{raw: append([]byte(nil), raw...), at: now})
			if len(s.stash) > maxStash {
				s.stash = s.stash[1:]
			}
		}
		g.mu.Unlock()
		return
	}
	if !m.verify(p.SignKey) {
		g.mu.Unlock()
		g.log.Debug("group: bad signature on rekey message", "from", signer.Name, "type", m.Type)
		return
	}
	switch m.Type {
	case msgPropose:
		out = g.onPropose(m, now)
	case msgAck:
		if r := s.inflight; r != nil && r.id == m.Epoch && slices.Contains(r.recips, m.From) {
			r.acked[m.From.Name] = true
			g.poke()
		}
	case msgCommit:
		out = g.onCommit(m, now)
	case msgPull:
		out = g.onPull(m)
	case msgNack:
		g.onNack(m)
	case msgBye:
		to := mlNode(p.Member)
		g.departLocked(p, stateLeft)
		p.bye = true
		g.poke()
		m := &message{Type: msgByeAck, VON: g.cfg.VON, From: g.self}
		out = append(out, outbound{to: to, b: m.encode(g.cfg.SignKey), typ: msgByeAck})
	case msgByeAck:
		if s.leaving && s.byeAcks != nil {
			s.byeAcks[m.From.Name] = true
			select {
			case s.byeAcked <- struct{}{}:
			default:
			}
		}
	}
	g.mu.Unlock()
	g.enqueue(out)
}

func (g *Group) nack(to string, id epochID, reason byte) []outbound {
	var high epochID
	if s := g.rk.send; s != nil {
		high = s.id
	}
	return g.msgTo(to, &message{Type: msgNack, Epoch: id, From: g.self, Reason: reason, High: high})
}

// coordinatorLocked reports whether this member coordinates in its view.
func (g *Group) coordinatorLocked() bool {
	live := g.liveLocked()
	return len(live) > 0 && live[0].Name == g.self.Name
}

// onPropose installs a proposed epoch key for receiving and acks it, unless the
// epoch is older than the one this member sends with or names a member it knows
// departed (then it refuses, and issues a newer epoch if it coordinates).
func (g *Group) onPropose(m *message, now time.Time) []outbound {
	s := &g.rk
	id := m.Epoch
	if m.From != g.self || s.leaving || !slices.Contains(m.Recips, g.self) || id.E == 0 {
		return nil
	}
	ack := &message{Type: msgAck, Epoch: id, From: g.self}
	if k := s.keys[id]; k != nil {
		if k.coordInc == m.CoordInc {
			return g.msgTo(id.C, ack) // a resend: our ack was lost
		}
		if k == s.send {
			return nil
		}
		delete(s.keys, id) // left by a previous incarnation of the coordinator
	}
	if s.send != nil && !s.send.id.less(id) {
		return g.nack(id.C, id, nackStale)
	}
	s.bump(id)
	if d := g.departedLocked(m.Recips); d != "" || s.refused[id] {
		s.refused[id] = true
		g.log.Debug("group: refusing epoch naming a departed member", "epoch", id, "member", d)
		if g.coordinatorLocked() {
			s.force = true
			g.poke()
		}
		return g.nack(id.C, id, nackDeparted)
	}
	key, err := hpke.Open(g.hpkePriv, hpke.HKDFSHA256(), hpke.AES256GCM(),
		hpkeInfo(g.cfg.VON, id, m.CoordInc, g.self), m.Sealed)
	if err != nil || len(key) != 32 {
		g.log.Debug("group: cannot open epoch key", "epoch", id, "err", err)
		return nil
	}
	g.installLocked(&epochKey{id: id, coordInc: m.CoordInc, key: key, recips: m.Recips, installed: now})
	s.admitted = true
	g.poke()
	return g.msgTo(id.C, ack)
}

// onCommit switches to a committed epoch this member holds, or pulls it.
func (g *Group) onCommit(m *message, now time.Time) []outbound {
	s := &g.rk
	id := m.Epoch
	if s.leaving || (s.send != nil && !s.send.id.less(id)) {
		return nil
	}
	s.bump(id)
	k := s.keys[id]
	if k == nil || k.coordInc != m.CoordInc {
		if s.refused[id] || now.Sub(s.pulled[id]) < g.cfg.RekeyRetry {
			return nil
		}
		s.pulled[id] = now
		return g.msgTo(id.C, &message{Type: msgPull, Epoch: id, From: g.self})
	}
	if d := g.departedLocked(k.recips); d != "" {
		s.refused[id] = true
		delete(s.keys, id)
		if g.coordinatorLocked() {
			s.force = true
			g.poke()
		}
		return g.nack(id.C, id, nackDeparted)
	}
	g.switchLocked(k, now)
	return nil
}

// onPull resends a recipient its proposal of an epoch this member coordinated, and
// the commit if there was one. Departed members are never served: the signer
// lookup in handle admits only live ones.
func (g *Group) onPull(m *message) []outbound {
	s := &g.rk
	rounds := s.rounds
	if s.inflight != nil {
		rounds = append(slices.Clip(rounds), s.inflight)
	}
	for _, r := range rounds {
		if r.id != m.Epoch {
			continue
		}
		if !slices.Contains(r.recips, m.From) || r.msgs[m.From.Name] == nil {
			break
		}
		n := g.to(m.From.Name)
		if n == nil {
			return nil
		}
		out := []outbound{{to: n, b: r.msgs[m.From.Name], typ: msgPropose}}
		if r.committed {
			out = append(out, outbound{to: n, b: r.commit, typ: msgCommit})
		}
		return out
	}
	return g.nack(m.From.Name, m.Epoch, nackNotRecipient)
}

// onNack learns the sender's epoch. A stale nack aborts the round it refuses: the
// coordinator retries with a higher epoch at once.
func (g *Group) onNack(m *message) {
	s := &g.rk
	if m.High.E != 0 && g.view[m.High.C] != nil {
		s.bump(m.High)
	}
	r := s.inflight
	switch {
	case m.Reason == nackStale && r != nil && r.id == m.Epoch && !m.High.less(r.id):
		s.inflight = nil
		s.force = true
		g.poke()
	case m.Reason == nackNotRecipient && s.send != nil && s.send.id.less(m.High):
		s.force = true // an epoch exists that this member is not part of
		g.poke()
	}
}

// onHint pulls the key of a higher epoch a peer advertised in its probe ack.
func (g *Group) onHint(h *hint) {
	now := time.Now()
	g.mu.Lock()
	s := &g.rk
	if g.closed || s.leaving || (s.send != nil && !s.send.id.less(h.id)) || h.id.C == g.self.Name ||
		s.refused[h.id] || now.Sub(s.pulled[h.id]) < g.cfg.RekeyAckTimeout {
		g.mu.Unlock()
		return
	}
	s.pulled[h.id] = now
	out := g.msgTo(h.id.C, &message{Type: msgPull, Epoch: h.id, From: g.self})
	g.mu.Unlock()
	g.enqueue(out)
}
