package sdk

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vonproject/von/credential"
	"github.com/vonproject/von/gossipnet"
	"github.com/vonproject/von/group"
	vonv1 "github.com/vonproject/von/proto/von/v1"

	"google.golang.org/protobuf/proto"
)

// Member is a live, verified member of the VON.
type Member = group.Member

// Event is a membership change (join, leave, fail) or a rekey.
type Event = group.Event

// Message is one received message.
type Message struct {
	From  string // sending member
	Data  []byte
	Epoch uint64 // group key epoch it was sealed under
	Path  uint8  // path index of the copy that was delivered (the first to arrive)
	Seq   uint64 // the sender's sequence number
	// Received is when the delivered copy was read from the socket.
	Received time.Time
}

// Stats are counters of one VON handle since Join.
type Stats struct {
	Sent       uint64    // messages sent (a Broadcast to n members counts n)
	Delivered  uint64    // messages handed to Recv's queue
	Duplicates uint64    // copies dropped because the other copy arrived first
	PerPath    [2]uint64 // data copies that arrived on each path (delivered or duplicate)
	Rejected   uint64    // data packets that did not open (forged, replayed, unknown epoch)
	Strangers  uint64    // data packets from an address that is no live member
	Malformed  uint64    // datagrams that are not ON packets of this ON
	Overflow   uint64    // messages dropped because nobody called Recv
	SendErrors uint64    // datagrams the socket refused (e.g. no route)
	Trains     uint64    // sends of several equal-size datagrams as one (UDP segmentation offload)
}

type stats struct {
	sent, delivered, duplicates, rejected, strangers, malformed, overflow, sendErrors, trains atomic.Uint64
	perPath                                                                                   [2]atomic.Uint64
}

// VON is a member's handle on a joined VON. Its methods are safe for concurrent use.
type VON struct {
	cfg       Config
	log       *slog.Logger
	mgr       *managerClient
	res       *vonv1.Reservation
	onID      uint32
	redundant bool
	sock      *socket
	tr        *gossipnet.Transport
	grp       atomic.Pointer[group.Group]
	inc       uint64

	seq    atomic.Uint64 // data sequence numbers, from 1
	ctlSeq atomic.Uint64 // control datagram sequence numbers
	tx     txState
	rx     rxState
	addrs  addrCache
	outq   chan packet
	ctlq   chan packet // gossip, served first
	wstop  chan struct{}

	registry atomic.Pointer[map[netip.AddrPort]bool] // gossip addresses of credentialed members
	regKick  chan struct{}
	inbox    chan Message
	st       stats

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	wwg       sync.WaitGroup // the writer
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	leaseErr  atomic.Pointer[error]
}

// Join joins the VON of the reservation cfg.ON as cfg.Member and returns once this
// member holds the group key. Errors say what is wrong: ErrNoSuchON, ErrNotCommitted,
// ErrNotMember, ErrCredential, ErrManager, ErrConfig.
func Join(ctx context.Context, cfg Config) (*VON, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.JoinTimeout)
		defer cancel()
	}
	mgr, err := dialManager(cfg.Manager, cfg.TLS)
	if err != nil {
		return nil, err
	}
	v, err := join(ctx, cfg, mgr)
	if err != nil {
		mgr.close()
		return nil, err
	}
	return v, nil
}

func join(ctx context.Context, cfg Config, mgr *managerClient) (_ *VON, err error) {
	r, me, err := mgr.reservation(ctx, cfg.ON, cfg.Member)
	if err != nil {
		return nil, err
	}
	bind, err := bindAddr(cfg, me)
	if err != nil {
		return nil, err
	}
	sock, err := openSocket(cfg.Netns, bind, cfg.DSCP)
	if err != nil {
		return nil, err
	}
	v := &VON{cfg: cfg, log: cfg.Logger, mgr: mgr, res: r, onID: r.GetOnId(), redundant: r.GetRedundant(), sock: sock,
		inbox: make(chan Message, cfg.RecvBuffer), closed: make(chan struct{}), outq: make(chan packet, outQueue), ctlq: make(chan packet, ctlQueue), wstop: make(chan struct{}), regKick: make(chan struct{}, 1)}
	v.rx.peers = map[peerKey]*peerState{}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			v.shutdown(nil)
		}
	}()
	local := sock.local
	if local.Addr().IsUnspecified() {
		a, perr := netip.ParseAddr(me.GetAddress())
		if perr != nil {
			return nil, fmt.Errorf("%w: member %s has no usable address %q", ErrConfig, cfg.Member, me.GetAddress())
		}
		local = netip.AddrPortFrom(a, local.Port())
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	sealKey, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var incb [8]byte
	for v.inc == 0 {
		_, _ = rand.Read(incb[:])
		v.inc = binary.BigEndian.Uint64(incb[:])
	}
	cred, err := mgr.rs.IssueMemberCredential(ctx, &vonv1.IssueMemberCredentialRequest{Name: cfg.ON, Member: cfg.Member,
		PublicKey: pub, SealPublicKey: sealKey.PublicKey().Bytes(), GossipAddress: local.String()})
	if err != nil {
		return nil, managerError("credential for "+cfg.Member, err)
	}
	var onKey func(group.EpochKey)
	if cfg.KeyLog != nil {
		// The group calls OnKey under its lock: lines go through a queue to a writer
		// goroutine, so a slow KeyLog never stalls the group (a full queue drops).
		lines := make(chan string, 256)
		lines <- fmt.Sprintf("VON_MEMBER %d %s %016x\n", v.onID, cfg.Member, v.inc)
		onKey = func(k group.EpochKey) {
			select {
			case lines <- fmt.Sprintf("VON_EPOCH %d %d %x\n", v.onID, k.Epoch, k.Key):
			default:
			}
		}
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			for {
				select {
				case l := <-lines:
					_, _ = io.WriteString(cfg.KeyLog, l)
				case <-v.ctx.Done():
					for {
						select {
						case l := <-lines:
							_, _ = io.WriteString(cfg.KeyLog, l)
						default:
							return
						}
					}
				}
			}
		}()
	}
	gossipKey, err := credential.OpenGossipKey(cred.GetSealedGossipKey(), sealKey, cfg.ON, v.onID, cfg.Member)
	if err != nil {
		return nil, fmt.Errorf("%w: the gossip key from the manager: %w", ErrCredential, err)
	}
	reg, err := mgr.rs.ListMembers(ctx, &vonv1.ListMembersRequest{Name: cfg.ON})
	if err != nil {
		return nil, managerError("members of "+cfg.ON, err)
	}
	v.setRegistry(reg.GetMembers())
	v.wg.Add(1)
	go v.registryLoop()
	var seeds []string
	for _, m := range reg.GetMembers() {
		if m.GetName() != cfg.Member && m.GetGossipAddress() != "" {
			seeds = append(seeds, m.GetGossipAddress())
		}
	}
	v.tr, err = gossipnet.New(gossipnet.Config{Conduit: (*conduit)(v), Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("%w: gossip transport: %w", ErrConfig, err)
	}
	v.wg.Add(1)
	go v.recvLoop()
	v.wwg.Add(1)
	go v.writeLoop(v.wstop)
	g, err := group.Start(ctx, group.Config{
		VON: fmt.Sprintf("%s/%d", cfg.ON, v.onID), ONID: v.onID, Member: cfg.Member, Incarnation: v.inc,
		SignKey: priv, SealKey: sealKey, Credential: cred.GetCredential(),
		VerificationKeys: func(ctx context.Context) ([]*vonv1.VerificationKey, error) {
			resp, err := mgr.rs.GetVerificationKeys(ctx, &vonv1.GetVerificationKeysRequest{})
			if err != nil {
				return nil, managerError("verification keys", err)
			}
			return resp.GetKeys(), nil
		},
		Transport: v.tr, AdvertiseAddr: local.Addr().String(), AdvertisePort: int(local.Port()), Seeds: seeds, GossipKey: gossipKey,
		RekeyInterval: cfg.RekeyInterval, Grace: cfg.Grace, Tuning: cfg.Tuning, Logger: cfg.Logger, OnKey: onKey,
	})
	if err != nil {
		_ = v.tr.Shutdown()
		if errors.Is(err, group.ErrCredential) {
			return nil, fmt.Errorf("%w: %w", ErrCredential, err)
		}
		if errors.Is(err, group.ErrJoin) {
			return nil, fmt.Errorf("%w: %w", ErrJoin, err)
		}
		return nil, fmt.Errorf("join the group of %s: %w", cfg.ON, err)
	}
	v.grp.Store(g)
	v.wg.Add(1)
	go v.refreshCredential(cred.GetCredential(), &vonv1.IssueMemberCredentialRequest{Name: cfg.ON, Member: cfg.Member,
		PublicKey: pub, SealPublicKey: sealKey.PublicKey().Bytes(), GossipAddress: local.String()})
	if every := keepAliveEvery(cfg.KeepAlive, r); every > 0 {
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			mgr.keepAlive(v.ctx, cfg.ON, every, v.log, func(err error) {
				v.leaseErr.Store(&err)
				v.log.Error("the ON's lease is gone", "on", cfg.ON, "err", err)
			})
		}()
	}
	v.log.Info("joined", "on", cfg.ON, "on_id", v.onID, "member", cfg.Member, "addr", local, "redundant", v.redundant)
	return v, nil
}

// refreshCredential asks the manager for a fresh credential when half of the current
// one's life has passed (measured from when it arrived here, so a skewed manager clock
// does not matter; the lease was renewed meanwhile, so the new one reaches further)
// and advertises it, so members that join later still admit this one. Failures back
// off up to a minute; it stops once the lease is gone.
func (v *VON) refreshCredential(cur *vonv1.MemberCredential, req *vonv1.IssueMemberCredentialRequest) {
	defer v.wg.Done()
	got := time.Now()
	backoff := time.Duration(0)
	for {
		wait := backoff
		if wait == 0 {
			wait = time.Minute
			cl := &vonv1.MemberCredentialClaims{}
			if err := proto.Unmarshal(cur.GetClaims(), cl); err == nil {
				life := cl.GetExpireTime().AsTime().Sub(cl.GetIssueTime().AsTime())
				wait = max(time.Until(got.Add(life/2)), time.Second)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-v.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if v.LeaseErr() != nil {
			return
		}
		ctx, cancel := context.WithTimeout(v.ctx, 10*time.Second)
		resp, err := v.mgr.rs.IssueMemberCredential(ctx, req)
		if err == nil {
			err = v.grp.Load().UpdateCredential(ctx, resp.GetCredential())
		}
		cancel()
		if err != nil {
			if v.ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, time.Second), time.Minute)
			v.log.Warn("refresh the member credential; retrying", "in", backoff, "err", managerError("credential", err))
			continue
		}
		cur, got, backoff = resp.GetCredential(), time.Now(), 0
	}
}

func bindAddr(cfg Config, me *vonv1.Member) (netip.AddrPort, error) {
	if cfg.ListenAddr != "" {
		a, err := netip.ParseAddrPort(cfg.ListenAddr)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%w: ListenAddr %q: %w", ErrConfig, cfg.ListenAddr, err)
		}
		return a, nil
	}
	a, err := netip.ParseAddr(me.GetAddress())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: member %s has no address in the topology", ErrConfig, me.GetName())
	}
	return netip.AddrPortFrom(a, uint16(cfg.Port)), nil
}

func keepAliveEvery(d time.Duration, r *vonv1.Reservation) time.Duration {
	if d < 0 {
		return 0
	}
	if d > 0 {
		return d
	}
	d = r.GetTtl().AsDuration() / 3
	return min(max(d, time.Second), time.Minute)
}

// ONID is the ON's flow id.
func (v *VON) ONID() uint32 { return v.onID }

// Redundant says whether every message travels twice.
func (v *VON) Redundant() bool { return v.redundant }

// LocalAddr is this member's ON socket address (data and gossip).
func (v *VON) LocalAddr() netip.AddrPort { return v.sock.local }

// Overlay is an ON's overlay addressing (package overlay): the prefix the manager
// gave the ON and each member's address in it, for programs that carry IP over the
// VON (vonlink).
type Overlay struct {
	Prefix  netip.Prefix
	Members map[string]netip.Addr // member name → overlay address
}

// Overlay returns the ON's overlay prefix and member addresses, as the manager
// assigned them at reservation (they are stable for the ON's life). ErrNoOverlay
// if the reservation carries none (a manager older than overlay addressing).
func (v *VON) Overlay() (Overlay, error) {
	return overlayOf(v.res)
}

func overlayOf(r *vonv1.Reservation) (Overlay, error) {
	p, err := netip.ParsePrefix(r.GetOverlayPrefix())
	if err != nil {
		return Overlay{}, fmt.Errorf("%w: ON %s has overlay prefix %q", ErrNoOverlay, r.GetName(), r.GetOverlayPrefix())
	}
	o := Overlay{Prefix: p, Members: map[string]netip.Addr{}}
	for _, m := range r.GetMembers() {
		a, err := netip.ParseAddr(m.GetOverlayAddress())
		if err != nil || !p.Contains(a) {
			return Overlay{}, fmt.Errorf("%w: member %s of ON %s has overlay address %q outside %s", ErrNoOverlay, m.GetName(), r.GetName(), m.GetOverlayAddress(), p)
		}
		o.Members[m.GetName()] = a
	}
	return o, nil
}

// Members returns the live, verified members, this one included, by name.
func (v *VON) Members() []Member { return v.grp.Load().Members() }

// Events returns membership and rekey events (closed by Close).
func (v *VON) Events() <-chan Event { return v.grp.Load().Events() }

// Epoch is the epoch messages are sealed under now.
func (v *VON) Epoch() uint64 {
	e, _, _ := v.grp.Load().SendKey()
	return e
}

// Stats returns the handle's counters.
func (v *VON) Stats() Stats {
	s := Stats{Sent: v.st.sent.Load(), Delivered: v.st.delivered.Load(), Duplicates: v.st.duplicates.Load(),
		Rejected: v.st.rejected.Load(), Strangers: v.st.strangers.Load(), Malformed: v.st.malformed.Load(),
		Overflow: v.st.overflow.Load(), SendErrors: v.st.sendErrors.Load(), Trains: v.st.trains.Load()}
	s.PerPath[0], s.PerPath[1] = v.st.perPath[0].Load(), v.st.perPath[1].Load()
	return s
}

// LeaseErr is non-nil once the manager said the ON's lease can no longer be renewed.
func (v *VON) LeaseErr() error {
	if p := v.leaseErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Recv returns the next message, exactly once per message whichever copy came first.
func (v *VON) Recv(ctx context.Context) (Message, error) {
	select {
	case m := <-v.inbox:
		return m, nil
	default:
	}
	select {
	case m := <-v.inbox:
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	case <-v.closed:
		return Message{}, ErrClosed
	}
}

// Close leaves the group gracefully (the others rekey without this member at once),
// stops renewing the lease and closes the socket.
func (v *VON) Close() error {
	v.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		v.closeErr = v.shutdown(ctx)
	})
	return v.closeErr
}

// shutdown stops everything; ctx nil means no graceful leave.
func (v *VON) shutdown(ctx context.Context) error {
	var err error
	if g := v.grp.Load(); g != nil {
		if ctx != nil {
			// What was sent goes out before the goodbye: the writer serves gossip
			// first, and members drop data from a member that has left.
			v.drainQueued(ctx, 500*time.Millisecond)
			err = g.Leave(ctx)
		} else {
			err = g.Close()
		}
		if errors.Is(err, group.ErrClosed) {
			err = nil
		}
	}
	if v.tr != nil {
		_ = v.tr.Shutdown()
	}
	v.cancel()
	select {
	case <-v.closed:
	default:
		close(v.closed)
	}
	close(v.wstop) // the writer sends what is queued (the goodbye) and stops
	v.wwg.Wait()
	_ = v.sock.close()
	v.wg.Wait()
	v.mgr.close()
	return err
}

// drainQueued waits (at most d) until the writer has sent every queued data packet.
func (v *VON) drainQueued(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for len(v.outq) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond) // the batch the writer holds
}
