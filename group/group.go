package group

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vonproject/von/credential"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Member is a live, verified member of the group.
type Member struct {
	Name        string
	Addr        netip.AddrPort // gossip (= data) address
	Incarnation uint64
	SignKey     ed25519.PublicKey // from its credential
	SealKey     []byte            // X25519 public key, from its credential
}

// EpochKey is one epoch's group key. Key must not be modified.
type EpochKey struct {
	Epoch uint64
	Key   []byte
}

// EventType says what an Event reports.
type EventType uint8

// Event types.
const (
	EventJoin  EventType = iota + 1 // a verified member joined (or came back)
	EventLeave                      // a member left gracefully
	EventFail                       // a member was declared dead by failure detection
	EventRekey                      // this member switched to a new sending epoch
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFail:
		return "fail"
	case EventRekey:
		return "rekey"
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// Event is a membership change or a rekey. Member is set for Join, Leave and Fail;
// Epoch for Rekey.
type Event struct {
	Type   EventType
	Member Member
	Epoch  uint64
}

const (
	eventBuffer   = 256
	inboxSize     = 1024
	outqSize      = 4096
	senders       = 8
	keyFetchLimit = 10 * time.Second
	byeWait       = 300 * time.Millisecond
)

// keyRefreshMin rate-limits VerificationKeys refreshes.
const keyRefreshMin = 5 * time.Second

// peer states in the view.
const (
	stateAlive = iota
	stateLeft
	stateDead
)

// peer is a view entry: the member's latest incarnation and whether it is live.
type peer struct {
	*peerInfo
	state    int
	bye      bool      // it said bye: left, whatever memberlist says later
	failedAt time.Time // when it was declared dead
}

// Group is one member's handle on its VON's process group.
type Group struct {
	cfg      Config
	log      *slog.Logger
	ml       *memberlist.Memberlist
	self     ref
	selfAddr netip.AddrPort
	meta     atomic.Pointer[[]byte] // this member's node meta (UpdateCredential replaces it)
	hpkePriv hpke.PrivateKey

	mu       sync.RWMutex
	view     map[string]*peer
	byAddr   map[netip.AddrPort]string
	verified map[string]*peerInfo // metas that verified, by node name
	closed   bool
	rk       rekeyState // owned by the loop; read by the getters under mu

	vkMu       sync.Mutex
	vkeys      []*vonv1.VerificationKey
	vkFetched  time.Time
	retryAddrs map[string]struct{}
	refreshCh  chan struct{}

	ackPayload atomic.Pointer[[]byte]
	inbox      chan inbound
	kick       chan struct{}
	outq       chan outbound
	keyReady   chan struct{}

	evMu     sync.Mutex
	events   chan Event
	evClosed bool

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Start creates this member's memberlist, joins Seeds (none: it founds the group)
// and returns once a coordinator has admitted it and it holds the group's sending
// key, or fails with ErrJoin when ctx ends first.
func Start(ctx context.Context, cfg Config) (*Group, error) {
	g, err := start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := g.join(ctx, true); err != nil {
		_ = g.Close()
		return nil, err
	}
	return g, nil
}

func start(ctx context.Context, cfg Config) (*Group, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kctx, cancel := context.WithTimeout(ctx, keyFetchLimit)
	keys, err := cfg.VerificationKeys(kctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVerificationKeys, err)
	}
	if cfg.hooks == nil || !cfg.hooks.skipSelfCheck {
		if err := checkOwnCredential(&cfg, keys); err != nil {
			return nil, err
		}
	}
	hpkePriv, err := hpke.NewDHKEMPrivateKey(cfg.SealKey)
	if err != nil {
		return nil, fmt.Errorf("%w: seal key: %w", ErrConfig, err)
	}

	mlLog := newMemberlistLogger(log)
	tr := cfg.Transport
	ownTransport := tr == nil
	if ownTransport {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{cfg.BindAddr}, BindPort: cfg.BindPort, Logger: mlLog})
		if err != nil {
			return nil, fmt.Errorf("%w: transport: %w", ErrConfig, err)
		}
		if cfg.AdvertiseAddr != "" && cfg.AdvertisePort == 0 {
			cfg.AdvertisePort = nt.GetAutoBindPort()
		}
		tr = nt
	}
	fail := func(err error) (*Group, error) {
		if ownTransport {
			_ = tr.Shutdown()
		}
		return nil, err
	}
	ip, port, err := tr.FinalAdvertiseAddr(cfg.AdvertiseAddr, cfg.AdvertisePort)
	if err != nil {
		return fail(fmt.Errorf("%w: advertise address: %w", ErrConfig, err))
	}
	selfAddr := nodeAddr(ip, uint16(port))
	if !selfAddr.IsValid() || port <= 0 || port > 65535 {
		return fail(fmt.Errorf("%w: advertise address %v:%d", ErrConfig, ip, port))
	}
	meta := encodeMeta(cfg.VON, cfg.Member, selfAddr, cfg.Incarnation, cfg.Credential, cfg.SignKey)
	if len(meta) > memberlist.MetaMaxSize {
		return fail(fmt.Errorf("%w: %d bytes > %d", ErrMetaTooLarge, len(meta), memberlist.MetaMaxSize))
	}

	gctx, gcancel := context.WithCancel(context.Background())
	g := &Group{
		cfg: cfg, log: log, self: ref{cfg.Member, cfg.Incarnation}, selfAddr: selfAddr,
		hpkePriv: hpkePriv,
		view:     map[string]*peer{}, byAddr: map[netip.AddrPort]string{}, verified: map[string]*peerInfo{},
		vkeys: keys, vkFetched: time.Now(), retryAddrs: map[string]struct{}{},
		refreshCh: make(chan struct{}, 1),
		inbox:     make(chan inbound, inboxSize), kick: make(chan struct{}, 1),
		outq: make(chan outbound, outqSize), keyReady: make(chan struct{}),
		events: make(chan Event, eventBuffer), ctx: gctx, cancel: gcancel,
	}
	g.meta.Store(&meta)
	g.rk.init()
	// This member's own entry is taken from its config, not verified: Start checked
	// the credential already (or a test skipped that on purpose).
	g.verified[cfg.Member] = &peerInfo{
		Member: Member{Name: cfg.Member, Addr: selfAddr, Incarnation: cfg.Incarnation,
			SignKey: cfg.SignKey.Public().(ed25519.PublicKey), SealKey: cfg.SealKey.PublicKey().Bytes()},
		meta: string(meta), sealPK: hpkePriv.PublicKey(),
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Member
	mc.Transport = tr
	mc.Label = cfg.VON
	mc.AdvertiseAddr = selfAddr.Addr().String()
	mc.AdvertisePort = int(selfAddr.Port())
	mc.SecretKey = cfg.GossipKey
	mc.DeadNodeReclaimTime = 10 * time.Second
	cfg.Tuning.apply(mc)
	d := delegate{g}
	mc.Delegate, mc.Events, mc.Alive, mc.Merge, mc.Ping = d, d, d, d, d
	mc.Logger = mlLog
	ml, err := memberlist.Create(mc)
	if err != nil {
		gcancel()
		return fail(fmt.Errorf("%w: memberlist: %w", ErrConfig, err))
	}
	g.ml = ml

	g.wg.Add(3 + senders)
	go g.loop()
	go g.refresher()
	go g.rejoiner()
	for range senders {
		go g.sender()
	}
	g.poke()
	return g, nil
}

// join joins the seeds. With wait it retries (each Join is a push/pull that gives
// the seeds another chance to admit this member) until this member holds a sending
// key or ctx ends.
func (g *Group) join(ctx context.Context, wait bool) error {
	var seeds []string
	for _, s := range g.cfg.Seeds {
		if ap, err := netip.ParseAddrPort(s); err == nil && ap == g.selfAddr {
			continue
		}
		seeds = append(seeds, s)
	}
	if len(seeds) == 0 {
		g.mu.Lock()
		g.rk.admitted = true
		g.mu.Unlock()
		g.poke()
	} else if _, err := g.ml.Join(seeds); err != nil && !wait {
		return fmt.Errorf("%w: %w", ErrJoin, err)
	}
	if !wait {
		return nil
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-g.keyReady:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrJoin, ctx.Err())
		case <-t.C:
			if len(seeds) > 0 {
				_, _ = g.ml.Join(seeds)
			}
		}
	}
}

// Members returns the live, verified members including this one, sorted by name.
func (g *Group) Members() []Member {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []Member
	for _, p := range g.view {
		if p.state == stateAlive {
			out = append(out, p.Member)
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// MemberAt returns the live member whose gossip (and data) address is a.
func (g *Group) MemberAt(a netip.AddrPort) (Member, bool) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	g.mu.RLock()
	defer g.mu.RUnlock()
	if p := g.view[g.byAddr[a]]; p != nil && p.state == stateAlive && p.Addr == a {
		return p.Member, true
	}
	return Member{}, false
}

// SendKey returns the epoch and key to send with now; ok is false until this member
// holds one. key must not be modified.
func (g *Group) SendKey() (epoch uint64, key []byte, ok bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if s := g.rk.send; s != nil {
		return s.id.E, s.key, true
	}
	return 0, nil, false
}

// Recipient reports whether member m (this incarnation) holds the epoch this member
// sends with now — whether a message sealed now can be opened by it. A member that
// just joined is live before the rekey that includes it has switched.
func (g *Group) Recipient(m Member) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if s := g.rk.send; s != nil {
		for _, r := range s.recips {
			if r.Name == m.Name && r.Inc == m.Incarnation {
				return true
			}
		}
	}
	return false
}

// ReceiveKeys returns the keys a received packet whose header carries epoch low16
// may be opened with: the sending epoch, epochs installed but not yet switched to,
// and previous epochs within Grace — those whose low 16 bits equal low16. Usually
// one; during a rekey race two epochs may share a number, so try each.
func (g *Group) ReceiveKeys(low16 uint16) []EpochKey {
	now := time.Now()
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []EpochKey
	for _, k := range g.rk.keys {
		if uint16(k.id.E) == low16 && g.rk.receivable(k, now) {
			out = append(out, EpochKey{Epoch: k.id.E, Key: k.key})
		}
	}
	return out
}

// Events returns membership and rekey events. The channel is buffered; when it is
// full the oldest event is dropped. It is closed by Close and Leave.
func (g *Group) Events() <-chan Event { return g.events }

func (g *Group) emit(e Event) {
	g.evMu.Lock()
	defer g.evMu.Unlock()
	if g.evClosed {
		return
	}
	for {
		select {
		case g.events <- e:
			return
		default:
		}
		select {
		case <-g.events:
		default:
		}
	}
}

// Leave tells the other members this one leaves — a signed bye straight to each,
// which they confirm — then broadcasts memberlist's leave and shuts down. The
// others rekey without it as soon as they see the bye. Waiting for the
// confirmations (at most byeWait) makes them report EventLeave, not EventFail:
// memberlist's own leave message does not tell them apart (v0.7.0) and is handled
// last-in-first-out with the bye, so it could overtake it.
func (g *Group) Leave(ctx context.Context) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.rk.leaving = true
	g.rk.byeAcks = map[string]bool{}
	var to []*memberlist.Node
	for _, p := range g.view {
		if p.state == stateAlive && p.Name != g.self.Name {
			to = append(to, mlNode(p.Member))
		}
	}
	g.mu.Unlock()
	bye := (&message{Type: msgBye, VON: g.cfg.VON, From: g.self}).encode(g.cfg.SignKey)
	wait := time.NewTimer(byeWait)
	defer wait.Stop()
	resend := time.NewTicker(byeWait / 4)
	defer resend.Stop()
	for done, send := false, true; !done; {
		g.mu.RLock()
		var missing []*memberlist.Node
		for _, n := range to {
			if !g.rk.byeAcks[n.Name] {
				missing = append(missing, n)
			}
		}
		g.mu.RUnlock()
		if len(missing) == 0 {
			break
		}
		if send {
			for _, n := range missing {
				_ = g.ml.SendBestEffort(n, bye)
			}
		}
		send = false
		select {
		case <-g.rk.byeAcked:
		case <-resend.C:
			send = true
		case <-wait.C:
			done = true
		case <-ctx.Done():
			done = true
		}
	}
	timeout := time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	var lerr error
	if timeout <= 0 {
		lerr = fmt.Errorf("%w: %w", ErrLeave, context.DeadlineExceeded)
	} else if err := g.ml.Leave(timeout); err != nil {
		lerr = fmt.Errorf("%w: %w", ErrLeave, err)
	}
	return errors.Join(lerr, g.Close())
}

// Close shuts the member down without a leave: the others detect it as failed.
func (g *Group) Close() error {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		if err := g.ml.Shutdown(); err != nil {
			g.closeErr = fmt.Errorf("%w: memberlist shutdown: %w", ErrClosed, err)
		}
		g.cancel()
		g.wg.Wait()
		g.evMu.Lock()
		g.evClosed = true
		close(g.events)
		g.evMu.Unlock()
	})
	return g.closeErr
}

// UpdateCredential replaces this member's credential (a fresh one from the manager,
// e.g. after the lease was renewed past the old expiry) and advertises the new node
// meta, so members that join later still admit this one. The credential must be for
// the same member and keys.
func (g *Group) UpdateCredential(ctx context.Context, cred *vonv1.MemberCredential) error {
	meta := encodeMeta(g.cfg.VON, g.cfg.Member, g.selfAddr, g.cfg.Incarnation, cred, g.cfg.SignKey)
	if len(meta) > memberlist.MetaMaxSize {
		return fmt.Errorf("%w: %d bytes > %d", ErrMetaTooLarge, len(meta), memberlist.MetaMaxSize)
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	if self := g.verified[g.cfg.Member]; self != nil {
		cp := *self // copy on write: admit reads peerInfo outside the lock
		cp.meta = string(meta)
		g.verified[g.cfg.Member] = &cp
	}
	g.mu.Unlock()
	g.meta.Store(&meta)
	timeout := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := g.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("group: advertise the new credential: %w", err)
	}
	return nil
}

func mlNode(m Member) *memberlist.Node {
	return &memberlist.Node{Name: m.Name, Addr: net.IP(m.Addr.Addr().AsSlice()), Port: m.Addr.Port()}
}

// checkOwnCredential verifies this member's credential and that it names this
// member and its keys, so a misconfigured member fails at Start, not at every peer.
func checkOwnCredential(cfg *Config, keys []*vonv1.VerificationKey) error {
	cl, err := credential.Verify(cfg.Credential, keys, cfg.ONID, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCredential, err)
	}
	switch {
	case cl.GetMember() != cfg.Member:
		return fmt.Errorf("%w: issued to %q, not %q", ErrCredential, cl.GetMember(), cfg.Member)
	case !bytes.Equal(cl.GetPublicKey(), cfg.SignKey.Public().(ed25519.PublicKey)):
		return fmt.Errorf("%w: SignKey does not match claims.public_key", ErrCredential)
	case !bytes.Equal(cl.GetSealPublicKey(), cfg.SealKey.PublicKey().Bytes()):
		return fmt.Errorf("%w: SealKey does not match claims.seal_public_key", ErrCredential)
	}
	return nil
}
