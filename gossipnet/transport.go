package gossipnet

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Conduit sends control datagrams for the transport. WriteTo may deliver a datagram
// zero, one or two times (two paths), and datagrams may be reordered. WriteTo must
// not retain b after it returns and must be safe for concurrent use.
type Conduit interface {
	WriteTo(b []byte, to netip.AddrPort) error
	LocalAddr() netip.AddrPort
}

// Config configures a Transport. Zero fields take the defaults named below.
type Config struct {
	// Conduit carries the datagrams. Required.
	Conduit Conduit
	// Logger receives debug messages about dropped input. Nil: discard.
	Logger *slog.Logger
	// MaxDatagram is the largest datagram WriteTo may be given (default 1200 bytes
	// of payload; the SDK adds the 16 ON header bytes). At least 64.
	MaxDatagram int

	// InitialRTO is the retransmission timeout before a stream has an RTT sample
	// (default 50ms). It should exceed the round-trip time of the ON.
	InitialRTO time.Duration
	// MinRTO is the lower bound of the computed RTO (default 20ms).
	MinRTO time.Duration
	// MaxRTO is the upper bound of the RTO after backoff (default 2s).
	MaxRTO time.Duration
	// Window is the number of segments a stream may have unacknowledged and the
	// most it advertises to its peer (default 32, at most 4096).
	Window int
	// RecvBuffer bounds the bytes a stream buffers for its reader (default
	// Window segments). At least one segment.
	RecvBuffer int
	// IdleTimeout resets a stream on which nothing was received for this long,
	// including a closed stream waiting for its peer (default 30s).
	IdleTimeout time.Duration
	// MaxStreams bounds the open streams, dialed and accepted (default 128); a
	// SYN beyond it is reset.
	MaxStreams int
	// AcceptQueue is the capacity of StreamCh (default 32); a SYN that finds it
	// full is dropped (the dialer retries until its timeout).
	AcceptQueue int
	// PacketQueue is the capacity of PacketCh (default 256); packets that find it
	// full are dropped.
	PacketQueue int
	// MaxSources bounds the sources whose packet sequence window is kept
	// (default 1024).
	MaxSources int
	// Tick is the granularity of retransmission timers (default 5ms).
	Tick time.Duration
}

// Errors returned by the transport and its streams.
var (
	// ErrShutdown is returned after Shutdown.
	ErrShutdown = errors.New("gossipnet: transport shut down")
	// ErrReset is returned by a stream the peer reset.
	ErrReset = errors.New("gossipnet: stream reset by peer")
	// ErrRefused is returned by a dial the peer answered with a reset.
	ErrRefused = errors.New("gossipnet: stream refused by peer")
	// ErrIdle is returned by a stream reset after IdleTimeout without input.
	ErrIdle = errors.New("gossipnet: stream idle timeout")
	// ErrTooManyStreams is returned by a dial when MaxStreams are open.
	ErrTooManyStreams = errors.New("gossipnet: too many open streams")
	// ErrPacketTooLarge is returned by WriteTo for a packet needing more than 64 fragments.
	ErrPacketTooLarge = errors.New("gossipnet: packet too large")
)

// Stats are counters of a Transport since New.
type Stats struct {
	PacketsSent       uint64 // memberlist packets given to WriteTo
	PacketsDelivered  uint64 // packets put on PacketCh
	PacketDuplicates  uint64 // packet datagrams dropped as duplicates
	PacketsDropped    uint64 // packets lost to a full PacketCh or reassembly limits
	Malformed         uint64 // datagrams that failed to parse
	StreamsDialed     uint64 // successful dials
	StreamsAccepted   uint64 // streams put on StreamCh
	StreamsRefused    uint64 // SYNs reset or dropped for lack of room
	StreamsOpen       int    // streams currently held
	Retransmits       uint64 // stream frames sent again
	DatagramsSent     uint64 // datagrams given to the conduit
	DatagramsReceived uint64 // datagrams given to Deliver
}

type counters struct {
	packetsSent, packetsDelivered, packetDuplicates, packetsDropped atomic.Uint64
	malformed, dialed, accepted, refused, retransmits               atomic.Uint64
	datagramsSent, datagramsReceived                                atomic.Uint64
}

// closedInfo remembers a stream that ended, so late frames of it are handled.
type closedInfo struct {
	clean   bool   // both FINs exchanged
	rcvNxt  uint32 // what to acknowledge to a late FIN
	expires time.Time
}

// Transport is a memberlist.NodeAwareTransport over a Conduit.
type Transport struct {
	cfg        Config
	conduit    Conduit
	log        *slog.Logger
	local      netip.AddrPort
	segPayload int
	instance   uint64
	pktSeq     atomic.Uint64
	stats      counters

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	pin      packetIn

	mu       sync.Mutex
	closed   bool
	streams  map[streamKey]*stream
	recent   map[streamKey]closedInfo
	snapshot []*stream // reused by tick

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

func (c *Config) setDefaults() error {
	if c.Conduit == nil {
		return errors.New("gossipnet: Config.Conduit is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(i *int, v int) {
		if *i <= 0 {
			*i = v
		}
	}
	defInt(&c.MaxDatagram, 1200)
	def(&c.InitialRTO, 50*time.Millisecond)
	def(&c.MinRTO, 20*time.Millisecond)
	def(&c.MaxRTO, 2*time.Second)
	defInt(&c.Window, 32)
	defInt(&c.RecvBuffer, c.Window*(c.MaxDatagram-streamHeaderLen))
	def(&c.IdleTimeout, 30*time.Second)
	defInt(&c.MaxStreams, 128)
	defInt(&c.AcceptQueue, 32)
	defInt(&c.PacketQueue, 256)
	defInt(&c.MaxSources, 1024)
	def(&c.Tick, 5*time.Millisecond)
	switch {
	case c.MaxDatagram < 64 || c.MaxDatagram > 65507:
		return fmt.Errorf("gossipnet: MaxDatagram %d out of range [64, 65507]", c.MaxDatagram)
	case c.Window > 4096:
		return fmt.Errorf("gossipnet: Window %d exceeds 4096", c.Window)
	case c.RecvBuffer < c.MaxDatagram-streamHeaderLen:
		return fmt.Errorf("gossipnet: RecvBuffer %d smaller than one segment", c.RecvBuffer)
	case c.MinRTO > c.MaxRTO || c.InitialRTO > c.MaxRTO:
		return errors.New("gossipnet: MinRTO and InitialRTO must not exceed MaxRTO")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// New returns a Transport sending on cfg.Conduit. The caller must arrange for
// every control datagram received on the conduit's socket to be passed to
// Deliver, and must call Shutdown (memberlist does) to stop it.
func New(cfg Config) (*Transport, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	local := unmap(cfg.Conduit.LocalAddr())
	if !local.IsValid() || local.Port() == 0 {
		return nil, fmt.Errorf("gossipnet: conduit local address %v is not usable", local)
	}
	t := &Transport{
		cfg:        cfg,
		conduit:    cfg.Conduit,
		log:        cfg.Logger,
		local:      local,
		segPayload: cfg.MaxDatagram - streamHeaderLen,
		instance:   randUint64(),
		packetCh:   make(chan *memberlist.Packet, cfg.PacketQueue),
		streamCh:   make(chan net.Conn, cfg.AcceptQueue),
		streams:    make(map[streamKey]*stream),
		recent:     make(map[streamKey]closedInfo),
		kick:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	t.pin.init(cfg.MaxSources)
	t.wg.Add(1)
	go t.run()
	return t, nil
}

func randUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return binary.BigEndian.Uint64(b[:])
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func udpAddr(a netip.AddrPort) *net.UDPAddr {
	return net.UDPAddrFromAddrPort(a)
}

func parseAddr(s string) (netip.AddrPort, error) {
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("gossipnet: address %q: %w", s, err)
	}
	a = unmap(a)
	if a.Port() == 0 || a.Addr().IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("gossipnet: address %q is not a peer address", s)
	}
	return a, nil
}

// PacketPayload is the largest memberlist packet sent in a single datagram;
// set memberlist.Config.UDPBufferSize to it to avoid fragmentation.
func (t *Transport) PacketPayload() int { return t.cfg.MaxDatagram - packetHeaderLen }

// FinalAdvertiseAddr returns ip and port when ip is given, else the conduit's
// local address (which must then be a specific address, not 0.0.0.0).
func (t *Transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, 0, fmt.Errorf("gossipnet: advertise address %q: %w", ip, err)
		}
		return net.IP(a.Unmap().AsSlice()), port, nil
	}
	if t.local.Addr().IsUnspecified() {
		return nil, 0, fmt.Errorf("gossipnet: conduit bound to %v; set an advertise address", t.local)
	}
	return net.IP(t.local.Addr().AsSlice()), int(t.local.Port()), nil
}

// LocalAddr is the conduit's local address.
func (t *Transport) LocalAddr() netip.AddrPort { return t.local }

// WriteTo sends a packet to addr ("ip:port"). See WriteToAddress.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a packet to a.Addr, in fragments when it exceeds
// PacketPayload, and returns the time it was handed to the conduit.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.isClosed() {
		return time.Time{}, ErrShutdown
	}
	to, err := parseAddr(a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	if len(b) == 0 {
		return time.Time{}, errors.New("gossipnet: empty packet")
	}
	per := t.PacketPayload()
	n := (len(b) + per - 1) / per
	if n > maxFragments {
		return time.Time{}, fmt.Errorf("%w: %d bytes", ErrPacketTooLarge, len(b))
	}
	h := packetHeader{instance: t.instance, seq: t.pktSeq.Add(1), nfrag: uint8(n)}
	buf := make([]byte, 0, packetHeaderLen+min(len(b), per))
	for i := range n {
		h.frag = uint8(i)
		chunk := b[i*per : min(len(b), (i+1)*per)]
		buf = append(appendPacketHeader(buf[:0], h), chunk...)
		if err = t.send(buf, to); err != nil {
			break
		}
	}
	t.stats.packetsSent.Add(1)
	return time.Now(), err
}

func (t *Transport) send(b []byte, to netip.AddrPort) error {
	t.stats.datagramsSent.Add(1)
	err := t.conduit.WriteTo(b, to)
	if err != nil {
		t.log.Debug("gossipnet: conduit write failed", "to", to, "err", err)
	}
	return err
}

// sendFrame encodes and sends one stream frame.
func (t *Transport) sendFrame(to netip.AddrPort, f *frame) {
	buf := appendFrame(make([]byte, 0, streamHeaderLen+len(f.payload)), f)
	_ = t.send(buf, to)
}

// PacketCh delivers received packets. It is never closed.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh delivers accepted streams. It is never closed.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// DialTimeout opens a stream to addr ("ip:port"). See DialAddressTimeout.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream to a.Addr. It fails with an error wrapping
// os.ErrDeadlineExceeded if the peer does not answer within timeout, and with
// ErrRefused if the peer resets the stream.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	to, err := parseAddr(a.Addr)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	s := newStream(t, streamKey{peer: to, id: randUint64()}, true)
	t.mu.Lock()
	switch {
	case t.closed:
		err = ErrShutdown
	case len(t.streams) >= t.cfg.MaxStreams:
		err = ErrTooManyStreams
	case t.streams[s.key] != nil:
		err = errors.New("gossipnet: stream id collision")
	default:
		t.streams[s.key] = s
	}
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	t.kickLoop()
	if err := s.dial(deadline); err != nil {
		return nil, fmt.Errorf("gossipnet: dial %s: %w", a.Addr, err)
	}
	t.stats.dialed.Add(1)
	return s, nil
}

// Deliver hands the transport one control datagram (the payload after the ON
// header) received from `from`. It does not retain b and does not block beyond
// brief locking; it ignores malformed input and input after Shutdown.
func (t *Transport) Deliver(b []byte, from netip.AddrPort) {
	now := time.Now()
	t.stats.datagramsReceived.Add(1)
	from = unmap(from)
	if t.isClosed() {
		return
	}
	if len(b) == 0 || !from.IsValid() || from.Port() == 0 {
		t.stats.malformed.Add(1)
		return
	}
	if b[0] == typePacket {
		t.handlePacket(b, from, now)
		return
	}
	f, ok := parseFrame(b)
	if !ok {
		t.stats.malformed.Add(1)
		t.log.Debug("gossipnet: malformed datagram", "from", from, "len", len(b))
		return
	}
	t.handleFrame(&f, from, now)
}

// handleFrame dispatches a stream frame to its stream, accepts a SYN, or
// answers a frame of an unknown stream.
func (t *Transport) handleFrame(f *frame, from netip.AddrPort, now time.Time) {
	key := streamKey{peer: from, id: f.id}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	if s := t.streams[key]; s != nil {
		t.mu.Unlock()
		s.handle(f, now)
		return
	}
	ci, recent := t.recent[key]
	if recent && now.After(ci.expires) {
		delete(t.recent, key)
		recent = false
	}
	if f.typ == typeSYN && !recent {
		t.acceptLocked(key, f) // unlocks
		return
	}
	t.mu.Unlock()
	switch {
	case f.typ == typeRST || f.typ == typeACK || f.typ == typeSYN:
		// Never answer these for a stream we do not hold.
	case recent && ci.clean:
		if f.typ == typeFIN || f.flags&flagRetx != 0 {
			t.sendFrame(from, &frame{typ: typeACK, id: f.id, ack: ci.rcvNxt})
		}
	default:
		t.sendFrame(from, &frame{typ: typeRST, id: f.id})
	}
}

// acceptLocked creates a stream for a SYN and queues it on StreamCh. With
// MaxStreams open it resets the SYN; with StreamCh full it drops it (the dialer
// retransmits its SYN). Called with t.mu held; releases it.
func (t *Transport) acceptLocked(key streamKey, f *frame) {
	if len(t.streams) >= t.cfg.MaxStreams {
		t.mu.Unlock()
		t.stats.refused.Add(1)
		t.sendFrame(key.peer, &frame{typ: typeRST, id: key.id})
		return
	}
	s := newStream(t, key, false)
	s.peerWnd = uint32(f.wnd)
	select {
	case t.streamCh <- s:
		t.streams[key] = s
	default:
		t.mu.Unlock()
		t.stats.refused.Add(1)
		t.log.Debug("gossipnet: accept queue full, dropping SYN", "from", key.peer)
		return
	}
	t.mu.Unlock()
	t.stats.accepted.Add(1)
	t.kickLoop()
	s.mu.Lock()
	s.sendSynAckLocked()
	s.mu.Unlock()
}

// forget removes a stream from the table and remembers how it ended.
func (t *Transport) forget(s *stream, ci closedInfo) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.streams[s.key] == s {
		delete(t.streams, s.key)
	}
	if t.closed {
		return
	}
	if len(t.recent) >= 4*t.cfg.MaxStreams {
		now := time.Now()
		for k, v := range t.recent {
			if now.After(v.expires) {
				delete(t.recent, k)
			}
		}
		for k := range t.recent {
			if len(t.recent) < 4*t.cfg.MaxStreams {
				break
			}
			delete(t.recent, k)
		}
	}
	t.recent[s.key] = ci
}

func (t *Transport) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

func (t *Transport) kickLoop() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// run drives the stream timers while any stream is open.
func (t *Transport) run() {
	defer t.wg.Done()
	tk := time.NewTicker(t.cfg.Tick)
	defer tk.Stop()
	for {
		t.mu.Lock()
		idle := len(t.streams) == 0
		t.mu.Unlock()
		if idle {
			select {
			case <-t.done:
				return
			case <-t.kick:
			}
		}
		select {
		case <-t.done:
			return
		case now := <-tk.C:
			t.tick(now)
		}
	}
}

func (t *Transport) tick(now time.Time) {
	t.mu.Lock()
	t.snapshot = t.snapshot[:0]
	for _, s := range t.streams {
		t.snapshot = append(t.snapshot, s)
	}
	list := t.snapshot
	t.mu.Unlock()
	for i, s := range list {
		s.onTick(now)
		list[i] = nil
	}
}

// Shutdown stops the transport: its goroutine exits, every stream is reset
// (blocked calls return ErrShutdown), and Deliver, WriteTo and dials stop working.
// It is safe to call more than once.
func (t *Transport) Shutdown() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	streams := make([]*stream, 0, len(t.streams))
	for _, s := range t.streams {
		streams = append(streams, s)
	}
	clear(t.streams)
	clear(t.recent)
	t.mu.Unlock()
	t.wg.Wait()
	for _, s := range streams {
		s.mu.Lock()
		s.abortLocked(ErrShutdown, true)
		s.mu.Unlock()
	}
	t.pin.reset()
	return nil
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	open := len(t.streams)
	t.mu.Unlock()
	c := &t.stats
	return Stats{
		PacketsSent:       c.packetsSent.Load(),
		PacketsDelivered:  c.packetsDelivered.Load(),
		PacketDuplicates:  c.packetDuplicates.Load(),
		PacketsDropped:    c.packetsDropped.Load(),
		Malformed:         c.malformed.Load(),
		StreamsDialed:     c.dialed.Load(),
		StreamsAccepted:   c.accepted.Load(),
		StreamsRefused:    c.refused.Load(),
		StreamsOpen:       open,
		Retransmits:       c.retransmits.Load(),
		DatagramsSent:     c.datagramsSent.Load(),
		DatagramsReceived: c.datagramsReceived.Load(),
	}
}
