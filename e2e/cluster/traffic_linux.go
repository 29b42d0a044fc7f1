//go:build linux

package cluster

import (
	"context"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/vonproject/von/e2e/testbed"
	"github.com/vonproject/von/wire"
)

// ONPort and ONTOS are the wire format's defaults (docs/wire.md).
const (
	ONPort = wire.DefaultPort
	ONTOS  = wire.DefaultDSCP << 2
)

// ONFlow is paced ON traffic from one member to another: every packet carries the ON
// header with a sequence number; Copies 2 sends each packet once per path index.
type ONFlow struct {
	From, To string
	ONID     uint32
	Rate     uint64 // IP-level bit/s of each copy
	Size     int    // UDP payload bytes (≥ 16)
	Duration time.Duration
	Copies   int // 1 or 2
	// FirstPath is the path index of the first copy (copies use FirstPath, FirstPath+1).
	FirstPath uint8
}

// SendON sends f and returns what each copy's sender put on the wire.
func SendON(ctx context.Context, tb *testbed.Testbed, f ONFlow) ([]testbed.SendStats, error) {
	if f.Copies == 0 {
		f.Copies = 1
	}
	if f.Size < wire.HeaderLen {
		f.Size = 1000
	}
	type res struct {
		i  int
		st testbed.SendStats
		er error
	}
	ch := make(chan res, f.Copies)
	for path := range f.Copies {
		go func() {
			st, err := tb.Send(ctx, f.From, testbed.Flow{
				Src: tb.Addr(f.From), Dst: netip.AddrPortFrom(tb.Addr(f.To), ONPort), Rate: f.Rate, Size: f.Size,
				Duration: f.Duration, TOS: ONTOS,
				Fill: func(seq uint64, buf []byte) {
					h, _ := wire.Encode(wire.Header{ONID: f.ONID, PathIndex: f.FirstPath + uint8(path), Seq: seq})
					copy(buf, h)
				},
			})
			ch <- res{path, st, err}
		}()
	}
	out := make([]testbed.SendStats, f.Copies)
	var firstErr error
	for range f.Copies {
		r := <-ch
		out[r.i] = r.st
		if r.er != nil && firstErr == nil {
			firstErr = r.er
		}
	}
	return out, firstErr
}

// ONKey is the sink key of an ON packet: ON id and path index.
func ONKey(payload []byte) uint64 {
	h, _, err := wire.Parse(payload)
	if err != nil {
		return 0
	}
	return uint64(h.ONID)<<8 | uint64(h.PathIndex)
}

// Key is the sink key of (ON id, path index).
func Key(onID uint32, path uint8) uint64 { return uint64(onID)<<8 | uint64(path) }

// SeqKey keys by sequence number (to count distinct packets across copies).
func SeqKey(payload []byte) uint64 {
	if len(payload) < 16 {
		return 0
	}
	return binary.BigEndian.Uint64(payload[8:16])
}

// FloodPort is where Flood sends (nobody listens unless a test does).
const FloodPort = 9100

// Flood sends best-effort UDP from one node to another's FloodPort at rate bit/s for
// d (1000-byte datagrams) in the background — a stranger filling every unreserved
// byte. wait returns when it is done or ctx ended.
func Flood(ctx context.Context, tb *testbed.Testbed, from, to string, rate uint64, d time.Duration) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = tb.Send(ctx, from, testbed.Flow{Dst: netip.AddrPortFrom(tb.Addr(to), FloodPort), Rate: rate, Size: 1000, Duration: d})
	}()
	return func() { <-done }
}
