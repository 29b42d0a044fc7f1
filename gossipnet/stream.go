package gossipnet

import (
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// streamKey names a stream: the peer's address and the dialer's random id.
type streamKey struct {
	peer netip.AddrPort
	id   uint64
}

// sendSeg is a segment in the send queue, from sndUna to sndNxt.
type sendSeg struct {
	seq     uint32
	data    []byte
	fin     bool
	sent    time.Time // last transmission; zero: not yet sent
	retries int       // transmissions after the first
	sacked  bool      // selectively acknowledged
	oow     bool      // last sent outside the peer's window (probe)
}

// recvSeg is an out-of-order segment waiting for the gap before it.
type recvSeg struct {
	data []byte
	fin  bool
}

// stream is one reliable, ordered, flow-controlled byte stream; it is the
// net.Conn returned by dials and put on StreamCh.
type stream struct {
	t      *Transport
	key    streamKey
	dialer bool

	mu          sync.Mutex
	wake        chan struct{} // closed and replaced on every state change
	established bool
	err         error // terminal error; the stream is out of the table
	localClosed bool
	removed     bool
	lastRecv    time.Time

	synAttempts int
	synSent     time.Time
	synNext     time.Time

	sndUna, sndNxt uint32
	sndq           []*sendSeg // sndq[i].seq == sndUna+i
	peerAck        uint32
	peerWnd        uint32
	finAcked       bool

	srtt, rttvar, rto time.Duration
	hasRTT            bool
	rackSent          time.Time // latest transmission time of an acknowledged segment

	rcvNxt     uint32
	ooo        map[uint32]recvSeg
	rbuf       []byte
	rcvFin     bool // the peer's FIN was reached in order
	lastAdvWnd uint16

	readDeadline, writeDeadline time.Time
}

var _ net.Conn = (*stream)(nil)

func newStream(t *Transport, key streamKey, dialer bool) *stream {
	return &stream{
		t:           t,
		key:         key,
		dialer:      dialer,
		wake:        make(chan struct{}),
		established: !dialer,
		lastRecv:    time.Now(),
		rto:         t.cfg.InitialRTO,
		ooo:         make(map[uint32]recvSeg),
	}
}

func (s *stream) wakeLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// waitLocked releases s.mu until the next state change or the deadline.
func (s *stream) waitLocked(deadline time.Time) {
	ch := s.wake
	s.mu.Unlock()
	defer s.mu.Lock()
	if deadline.IsZero() {
		<-ch
		return
	}
	d := time.Until(deadline)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ch:
	case <-tm.C:
	}
}

func expired(deadline time.Time) bool {
	return !deadline.IsZero() && !time.Now().Before(deadline)
}

// backoff is the retransmission timeout after n retransmissions.
func (s *stream) backoff(n int) time.Duration {
	d := s.rto << min(n, 16)
	if d <= 0 || d > s.t.cfg.MaxRTO {
		return s.t.cfg.MaxRTO
	}
	return d
}

func (s *stream) rttSampleLocked(r time.Duration) {
	if !s.hasRTT {
		s.srtt, s.rttvar, s.hasRTT = r, r/2, true
	} else {
		d := s.srtt - r
		if d < 0 {
			d = -d
		}
		s.rttvar = (3*s.rttvar + d) / 4
		s.srtt = (7*s.srtt + r) / 8
	}
	s.rto = min(max(s.srtt+max(4*s.rttvar, s.t.cfg.Tick), s.t.cfg.MinRTO), s.t.cfg.MaxRTO)
}

// advWndLocked is the receive window to advertise, in segments.
func (s *stream) advWndLocked() uint16 {
	w := s.t.cfg.Window
	if !s.localClosed {
		w = min(w, max(0, s.t.cfg.RecvBuffer-len(s.rbuf))/s.t.segPayload)
	}
	return uint16(min(w, 0xffff))
}

func (s *stream) sackLocked() uint32 {
	var m uint32
	if len(s.ooo) == 0 {
		return 0
	}
	for i := range uint32(32) {
		if _, ok := s.ooo[s.rcvNxt+1+i]; ok {
			m |= 1 << i
		}
	}
	return m
}

// sendLocked sends a frame of this stream carrying the current ack state.
func (s *stream) sendLocked(f *frame) {
	f.id = s.key.id
	if f.typ != typeSYN && f.typ != typeRST {
		f.ack, f.wnd, f.sack = s.rcvNxt, s.advWndLocked(), s.sackLocked()
		s.lastAdvWnd = f.wnd
	}
	s.t.sendFrame(s.key.peer, f)
}

func (s *stream) sendAckLocked()    { s.sendLocked(&frame{typ: typeACK}) }
func (s *stream) sendSynAckLocked() { s.sendLocked(&frame{typ: typeSYNACK}) }

func (s *stream) sendSynLocked(now time.Time) {
	var flags byte
	if s.synAttempts > 0 {
		flags = flagRetx
		s.t.stats.retransmits.Add(1)
	}
	s.synAttempts++
	s.synSent = now
	s.synNext = now.Add(s.backoff(s.synAttempts - 1))
	s.sendLocked(&frame{typ: typeSYN, flags: flags, wnd: s.advWndLocked()})
}

func (s *stream) transmitLocked(seg *sendSeg, now time.Time, retx bool) {
	f := frame{typ: typeData, seq: seg.seq, payload: seg.data}
	if seg.fin {
		f.typ = typeFIN
	}
	if retx {
		f.flags = flagRetx
		seg.retries++
		s.t.stats.retransmits.Add(1)
	}
	seg.sent = now
	s.sendLocked(&f)
}

// pumpLocked sends the queued segments the peer's window admits (a FIN needs
// no window), and resends probes that the window now admits.
func (s *stream) pumpLocked(now time.Time) {
	if !s.established || s.err != nil {
		return
	}
	limit := s.peerAck + s.peerWnd
	for _, seg := range s.sndq {
		if !seg.sent.IsZero() && !seg.oow {
			continue
		}
		if !seg.fin && !seqLT(seg.seq, limit) {
			break
		}
		retx := seg.oow
		seg.oow = false
		s.transmitLocked(seg, now, retx)
	}
}

// dial sends SYN and waits until the stream is established, reset, or the
// deadline passes.
func (s *stream) dial(deadline time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sendSynLocked(time.Now())
	for {
		switch {
		case s.established && s.err == nil:
			return nil
		case s.err != nil:
			return s.err
		case expired(deadline):
			s.abortLocked(os.ErrDeadlineExceeded, true)
			return os.ErrDeadlineExceeded
		}
		s.waitLocked(deadline)
	}
}

// handle processes one frame of this stream.
func (s *stream) handle(f *frame, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return
	}
	s.lastRecv = now
	switch f.typ {
	case typeRST:
		if s.established {
			s.abortLocked(ErrReset, false)
		} else {
			s.abortLocked(ErrRefused, false)
		}
		return
	case typeSYN:
		if !s.dialer && f.flags&flagRetx != 0 {
			s.sendSynAckLocked()
		}
		return
	}
	if !s.dialer && f.typ == typeSYNACK {
		return
	}
	if !s.established {
		s.established = true
		if f.typ == typeSYNACK && s.synAttempts == 1 {
			s.rttSampleLocked(now.Sub(s.synSent))
		}
		s.peerAck, s.peerWnd = f.ack, uint32(f.wnd)
		s.wakeLocked()
	}
	s.onAckLocked(f, now)
	if f.typ == typeData || f.typ == typeFIN {
		s.onSegmentLocked(f)
	}
	s.pumpLocked(now)
	s.checkDoneLocked()
}

// onAckLocked applies the ack, window and sack fields of a frame.
func (s *stream) onAckLocked(f *frame, now time.Time) {
	ack := f.ack
	if seqGT(ack, s.sndNxt) {
		return // acknowledges what was never sent
	}
	// RTT: the most recent first acknowledgment of a segment sent only once
	// (Karn); older ones were held up behind a hole.
	var sample time.Duration
	newlyAcked := func(seg *sendSeg) {
		if seg.sacked || seg.sent.IsZero() {
			return
		}
		if seg.sent.After(s.rackSent) {
			s.rackSent = seg.sent
		}
		if seg.retries == 0 {
			if d := now.Sub(seg.sent); sample == 0 || d < sample {
				sample = max(d, time.Microsecond)
			}
		}
	}
	if seqGT(ack, s.sndUna) {
		n := int(ack - s.sndUna)
		for _, seg := range s.sndq[:n] {
			newlyAcked(seg)
			if seg.fin {
				s.finAcked = true
			}
		}
		clear(s.sndq[:n])
		s.sndq = s.sndq[n:]
		if len(s.sndq) == 0 {
			s.sndq = nil
		}
		s.sndUna = ack
		s.wakeLocked()
	}
	if !seqLT(ack, s.peerAck) {
		s.peerAck, s.peerWnd = ack, uint32(f.wnd)
	}
	for i := range 32 {
		if f.sack&(1<<i) == 0 {
			continue
		}
		if idx := ack + 1 + uint32(i) - s.sndUna; idx < uint32(len(s.sndq)) && !s.sndq[idx].sacked {
			newlyAcked(s.sndq[idx])
			s.sndq[idx].sacked = true
		}
	}
	if sample > 0 {
		s.rttSampleLocked(sample)
	}
	s.fastRetxLocked(now)
}

// fastRetxLocked retransmits each unacknowledged segment that was sent before
// a segment that has since been acknowledged, once a reordering allowance has
// passed (RACK, RFC 8985, simplified). A lost retransmission is detected the
// same way once a segment sent after it is acknowledged.
func (s *stream) fastRetxLocked(now time.Time) {
	if s.rackSent.IsZero() {
		return
	}
	wait := s.srtt + max(s.srtt/4, s.t.cfg.Tick)
	for _, seg := range s.sndq {
		if !seg.sacked && !seg.sent.IsZero() && seg.sent.Before(s.rackSent) && now.Sub(seg.sent) >= wait {
			s.transmitLocked(seg, now, true)
		}
	}
}

// onSegmentLocked takes a DATA or FIN segment into the receive state.
func (s *stream) onSegmentLocked(f *frame) {
	off := f.seq - s.rcvNxt
	retx := f.flags&flagRetx != 0
	switch {
	case int32(off) < 0 || s.rcvFin:
		if retx {
			s.sendAckLocked() // our ACK was lost
		}
		return
	case f.typ == typeData && off >= uint32(s.advWndLocked()):
		s.sendAckLocked() // outside the window: tell the sender where it is
		return
	case f.typ == typeFIN && off > uint32(s.t.cfg.Window):
		return
	}
	if off > 0 {
		if _, ok := s.ooo[f.seq]; ok {
			if retx {
				s.sendAckLocked()
			}
			return
		}
		r := recvSeg{fin: f.typ == typeFIN}
		if !s.localClosed {
			r.data = append([]byte(nil), f.payload...)
		}
		s.ooo[f.seq] = r
		s.sendAckLocked()
		return
	}
	s.deliverLocked(f.payload, f.typ == typeFIN)
	for !s.rcvFin {
		r, ok := s.ooo[s.rcvNxt]
		if !ok {
			break
		}
		delete(s.ooo, s.rcvNxt)
		s.deliverLocked(r.data, r.fin)
	}
	if s.rcvFin {
		clear(s.ooo)
	}
	s.sendAckLocked()
	s.wakeLocked()
}

func (s *stream) deliverLocked(data []byte, fin bool) {
	s.rcvNxt++
	if fin {
		s.rcvFin = true
		return
	}
	if !s.localClosed {
		s.rbuf = append(s.rbuf, data...)
	}
}

// onTick runs the stream's timers.
func (s *stream) onTick(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return
	}
	if now.Sub(s.lastRecv) > s.t.cfg.IdleTimeout {
		s.abortLocked(ErrIdle, true)
		return
	}
	if !s.established {
		if !now.Before(s.synNext) {
			s.sendSynLocked(now)
		}
		return
	}
	s.pumpLocked(now)
	s.fastRetxLocked(now)
	inFlight := false
	var blocked *sendSeg
	for _, seg := range s.sndq {
		switch {
		case seg.sacked:
		case seg.sent.IsZero():
			if blocked == nil {
				blocked = seg
			}
		default:
			inFlight = true
			if now.Sub(seg.sent) >= s.backoff(seg.retries) {
				s.transmitLocked(seg, now, true)
			}
		}
	}
	if !inFlight && blocked != nil {
		// Zero window: probe with the next segment; its retransmissions back off.
		blocked.oow = true
		s.transmitLocked(blocked, now, true)
	}
}

// checkDoneLocked retires a stream that both sides have finished cleanly.
func (s *stream) checkDoneLocked() {
	if !s.removed && s.localClosed && s.finAcked && s.rcvFin {
		s.removeLocked(true)
	}
}

func (s *stream) removeLocked(clean bool) {
	s.removed = true
	s.sndq, s.ooo = nil, nil
	s.t.forget(s, closedInfo{clean: clean, rcvNxt: s.rcvNxt, expires: time.Now().Add(s.t.cfg.IdleTimeout)})
	s.wakeLocked()
}

// abortLocked ends the stream with err, optionally telling the peer.
func (s *stream) abortLocked(err error, rst bool) {
	if s.removed {
		return
	}
	s.err = err
	if rst {
		s.sendLocked(&frame{typ: typeRST})
	}
	s.removeLocked(false)
}

// Read reads data in order; it returns io.EOF after the peer closed and all
// its data was read.
func (s *stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		switch {
		case s.localClosed:
			return 0, net.ErrClosed
		case len(s.rbuf) > 0:
			if len(p) == 0 {
				return 0, nil
			}
			n := copy(p, s.rbuf)
			s.rbuf = s.rbuf[n:]
			if len(s.rbuf) == 0 {
				s.rbuf = nil
			}
			s.windowUpdateLocked()
			return n, nil
		case s.rcvFin:
			return 0, io.EOF
		case s.err != nil:
			return 0, s.err
		case len(p) == 0:
			return 0, nil
		case expired(s.readDeadline):
			return 0, os.ErrDeadlineExceeded
		}
		s.waitLocked(s.readDeadline)
	}
}

// windowUpdateLocked tells the peer when reading opened the window noticeably.
func (s *stream) windowUpdateLocked() {
	if s.removed {
		return
	}
	w := s.advWndLocked()
	if w > s.lastAdvWnd && (s.lastAdvWnd == 0 || int(w-s.lastAdvWnd) >= max(1, s.t.cfg.Window/4)) {
		s.sendAckLocked()
	}
}

// Write queues b for reliable delivery, blocking while the send window is full.
func (s *stream) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for len(b) > 0 {
		switch {
		case s.localClosed:
			return n, net.ErrClosed
		case s.err != nil:
			return n, s.err
		case expired(s.writeDeadline):
			return n, os.ErrDeadlineExceeded
		}
		if k := len(s.sndq); k > 0 {
			// Top up a segment that is still waiting for the window.
			if last := s.sndq[k-1]; last.sent.IsZero() && !last.fin && len(last.data) < s.t.segPayload {
				m := min(len(b), s.t.segPayload-len(last.data))
				last.data = append(last.data, b[:m]...)
				b, n = b[m:], n+m
				continue
			}
		}
		if len(s.sndq) < s.t.cfg.Window {
			m := min(len(b), s.t.segPayload)
			s.sndq = append(s.sndq, &sendSeg{seq: s.sndNxt, data: append(make([]byte, 0, m), b[:m]...)})
			s.sndNxt++
			b, n = b[m:], n+m
			continue
		}
		s.pumpLocked(time.Now())
		s.waitLocked(s.writeDeadline)
	}
	s.pumpLocked(time.Now())
	return n, nil
}

// Close sends FIN after the queued data and returns at once; delivery of the
// queued data continues in the background. Unread input is discarded.
func (s *stream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.localClosed {
		return net.ErrClosed
	}
	s.localClosed = true
	s.rbuf = nil
	for k, r := range s.ooo {
		s.ooo[k] = recvSeg{fin: r.fin}
	}
	if !s.removed {
		s.sndq = append(s.sndq, &sendSeg{seq: s.sndNxt, fin: true})
		s.sndNxt++
		s.pumpLocked(time.Now())
		s.checkDoneLocked()
	}
	s.wakeLocked()
	return nil
}

// LocalAddr is the transport's conduit address.
func (s *stream) LocalAddr() net.Addr { return udpAddr(s.t.local) }

// RemoteAddr is the peer's address.
func (s *stream) RemoteAddr() net.Addr { return udpAddr(s.key.peer) }

// SetDeadline sets the read and write deadlines.
func (s *stream) SetDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readDeadline, s.writeDeadline = t, t
	s.wakeLocked()
	return nil
}

// SetReadDeadline sets the read deadline.
func (s *stream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readDeadline = t
	s.wakeLocked()
	return nil
}

// SetWriteDeadline sets the write deadline.
func (s *stream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeDeadline = t
	s.wakeLocked()
	return nil
}
