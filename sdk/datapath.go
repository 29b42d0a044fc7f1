package sdk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/vonproject/von/group"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/replay"
	"github.com/vonproject/von/seal"
	"github.com/vonproject/von/wire"
)

// txState caches this member's sealer for the current sending epoch key.
type txState struct {
	mu     sync.Mutex
	epoch  uint64
	keyID  uint64
	sealer *seal.Sealer
}

// peerKey names one data key and sequence space: a sender incarnation under one epoch
// key. Two coordinators racing may both create an epoch of the same number, so the key
// itself (its first 8 bytes) is part of the name.
type peerKey struct {
	name  string
	inc   uint64
	epoch uint64
	keyID uint64
}

func keyID(k []byte) uint64 {
	if len(k) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

type peerState struct {
	sealer *seal.Sealer
	win    replay.Window
}

// rxState is owned by the receive loop.
type rxState struct {
	peers     map[peerKey]*peerState
	lastSweep time.Time
	// pending holds data packets from addresses not (yet) in the group: a new
	// member's first packets can outrun the gossip that announces it here.
	pending  []pendingPacket
	bySource map[netip.AddrPort]int // pending packets per source
	// keys caches the group's receivable keys per low 16 epoch bits for keyCacheFor,
	// so a packet costs no allocation in the group.
	keys map[uint16]keyCacheEntry
}

type keyCacheEntry struct {
	keys []group.EpochKey
	at   time.Time
}

// keyCacheFor bounds how late a receiver sees a new epoch key or the end of a grace
// window; a miss (no key opens the packet) refreshes at once.
const keyCacheFor = 5 * time.Millisecond

func (v *VON) receiveKeys(g *group.Group, low16 uint16, now time.Time, fresh bool) []group.EpochKey {
	if v.rx.keys == nil {
		v.rx.keys = map[uint16]keyCacheEntry{}
	}
	if e, ok := v.rx.keys[low16]; ok && !fresh && now.Sub(e.at) < keyCacheFor && !e.at.After(now) {
		return e.keys
	}
	ks := g.ReceiveKeys(low16)
	v.rx.keys[low16] = keyCacheEntry{ks, now}
	return ks
}

type pendingPacket struct {
	b    []byte
	from netip.AddrPort
	at   time.Time
}

// Packets from unknown sources wait at most pendingFor (and pendingMax of them) for
// the sender to appear in the group before they are dropped as strangers'.
const (
	pendingFor       = time.Second
	pendingMax       = 1024
	pendingPerSource = 256
)

// sweepEvery is how often receive keys and windows that can no longer be used are
// dropped.
const sweepEvery = 5 * time.Second

const batch = 64

// sealer returns the sealer for this member's current sending epoch.
func (v *VON) sealer() (*seal.Sealer, uint64, error) {
	epoch, key, ok := v.grp.Load().SendKey()
	if !ok {
		return nil, 0, fmt.Errorf("%w: no group key yet", ErrClosed)
	}
	v.tx.mu.Lock()
	defer v.tx.mu.Unlock()
	if v.tx.sealer != nil && v.tx.epoch == epoch && v.tx.keyID == keyID(key) {
		return v.tx.sealer, epoch, nil
	}
	k, err := seal.SenderKey(key, v.onID, epoch, v.cfg.Member, v.inc)
	if err != nil {
		return nil, 0, err
	}
	s, err := seal.NewSealer(k)
	if err != nil {
		return nil, 0, err
	}
	v.tx.sealer, v.tx.epoch, v.tx.keyID = s, epoch, keyID(key)
	return s, epoch, nil
}

// packet is one sealed datagram (and its path-1 copy) queued for the writer.
type packet struct {
	p0, p1 *[]byte // p1 nil: one copy
	to     []*net.UDPAddr
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if b != nil {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// outQueue is how many packets may wait for the writer before Send blocks; ctlQueue
// how many gossip datagrams before they are dropped.
const (
	outQueue = 4096
	ctlQueue = 512
)

// Send sends msg to one member: sealed once, on both paths of a redundant ON. It
// returns once the packets are queued for the socket (UDP: delivery is not confirmed).
// A member that has just joined is waited for (bounded by ctx and readyWait) until the
// epoch that includes it is the sending one, so its first messages can be opened.
func (v *VON) Send(ctx context.Context, to string, msg []byte) error {
	a, live, ready := v.memberAddr(to)
	if live && !ready {
		deadline := time.Now().Add(readyWait)
		for live && !ready && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-v.closed:
				return ErrClosed
			case <-time.After(5 * time.Millisecond):
			}
			a, live, ready = v.memberAddr(to)
		}
	}
	switch {
	case !live:
		return fmt.Errorf("%w: %q", ErrUnknownMember, to)
	case !ready:
		return fmt.Errorf("%w: %q has joined but the group key that includes it is not in use yet", ErrUnknownMember, to)
	}
	return v.send(ctx, []*net.UDPAddr{a}, msg)
}

// SendNow is Send without the wait: to a member that is not live, or not keyed
// yet, it fails at once with ErrUnknownMember, as a link drops a packet — for
// forwarders (vonlink) that must not stall every flow behind one joining member.
func (v *VON) SendNow(ctx context.Context, to string, msg []byte) error {
	a, live, ready := v.memberAddr(to)
	if !live || !ready {
		return fmt.Errorf("%w: %q (live %v, keyed %v)", ErrUnknownMember, to, live, ready)
	}
	return v.send(ctx, []*net.UDPAddr{a}, msg)
}

// readyWait bounds how long Send waits for a new member's epoch.
const readyWait = 2 * time.Second

// Ready reports whether a message sent to member now can be opened there: it is live
// and holds the key this member seals with.
func (v *VON) Ready(member string) bool {
	_, live, ready := v.memberAddr(member)
	return live && ready
}

// Broadcast sends msg to every other live member that holds the current key (one seal
// for all of them); a member that joined a moment ago gets the next Broadcast.
func (v *VON) Broadcast(ctx context.Context, msg []byte) error {
	g := v.grp.Load()
	var to []*net.UDPAddr
	for _, m := range g.Members() {
		if m.Name != v.cfg.Member && g.Recipient(m) {
			to = append(to, net.UDPAddrFromAddrPort(m.Addr))
		}
	}
	if len(to) == 0 {
		return nil
	}
	return v.send(ctx, to, msg)
}

// memberAddrTTL bounds how stale the name → address cache of Send may be; epoch
// changes (every membership change rekeys) flush it at once.
const memberAddrTTL = 50 * time.Millisecond

type addrCache struct {
	mu    sync.Mutex
	at    time.Time
	epoch uint64
	addrs map[string]cachedAddr
}

type cachedAddr struct {
	a     *net.UDPAddr
	ready bool // holds the sending epoch
}

func (v *VON) memberAddr(name string) (*net.UDPAddr, bool, bool) {
	g := v.grp.Load()
	epoch, _, _ := g.SendKey()
	c := &v.addrs
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addrs == nil || c.epoch != epoch || time.Since(c.at) > memberAddrTTL {
		c.addrs = map[string]cachedAddr{}
		for _, m := range g.Members() {
			c.addrs[m.Name] = cachedAddr{net.UDPAddrFromAddrPort(m.Addr), g.Recipient(m)}
		}
		c.at, c.epoch = time.Now(), epoch
	}
	e, ok := c.addrs[name]
	return e.a, ok, e.ready
}

func (v *VON) send(ctx context.Context, to []*net.UDPAddr, msg []byte) error {
	if len(msg) > MaxMessage {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(msg), MaxMessage)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-v.closed:
		return ErrClosed
	default:
	}
	s, epoch, err := v.sealer()
	if err != nil {
		return err
	}
	bp := getBuf()
	h := wire.Header{ONID: v.onID, KeyEpoch: uint16(epoch), Seq: v.seq.Add(1)}
	p0, err := s.Seal((*bp)[:0], h, msg)
	if err != nil {
		putBuf(bp)
		return err
	}
	*bp = p0
	if err := v.enqueue(ctx, bp, to, false); err != nil {
		return err
	}
	v.st.sent.Add(uint64(len(to)))
	return nil
}

// enqueue hands packet *p0 (path 0) for every destination to the writer, with its
// path-1 copy on a redundant ON. It takes ownership of p0. Data waits for room (bounded
// by ctx); control datagrams (gossip) go to a queue of their own that the writer
// serves first, and are dropped when it is full — memberlist tolerates loss, but not
// probes stuck behind a data backlog.
func (v *VON) enqueue(ctx context.Context, p0 *[]byte, to []*net.UDPAddr, control bool) error {
	pk := packet{p0: p0, to: to}
	if v.redundant {
		p1 := getBuf()
		*p1 = append((*p1)[:0], *p0...)
		_ = seal.SetPath(*p1, 1)
		pk.p1 = p1
	}
	drop := func(err error) error {
		putBuf(pk.p0)
		putBuf(pk.p1)
		return err
	}
	q := v.outq
	if control {
		q = v.ctlq
	}
	select {
	case <-v.closed:
		return drop(ErrClosed)
	case q <- pk:
		return nil
	default:
	}
	if control {
		v.st.sendErrors.Add(1)
		return drop(nil)
	}
	select {
	case q <- pk:
		return nil
	case <-ctx.Done():
		return drop(ctx.Err())
	case <-v.closed:
		return drop(ErrClosed)
	}
}

// writeLoop drains the queue into the socket until stop closes; then it drains what
// is queued. Each flush sends what is held in one sendmmsg: with GSO, the datagrams
// of one destination and path go as trains of equal-size segments (a Send's two copies
// differ in the path byte, so they travel in two trains).
func (v *VON) writeLoop(stop <-chan struct{}) {
	defer v.wwg.Done()
	var held []packet
	type trainKey struct {
		to   netip.AddrPort
		path int
	}
	var (
		order  []trainKey
		trains = map[trainKey][][]byte{}
		addrs  = map[trainKey]*net.UDPAddr{}
		cmsgs  = map[int][]byte{} // UDP_SEGMENT control messages by segment size
		ms     []ipv4.Message
	)
	flush := func() {
		gso := v.sock.gso.Load()
		ms = ms[:0]
		if !gso {
			for _, pk := range held {
				for _, a := range pk.to {
					for _, b := range []*[]byte{pk.p0, pk.p1} {
						if b != nil {
							ms = append(ms, ipv4.Message{Buffers: [][]byte{*b}, Addr: a})
						}
					}
				}
			}
		} else {
			order = order[:0]
			clear(trains)
			for _, pk := range held {
				for _, a := range pk.to {
					for path, b := range []*[]byte{pk.p0, pk.p1} {
						if b == nil {
							continue
						}
						k := trainKey{a.AddrPort(), path}
						if _, ok := trains[k]; !ok {
							order = append(order, k)
							addrs[k] = a
						}
						trains[k] = append(trains[k], *b)
					}
				}
			}
			for _, k := range order {
				segs := trains[k]
				for len(segs) > 0 {
					size, n, total := len(segs[0]), 1, len(segs[0])
					for n < len(segs) && n < maxSegments && total+len(segs[n]) <= maxTrain && len(segs[n]) <= size {
						total += len(segs[n])
						n++
						if len(segs[n-1]) < size {
							break // a shorter segment ends a train
						}
					}
					m := ipv4.Message{Buffers: segs[:n:n], Addr: addrs[k]}
					if n > 1 {
						if cmsgs[size] == nil {
							cmsgs[size] = gsoCmsg(size)
						}
						m.OOB = cmsgs[size]
						v.st.trains.Add(1)
					}
					ms = append(ms, m)
					segs = segs[n:]
				}
			}
		}
		v.write(ms)
		for _, pk := range held {
			putBuf(pk.p0)
			putBuf(pk.p1)
		}
		held = held[:0]
	}
	// take moves what is queued (gossip first) into held, up to max packets.
	take := func(max int) {
		for len(held) < max {
			select {
			case pk := <-v.ctlq:
				held = append(held, pk)
				continue
			default:
			}
			select {
			case pk := <-v.outq:
				held = append(held, pk)
			default:
				return
			}
		}
	}
	for {
		select {
		case pk := <-v.ctlq:
			held = append(held, pk)
		case pk := <-v.outq:
			held = append(held, pk)
		case <-stop:
			take(math.MaxInt)
			flush()
			return
		}
		take(batch)
		flush()
	}
}

func hasTrain(ms []ipv4.Message) bool {
	for _, m := range ms {
		if len(m.Buffers) > 1 {
			return true
		}
	}
	return false
}

func (v *VON) write(ms []ipv4.Message) {
	if len(ms) == 0 {
		return
	}
	n, err := v.sock.writeBatch(ms)
	if err != nil && n > 0 && v.sock.gso.Load() && hasTrain(ms) {
		// A kernel or device that refuses segmentation offload: send datagram by
		// datagram from now on (this batch included).
		v.sock.gso.Store(false)
		v.log.Info("UDP segmentation offload refused; sending datagrams one by one", "err", err)
		var one []ipv4.Message
		for _, m := range ms {
			for _, b := range m.Buffers {
				one = append(one, ipv4.Message{Buffers: [][]byte{b}, Addr: m.Addr})
			}
		}
		n, err = v.sock.writeBatch(one)
	}
	if err != nil {
		v.st.sendErrors.Add(uint64(n))
		if !errors.Is(err, net.ErrClosed) {
			v.log.Debug("ON socket write", "refused", n, "err", err)
		}
	}
}

// conduit is gossipnet's view of the ON socket: control datagrams go out with the ON
// header (control flag), on both paths of a redundant ON, so the group's own traffic
// is reserved and pinned like the data.
type conduit VON

func (c *conduit) WriteTo(b []byte, to netip.AddrPort) error {
	v := (*VON)(c)
	bp := getBuf()
	p, err := wire.AppendHeader((*bp)[:0], wire.Header{ONID: v.onID, Flags: wire.FlagControl, Seq: v.ctlSeq.Add(1)})
	if err != nil {
		putBuf(bp)
		return err
	}
	*bp = append(p, b...)
	return v.enqueue(context.Background(), bp, []*net.UDPAddr{net.UDPAddrFromAddrPort(to)}, true)
}

func (c *conduit) LocalAddr() netip.AddrPort {
	v := (*VON)(c)
	return v.sock.local
}

// recvLoop reads the ON socket until it is closed.
func (v *VON) recvLoop() {
	defer v.wg.Done()
	ms := make([]ipv4.Message, batch)
	size := 2048
	if v.sock.gro {
		size = 65536 // a coalesced train
	}
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, size)}
		if oobLen > 0 {
			ms[i].OOB = make([]byte, oobLen)
		}
	}
	for {
		if len(v.rx.pending) > 0 {
			_ = v.sock.conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		} else {
			_ = v.sock.conn.SetReadDeadline(time.Time{})
		}
		n, err := v.sock.pc.ReadBatch(ms, 0)
		if len(v.rx.pending) > 0 {
			v.retryPending(time.Now())
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			select {
			case <-v.closed:
				return
			default:
			}
			v.log.Warn("ON socket read", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		now := time.Now()
		for i := range n {
			ua, ok := ms[i].Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			from := ua.AddrPort()
			from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			b := ms[i].Buffers[0][:ms[i].N]
			seg := 0
			if v.sock.gro && ms[i].NN > 0 {
				seg = groSize(ms[i].OOB[:ms[i].NN])
			}
			if seg <= 0 || seg >= len(b) {
				v.handle(b, from, now)
				continue
			}
			for len(b) > 0 {
				n := min(seg, len(b))
				v.handle(b[:n], from, now)
				b = b[n:]
			}
		}
	}
}

// handle processes one datagram: control to the gossip transport; data: identify the
// sender, skip copies already seen, open, and let the window deliver it once.
func (v *VON) handle(b []byte, from netip.AddrPort, now time.Time) {
	h, body, err := wire.Parse(b)
	if err != nil || h.ONID != v.onID {
		v.st.malformed.Add(1)
		return
	}
	g := v.grp.Load()
	if h.Flags&wire.FlagControl != 0 {
		// Gossip only from members and from addresses the manager registered for a
		// credential (joiners): a stranger cannot feed memberlist suspicions.
		if g != nil {
			if _, ok := g.MemberAt(from); ok {
				v.tr.Deliver(body, from)
				return
			}
		}
		if v.registered(from) {
			v.tr.Deliver(body, from)
			return
		}
		v.st.strangers.Add(1)
		return
	}
	if g == nil { // Join has not returned yet: wait like an unknown sender's
		v.hold(b, from, now)
		return
	}
	m, ok := g.MemberAt(from)
	if !ok {
		v.hold(b, from, now)
		return
	}
	if now.Sub(v.rx.lastSweep) > sweepEvery {
		v.sweep(now)
	}
	if v.deliver(m, h, b, v.receiveKeys(g, h.KeyEpoch, now, false), now) ||
		v.deliver(m, h, b, v.receiveKeys(g, h.KeyEpoch, now, true), now) { // a key just installed
		return
	}
	v.st.rejected.Add(1)
}

// hold keeps a data packet from an address that is not (yet) a member for up to
// pendingFor: a member just admitted elsewhere may send before this member's view and
// registry know it. At most pendingPerSource per address and pendingMax in all, so a
// stranger cannot crowd out a newcomer; the registry is re-read meanwhile.
func (v *VON) hold(b []byte, from netip.AddrPort, now time.Time) {
	v.registered(from) // kicks a registry refresh for an unknown address
	if v.rx.bySource == nil {
		v.rx.bySource = map[netip.AddrPort]int{}
	}
	if len(v.rx.pending) >= pendingMax || v.rx.bySource[from] >= pendingPerSource {
		v.st.strangers.Add(1)
		return
	}
	v.rx.bySource[from]++
	v.rx.pending = append(v.rx.pending, pendingPacket{b: append([]byte(nil), b...), from: from, at: now})
}

// retryPending handles the waiting packets whose sender has joined since, and drops
// those that waited too long.
func (v *VON) retryPending(now time.Time) {
	g := v.grp.Load()
	if g == nil {
		return
	}
	keep := v.rx.pending[:0]
	var ready []pendingPacket
	for _, p := range v.rx.pending {
		switch {
		case func() bool { _, ok := g.MemberAt(p.from); return ok }():
			ready = append(ready, p)
		case now.Sub(p.at) > pendingFor:
			v.st.strangers.Add(1)
		default:
			keep = append(keep, p)
		}
	}
	v.rx.pending = keep
	clear(v.rx.bySource)
	for _, p := range keep {
		v.rx.bySource[p.from]++
	}
	for _, p := range ready {
		v.handle(p.b, p.from, p.at)
	}
}

// deliver tries keys on a data packet from member m: a copy its window has seen is
// dropped without AES, one that opens is accepted into the window and queued. It
// reports whether the packet was dealt with (false: no key opened it).
func (v *VON) deliver(m group.Member, h wire.Header, b []byte, keys []group.EpochKey, now time.Time) bool {
	for _, k := range keys {
		ps, err := v.peer(peerKey{m.Name, m.Incarnation, k.Epoch, keyID(k.Key)}, k.Key)
		if err != nil {
			continue
		}
		if !ps.win.Check(h.Seq) {
			v.st.duplicates.Add(1)
			v.st.perPath[h.PathIndex].Add(1)
			return true
		}
		_, pt, err := ps.sealer.Open(nil, b)
		if err != nil {
			continue // another key of the same low epoch bits may open it
		}
		if !ps.win.Accept(h.Seq) {
			v.st.duplicates.Add(1)
			v.st.perPath[h.PathIndex].Add(1)
			return true
		}
		v.st.perPath[h.PathIndex].Add(1)
		select {
		case v.inbox <- Message{From: m.Name, Data: pt, Epoch: k.Epoch, Path: h.PathIndex, Seq: h.Seq, Received: now}:
			v.st.delivered.Add(1)
		default:
			v.st.overflow.Add(1)
		}
		return true
	}
	return false
}

func (v *VON) peer(k peerKey, epochKey []byte) (*peerState, error) {
	if ps := v.rx.peers[k]; ps != nil {
		return ps, nil
	}
	sk, err := seal.SenderKey(epochKey, v.onID, k.epoch, k.name, k.inc)
	if err != nil {
		return nil, err
	}
	s, err := seal.NewSealer(sk)
	if err != nil {
		return nil, err
	}
	ps := &peerState{sealer: s}
	v.rx.peers[k] = ps
	return ps, nil
}

// sweep forgets the receive keys and windows of epochs no longer receivable. A window
// is never dropped while its key still opens packets — not even when its sender is
// (perhaps wrongly) taken for departed — so a replay can never find a fresh window.
// Memory stays bounded: a few receivable keys × the senders seen under them.
func (v *VON) sweep(now time.Time) {
	v.rx.lastSweep = now
	g := v.grp.Load()
	for k := range v.rx.peers {
		if !receivable(g.ReceiveKeys(uint16(k.epoch)), k) {
			delete(v.rx.peers, k)
		}
	}
}

func receivable(keys []group.EpochKey, pk peerKey) bool {
	for _, k := range keys {
		if k.Epoch == pk.epoch && keyID(k.Key) == pk.keyID {
			return true
		}
	}
	return false
}

// registered reports whether a is the gossip address of a member holding a
// credential, as of the last registry read; an unknown address asks for a fresh read
// (rate-limited, in the background).
func (v *VON) registered(a netip.AddrPort) bool {
	if m := v.registry.Load(); m != nil && (*m)[a] {
		return true
	}
	select {
	case v.regKick <- struct{}{}:
	default:
	}
	return false
}

func (v *VON) setRegistry(ms []*vonv1.RegisteredMember) {
	m := map[netip.AddrPort]bool{}
	for _, r := range ms {
		if a, err := netip.ParseAddrPort(r.GetGossipAddress()); err == nil {
			m[netip.AddrPortFrom(a.Addr().Unmap(), a.Port())] = true
		}
	}
	v.registry.Store(&m)
}

// registryLoop re-reads the member registry when an unknown address sent gossip, at
// most every registryEvery.
func (v *VON) registryLoop() {
	defer v.wg.Done()
	var last time.Time
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-v.regKick:
		}
		if d := registryEvery - time.Since(last); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-v.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		ctx, cancel := context.WithTimeout(v.ctx, 5*time.Second)
		resp, err := v.mgr.rs.ListMembers(ctx, &vonv1.ListMembersRequest{Name: v.cfg.ON})
		cancel()
		if err != nil {
			v.log.Debug("read the member registry", "err", err)
			continue
		}
		v.setRegistry(resp.GetMembers())
	}
}

const registryEvery = 500 * time.Millisecond
