package gossipnet

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

const (
	// filterWindow is the span of packet sequence numbers remembered per source.
	filterWindow = 1024
	// maxPartials bounds the packets being reassembled at once.
	maxPartials = 32
	// maxPartialBytes bounds the bytes held for reassembly.
	maxPartialBytes = 512 << 10
	// partialTTL is how long an incomplete packet waits for its fragments.
	partialTTL = 2 * time.Second
)

// seqFilter remembers which packet sequence numbers of one source (one sender
// instance) were already seen, within a sliding window below the highest.
type seqFilter struct {
	src      netip.AddrPort
	instance uint64
	max      uint64
	bits     [filterWindow / 64]uint64
}

func (f *seqFilter) bit(seq uint64) (int, uint64) {
	i := seq % filterWindow
	return int(i / 64), 1 << (i % 64)
}

// seen reports whether seq was marked, or is too old to tell (treated as seen).
func (f *seqFilter) seen(seq uint64) bool {
	if seq > f.max {
		return false
	}
	if f.max-seq >= filterWindow {
		return true
	}
	w, m := f.bit(seq)
	return f.bits[w]&m != 0
}

func (f *seqFilter) mark(seq uint64) {
	if seq > f.max {
		if seq-f.max >= filterWindow {
			clear(f.bits[:])
		} else {
			for s := f.max + 1; s < seq; s++ {
				w, m := f.bit(s)
				f.bits[w] &^= m
			}
		}
		f.max = seq
	} else if f.max-seq >= filterWindow {
		return
	}
	w, m := f.bit(seq)
	f.bits[w] |= m
}

func (f *seqFilter) resetTo(instance uint64) {
	f.instance = instance
	f.max = 0
	clear(f.bits[:])
}

type partialKey struct {
	src      netip.AddrPort
	instance uint64
	seq      uint64
}

// partial is a packet whose fragments are still arriving.
type partial struct {
	frags   [][]byte
	have    int
	size    int
	expires time.Time
}

// packetIn holds the receive-side packet state: per-source duplicate filters
// (least recently used first out) and reassembly.
type packetIn struct {
	mu           sync.Mutex
	maxSources   int
	sources      map[netip.AddrPort]*list.Element // of *seqFilter
	lru          list.List                        // front: most recently used
	partials     map[partialKey]*partial
	partialBytes int
}

func (p *packetIn) init(maxSources int) {
	p.maxSources = maxSources
	p.sources = make(map[netip.AddrPort]*list.Element)
	p.partials = make(map[partialKey]*partial)
}

func (p *packetIn) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.sources)
	p.lru.Init()
	clear(p.partials)
	p.partialBytes = 0
}

// filterLocked returns the filter of src for instance, creating it and evicting
// the least recently used source when at the bound.
func (p *packetIn) filterLocked(src netip.AddrPort, instance uint64) *seqFilter {
	if e, ok := p.sources[src]; ok {
		p.lru.MoveToFront(e)
		f := e.Value.(*seqFilter)
		if f.instance != instance {
			f.resetTo(instance)
		}
		return f
	}
	var f *seqFilter
	if len(p.sources) >= p.maxSources {
		e := p.lru.Back()
		f = p.lru.Remove(e).(*seqFilter)
		delete(p.sources, f.src)
		*f = seqFilter{}
	} else {
		f = new(seqFilter)
	}
	f.src, f.instance = src, instance
	p.sources[src] = p.lru.PushFront(f)
	return f
}

// evictPartialsLocked drops expired partial packets, then the oldest ones
// until one more packet of `need` bytes fits.
func (p *packetIn) evictPartialsLocked(now time.Time, need int) (dropped int) {
	for k, v := range p.partials {
		if now.After(v.expires) {
			p.partialBytes -= v.size
			delete(p.partials, k)
			dropped++
		}
	}
	for len(p.partials) > 0 && (len(p.partials) >= maxPartials || p.partialBytes+need > maxPartialBytes) {
		var oldK partialKey
		var old *partial
		for k, v := range p.partials {
			if old == nil || v.expires.Before(old.expires) {
				oldK, old = k, v
			}
		}
		p.partialBytes -= old.size
		delete(p.partials, oldK)
		dropped++
	}
	return dropped
}

// accept runs one PACKET datagram through the filter and reassembly and returns
// the complete packet (a copy) when it is new and complete.
func (p *packetIn) accept(h packetHeader, payload []byte, src netip.AddrPort, now time.Time) (buf []byte, dup bool, dropped int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.filterLocked(src, h.instance)
	if f.seen(h.seq) {
		return nil, true, 0
	}
	if h.nfrag == 1 {
		f.mark(h.seq)
		return append([]byte(nil), payload...), false, 0
	}
	k := partialKey{src: src, instance: h.instance, seq: h.seq}
	pt := p.partials[k]
	if pt == nil {
		dropped = p.evictPartialsLocked(now, len(payload))
		pt = &partial{frags: make([][]byte, h.nfrag), expires: now.Add(partialTTL)}
		p.partials[k] = pt
	}
	if int(h.nfrag) != len(pt.frags) {
		return nil, false, dropped // inconsistent fragment: ignore
	}
	if pt.frags[h.frag] != nil {
		return nil, true, dropped
	}
	if p.partialBytes+len(payload) > maxPartialBytes {
		p.partialBytes -= pt.size
		delete(p.partials, k)
		return nil, false, dropped + 1
	}
	pt.frags[h.frag] = append([]byte(nil), payload...)
	pt.have++
	pt.size += len(payload)
	p.partialBytes += len(payload)
	if pt.have < len(pt.frags) {
		return nil, false, dropped
	}
	delete(p.partials, k)
	p.partialBytes -= pt.size
	f.mark(h.seq)
	buf = make([]byte, 0, pt.size)
	for _, fr := range pt.frags {
		buf = append(buf, fr...)
	}
	return buf, false, dropped
}

// handlePacket processes a PACKET datagram.
func (t *Transport) handlePacket(b []byte, from netip.AddrPort, now time.Time) {
	h, payload, ok := parsePacket(b)
	if !ok {
		t.stats.malformed.Add(1)
		t.log.Debug("gossipnet: malformed packet", "from", from, "len", len(b))
		return
	}
	buf, dup, dropped := t.pin.accept(h, payload, from, now)
	if dup {
		t.stats.packetDuplicates.Add(1)
	}
	if dropped > 0 {
		t.stats.packetsDropped.Add(uint64(dropped))
	}
	if buf == nil {
		return
	}
	select {
	case t.packetCh <- &memberlist.Packet{Buf: buf, From: udpAddr(from), Timestamp: now}:
		t.stats.packetsDelivered.Add(1)
	default:
		t.stats.packetsDropped.Add(1)
		t.log.Debug("gossipnet: packet queue full, dropping", "from", from)
	}
}
