package group

import (
	"crypto/hpke"
	"crypto/rand"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// epochKey is an epoch key this member holds.
type epochKey struct {
	id        epochID
	coordInc  uint64
	key       []byte
	recips    []ref
	installed time.Time
	expires   time.Time // zero while sending with it or while pending (not yet switched to)
	lastPull  time.Time
}

// round is an epoch this member coordinates.
type round struct {
	id        epochID
	key       []byte
	recips    []ref
	to        map[string]*memberlist.Node
	msgs      map[string][]byte // each recipient's proposal
	acked     map[string]bool
	deadline  time.Time
	nextRetry time.Time
	committed bool
	commit    []byte
}

// rekeyState is the epoch and coordination state; guarded by Group.mu, changed only
// by the loop (and viewChanged by the delegates).
type rekeyState struct {
	keys      map[epochID]*epochKey
	send      *epochKey
	sendSince time.Time
	maxKnown  epochID // highest epoch seen in a verified message
	issued    uint64  // highest epoch number this member proposed: never reused
	refused   map[epochID]bool
	admitted  bool // another member verified this one (or it founded the group)
	leaving   bool
	inflight  *round
	rounds    []*round // recently committed, for pulls
	changed   time.Time
	dirty     bool
	force     bool      // issue a newer epoch (if coordinator)
	backoff   time.Time // no new round before
	stash     []stashed // proposals/commits from coordinators not (yet) in the view
	pulled    map[epochID]time.Time
	byeAcks   map[string]bool // while leaving: who confirmed the bye
	byeAcked  chan struct{}
}

type stashed struct {
	raw []byte
	at  time.Time
}

// inbound is a queued input of the loop: a rekey message or a probe-ack hint.
type inbound struct {
	raw  []byte
	hint *hint
}

// hint: a peer's probe ack said it sends with id.
type hint struct {
	from string
	id   epochID
}

type outbound struct {
	to  *memberlist.Node
	b   []byte
	typ byte
}

// testHooks let in-package tests observe and perturb the protocol.
type testHooks struct {
	dropIn           func(typ byte) bool          // drop incoming rekey messages
	sent             func(to string, b []byte)    // observe outgoing ones
	forceCoordinator atomic.Bool                  // act as coordinator whatever the view
	skipSelfCheck    bool                         // start even with a bad own credential
	refreshMin       time.Duration                // overrides keyRefreshMin
	rejected         func(node string, err error) // a node's meta was refused
}

const (
	keepRounds  = 4
	maxKeys     = 16
	maxStash    = 16
	stashMaxAge = 5 * time.Second
)

func (s *rekeyState) init() {
	s.keys = map[epochID]*epochKey{}
	s.refused = map[epochID]bool{}
	s.pulled = map[epochID]time.Time{}
	s.byeAcked = make(chan struct{}, 1)
}

func (s *rekeyState) viewChanged() {
	s.changed = time.Now()
	s.dirty = true
	clear(s.refused)
}

// receivable: the sending key, pending keys and keys within grace.
func (s *rekeyState) receivable(k *epochKey, now time.Time) bool {
	return k == s.send || k.expires.IsZero() || now.Before(k.expires)
}

func (s *rekeyState) bump(id epochID) {
	if s.maxKnown.less(id) {
		s.maxKnown = id
	}
}

// loop runs the protocol: it handles queued messages and timers in one goroutine.
func (g *Group) loop() {
	defer g.wg.Done()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		t.Reset(g.step(time.Now()))
		select {
		case <-g.ctx.Done():
			return
		case <-g.kick:
		case in := <-g.inbox:
			if in.hint != nil {
				g.onHint(in.hint)
			} else {
				g.handle(in.raw, true)
			}
		case <-t.C:
		}
	}
}

// sender delivers queued messages. Small ones go as a single packet, larger ones
// (big recipient lists) over a stream; losses are covered by resends and pulls.
func (g *Group) sender() {
	defer g.wg.Done()
	limit := 1150 - len(g.cfg.VON)
	for {
		select {
		case <-g.ctx.Done():
			return
		case o := <-g.outq:
			if h := g.cfg.hooks; h != nil && h.sent != nil {
				h.sent(o.to.Name, o.b)
			}
			var err error
			if len(o.b) <= limit {
				err = g.ml.SendBestEffort(o.to, o.b)
			} else {
				err = g.ml.SendReliable(o.to, o.b)
			}
			if err != nil {
				g.log.Debug("group: send failed", "to", o.to.Name, "type", o.typ, "err", err)
			}
		}
	}
}

func (g *Group) enqueue(out []outbound) {
	for _, o := range out {
		select {
		case g.outq <- o:
		default:
			g.log.Warn("group: send queue full, dropping", "to", o.to.Name)
		}
	}
}

// liveLocked returns the live members (self included unless leaving), by name.
func (g *Group) liveLocked() []*peerInfo {
	var live []*peerInfo
	for _, p := range g.view {
		if p.state == stateAlive && !(p.Name == g.self.Name && g.rk.leaving) {
			live = append(live, p.peerInfo)
		}
	}
	slices.SortFunc(live, func(a, b *peerInfo) int { return strings.Compare(a.Name, b.Name) })
	return live
}

// departedLocked returns a recipient this member knows departed: left, dead, or
// replaced by another incarnation.
func (g *Group) departedLocked(recips []ref) string {
	for _, r := range recips {
		if p := g.view[r.Name]; p != nil && (p.Incarnation != r.Inc || p.state != stateAlive) {
			return r.Name
		}
	}
	return ""
}

func refsOf(live []*peerInfo) []ref {
	out := make([]ref, len(live))
	for i, p := range live {
		out[i] = ref{p.Name, p.Incarnation}
	}
	return out
}

func (g *Group) to(name string) *memberlist.Node {
	if p := g.view[name]; p != nil && p.state == stateAlive && name != g.self.Name {
		return mlNode(p.Member)
	}
	return nil
}

func (g *Group) msgTo(name string, m *message) []outbound {
	n := g.to(name)
	if n == nil {
		return nil
	}
	m.VON = g.cfg.VON
	return []outbound{{to: n, b: m.encode(g.cfg.SignKey), typ: m.Type}}
}

// step runs the timers and the coordinator's decision; it returns how long the
// loop may sleep.
func (g *Group) step(now time.Time) time.Duration {
	var out []outbound
	var stash []stashed
	var build []*peerInfo
	var buildID epochID
	next := now.Add(time.Second)
	at := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}
	tn := g.cfg.Tuning

	g.mu.Lock()
	s := &g.rk
	if g.closed {
		g.mu.Unlock()
		return time.Hour
	}
	for id, k := range s.keys {
		if k != s.send && !k.expires.IsZero() {
			if !now.Before(k.expires) {
				delete(s.keys, id)
			} else {
				at(k.expires)
			}
		}
	}
	for id, t := range s.pulled {
		if now.Sub(t) > 10*time.Second {
			delete(s.pulled, id)
		}
	}
	if s.dirty && len(s.stash) > 0 {
		stash, s.stash = s.stash, nil
	}
	s.dirty = false

	if r := s.inflight; r != nil {
		switch {
		case s.leaving || g.departedLocked(r.recips) != "":
			g.log.Debug("group: round aborted, a recipient departed", "epoch", r.id)
			s.inflight = nil
		case len(r.acked) == len(r.recips) || !now.Before(r.deadline):
			if len(r.acked) > 1 || (len(r.recips) == 1 && s.admitted) {
				out = append(out, g.commitLocked(r, now)...)
			} else {
				g.log.Debug("group: round got no acks, retrying later", "epoch", r.id)
				s.inflight = nil
				s.backoff = now.Add(2 * tn.RekeyAckTimeout)
			}
		default:
			if !now.Before(r.nextRetry) {
				for _, rc := range r.recips {
					if !r.acked[rc.Name] && g.to(rc.Name) != nil {
						out = append(out, outbound{to: r.to[rc.Name], b: r.msgs[rc.Name], typ: msgPropose})
					}
				}
				r.nextRetry = now.Add(tn.RekeyRetry)
			}
			at(r.nextRetry)
			at(r.deadline)
		}
	}

	// Pending keys whose commit did not arrive: pull from their coordinator.
	for _, k := range s.keys {
		if k == s.send || !k.expires.IsZero() || k.id.C == g.self.Name {
			continue
		}
		due := k.installed.Add(tn.RekeyAckTimeout + tn.RekeyRetry)
		if !k.lastPull.IsZero() {
			due = k.lastPull.Add(tn.RekeyAckTimeout)
		}
		if now.Before(due) {
			at(due)
			continue
		}
		k.lastPull = now
		out = append(out, g.msgTo(k.id.C, &message{Type: msgPull, Epoch: k.id, From: g.self})...)
		at(now.Add(tn.RekeyAckTimeout))
	}

	if s.inflight == nil && !s.leaving {
		live := g.liveLocked()
		coord := len(live) > 0 && live[0].Name == g.self.Name
		if h := g.cfg.hooks; h != nil && h.forceCoordinator.Load() {
			coord = true
		}
		if len(live) == 1 && !s.admitted {
			coord = false // a joiner alone in its view waits for its seeds
		}
		if coord {
			need := s.send == nil || s.force || !slices.Equal(s.send.recips, refsOf(live)) ||
				!now.Before(s.sendSince.Add(g.cfg.RekeyInterval))
			if s.send != nil && s.send.id.less(s.maxKnown) && s.keys[s.maxKnown] == nil {
				need = true // someone sends with an epoch this member cannot have
			}
			due := s.changed.Add(tn.RekeyDebounce)
			if s.backoff.After(due) {
				due = s.backoff
			}
			switch {
			case need && now.Before(due):
				at(due)
			case need:
				buildID = g.nextIDLocked()
				build = live
				s.force = false
				s.issued = max(s.issued, buildID.E)
			case s.send != nil:
				at(s.sendSince.Add(g.cfg.RekeyInterval))
			}
		}
	}
	g.mu.Unlock()

	if build != nil && buildID.E != 0 {
		if r := g.newRound(buildID, build, now); r != nil {
			g.mu.Lock()
			if !g.closed && !g.rk.leaving {
				g.rk.inflight = r
				for _, rc := range r.recips {
					if b := r.msgs[rc.Name]; b != nil {
						out = append(out, outbound{to: r.to[rc.Name], b: b, typ: msgPropose})
					}
				}
				at(now)
			}
			g.mu.Unlock()
		}
	}
	g.enqueue(out)
	for _, st := range stash {
		if now.Sub(st.at) < stashMaxAge {
			g.handle(st.raw, false)
		}
	}
	if d := time.Until(next); d > time.Millisecond {
		return d
	}
	return time.Millisecond
}

// nextIDLocked is the epoch a new round of this member gets.
func (g *Group) nextIDLocked() epochID {
	top := max(g.rk.maxKnown.E, g.rk.issued)
	for id := range g.rk.keys {
		top = max(top, id.E)
	}
	if top == math.MaxUint64 {
		g.log.Error("group: epoch counter exhausted")
		return epochID{}
	}
	return epochID{top + 1, g.self.Name}
}

// newRound creates an epoch key and seals it to each live member.
func (g *Group) newRound(id epochID, live []*peerInfo, now time.Time) *round {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	r := &round{
		id: id, key: key, recips: refsOf(live),
		to: map[string]*memberlist.Node{}, msgs: map[string][]byte{},
		acked:    map[string]bool{g.self.Name: true},
		deadline: now.Add(g.cfg.RekeyAckTimeout), nextRetry: now.Add(g.cfg.RekeyRetry),
	}
	for _, p := range live {
		if p.Name == g.self.Name {
			continue
		}
		to := ref{p.Name, p.Incarnation}
		sealed, err := hpke.Seal(p.sealPK, hpke.HKDFSHA256(), hpke.AES256GCM(),
			hpkeInfo(g.cfg.VON, id, g.self.Inc, to), key)
		if err != nil {
			g.log.Warn("group: seal failed", "to", p.Name, "err", err)
			return nil
		}
		m := &message{Type: msgPropose, VON: g.cfg.VON, Epoch: id, CoordInc: g.self.Inc,
			From: to, Recips: r.recips, Sealed: sealed}
		r.msgs[p.Name] = m.encode(g.cfg.SignKey)
		r.to[p.Name] = mlNode(p.Member)
	}
	g.log.Debug("group: proposing epoch", "epoch", id, "recipients", len(r.recips))
	return r
}

// commitLocked switches this member to r and tells the recipients to switch.
func (g *Group) commitLocked(r *round, now time.Time) []outbound {
	s := &g.rk
	r.committed = true
	r.commit = (&message{Type: msgCommit, VON: g.cfg.VON, Epoch: r.id, CoordInc: g.self.Inc}).encode(g.cfg.SignKey)
	s.inflight = nil
	s.rounds = append(s.rounds, r)
	if len(s.rounds) > keepRounds {
		s.rounds = s.rounds[1:]
	}
	if len(r.acked) > 1 {
		s.admitted = true
	}
	k := &epochKey{id: r.id, coordInc: g.self.Inc, key: r.key, recips: r.recips, installed: now}
	g.installLocked(k)
	if s.send == nil || s.send.id.less(r.id) {
		g.switchLocked(k, now)
	}
	var out []outbound
	for _, rc := range r.recips {
		if n := g.to(rc.Name); n != nil {
			out = append(out, outbound{to: n, b: r.commit, typ: msgCommit})
		}
	}
	g.log.Debug("group: committed epoch", "epoch", r.id, "acked", len(r.acked), "recipients", len(r.recips))
	return out
}

func (g *Group) installLocked(k *epochKey) {
	s := &g.rk
	if s.keys[k.id] == nil && g.cfg.OnKey != nil {
		g.cfg.OnKey(EpochKey{Epoch: k.id.E, Key: k.key})
	}
	s.keys[k.id] = k
	s.bump(k.id)
	for len(s.keys) > maxKeys {
		var low *epochKey
		for _, o := range s.keys {
			if o != s.send && o != k && (low == nil || o.id.less(low.id)) {
				low = o
			}
		}
		if low == nil {
			break
		}
		delete(s.keys, low.id)
	}
}

// switchLocked makes k the sending epoch; older keys stay receivable for Grace.
func (g *Group) switchLocked(k *epochKey, now time.Time) {
	s := &g.rk
	first := s.send == nil
	s.send = k
	k.expires = time.Time{}
	s.sendSince = now
	for _, o := range s.keys {
		if o != k && o.id.less(k.id) && o.expires.IsZero() {
			o.expires = now.Add(g.cfg.Grace)
		}
	}
	p := encodeAckPayload(k.id)
	g.ackPayload.Store(&p)
	g.emit(Event{Type: EventRekey, Epoch: k.id.E})
	if first {
		close(g.keyReady)
	}
}
