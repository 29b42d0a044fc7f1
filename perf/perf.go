// Package perf measures a VON the way its users see it: paced test messages sent
// through the SDK, and a receiver's summary of what arrived — delivered, lost,
// duplicate copies eliminated, reordering, copies per path, latency and the key epochs
// seen. cmd/vonperf is its command line.
package perf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/vonproject/von/sdk"
)

// HeaderLen is the size of the measurement header at the start of every test message:
// magic "VPF1", run id, index, total, send time (unix ns).
const HeaderLen = 4 + 8 + 8 + 8 + 8

var magic = [4]byte{'V', 'P', 'F', '1'}

// ErrSetup: the measurement could not start (bad flags, the peer never joined).
var ErrSetup = errors.New("vonperf: setup")

// SendConfig paces Count messages of Size bytes to To at Rate messages/s.
type SendConfig struct {
	To    string
	Rate  float64 // messages per second; > 0
	Count uint64  // > 0
	Size  int     // bytes per message, HeaderLen..sdk.MaxMessage
	// WaitPeer bounds how long to wait for To to be a live member (default 20 s).
	WaitPeer time.Duration
}

// SendSummary is what Send did (vonperf send -o json).
type SendSummary struct {
	Sent      uint64   `json:"sent"`
	Errors    uint64   `json:"errors"`
	Seconds   float64  `json:"duration_s"`
	Rate      float64  `json:"rate_msgs_per_s"`
	Epochs    []uint64 `json:"epochs"`
	LastErr   string   `json:"last_error,omitempty"`
	Redundant bool     `json:"redundant"`
	// Slipped counts the times the pacer fell behind by more than maxBurst messages
	// and let its schedule slip rather than burst; SendErrors the datagrams the
	// kernel refused.
	Slipped    uint64 `json:"slipped"`
	SendErrors uint64 `json:"send_errors"`
	// Trains counts sends of several datagrams as one (UDP segmentation offload).
	Trains uint64 `json:"trains"`
}

// maxBurst is the most messages Send sends back to back to catch up.
const maxBurst = 16

// Send paces the messages. It returns once all were handed to the SDK (or ctx ended).
func Send(ctx context.Context, v *sdk.VON, c SendConfig) (SendSummary, error) {
	if c.Rate <= 0 || c.Count == 0 {
		return SendSummary{}, fmt.Errorf("%w: --rate and --count must be positive", ErrSetup)
	}
	if c.Size < HeaderLen || c.Size > sdk.MaxMessage {
		return SendSummary{}, fmt.Errorf("%w: --size %d: want %d..%d bytes", ErrSetup, c.Size, HeaderLen, sdk.MaxMessage)
	}
	if c.WaitPeer == 0 {
		c.WaitPeer = 20 * time.Second
	}
	if err := waitMember(ctx, v, c.To, c.WaitPeer); err != nil {
		return SendSummary{}, err
	}
	run := uint64(time.Now().UnixNano())
	buf := make([]byte, c.Size)
	copy(buf, magic[:])
	binary.BigEndian.PutUint64(buf[4:], run)
	binary.BigEndian.PutUint64(buf[20:], c.Count)
	sum := SendSummary{Redundant: v.Redundant()}
	epochs := map[uint64]bool{}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / c.Rate)
	var i uint64
	for i < c.Count {
		if ctx.Err() != nil {
			break
		}
		due := min(c.Count, uint64(time.Since(start)/interval)+1)
		// A sender that was held up (a descheduled process) does not catch up in one
		// burst: at most maxBurst messages go back to back, the schedule slips instead
		// (and the summary's rate shows it). A burst of thousands would overrun queues
		// the ON never promised to hold.
		if due > i+maxBurst {
			start = start.Add(time.Duration(due-i-maxBurst) * interval)
			due = i + maxBurst
			sum.Slipped++
		}
		for ; i < due; i++ {
			binary.BigEndian.PutUint64(buf[12:], i)
			binary.BigEndian.PutUint64(buf[28:], uint64(time.Now().UnixNano()))
			epochs[v.Epoch()] = true
			if err := v.Send(ctx, c.To, buf); err != nil {
				sum.Errors++
				sum.LastErr = err.Error()
				if errors.Is(err, sdk.ErrClosed) || ctx.Err() != nil {
					break
				}
				continue
			}
			sum.Sent++
		}
		if i < c.Count {
			next := start.Add(time.Duration(i) * interval)
			if d := time.Until(next); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
		}
	}
	st := v.Stats()
	sum.SendErrors, sum.Trains = st.SendErrors, st.Trains
	sum.Seconds = time.Since(start).Seconds()
	if sum.Seconds > 0 {
		sum.Rate = float64(sum.Sent) / sum.Seconds
	}
	sum.Epochs = sortedKeys(epochs)
	return sum, nil
}

func waitMember(ctx context.Context, v *sdk.VON, name string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if v.Ready(name) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s did not join the VON within %s (start vonperf recv there first)", ErrSetup, name, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RecvSummary is what a receiver counted (vonperf recv -o json).
type RecvSummary struct {
	Sent       uint64            `json:"sent"`       // messages the sender said it would send
	Delivered  uint64            `json:"delivered"`  // distinct messages received
	Lost       uint64            `json:"lost"`       // sent − delivered
	Duplicates uint64            `json:"duplicates"` // copies eliminated by the SDK
	Reordered  uint64            `json:"reordered"`  // delivered after a later message
	PerPath    map[string]uint64 `json:"per_path"`   // copies that arrived on each path
	P50        float64           `json:"latency_p50_ms"`
	P99        float64           `json:"latency_p99_ms"`
	Epochs     []uint64          `json:"epochs"`
	Seconds    float64           `json:"duration_s"`
	Complete   bool              `json:"complete"`  // every message of the run arrived
	Rejected   uint64            `json:"rejected"`  // data packets that did not open (forged, unknown epoch)
	Strangers  uint64            `json:"strangers"` // data packets from addresses that are no member
	Overflow   uint64            `json:"overflow"`  // messages the SDK dropped: Recv was not called fast enough
}

// Recv counts test messages until d passes or a run is complete, and summarises.
func Recv(ctx context.Context, v *sdk.VON, d time.Duration) (RecvSummary, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	before := v.Stats()
	start := time.Now()
	var (
		run      uint64
		total    uint64
		seen     = map[uint64]bool{}
		maxIdx   uint64
		anyIdx   bool
		lat      []float64
		epochs   = map[uint64]bool{}
		reorders uint64
	)
	for total == 0 || uint64(len(seen)) < total {
		m, err := v.Recv(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				break
			}
			return RecvSummary{}, err
		}
		if len(m.Data) < HeaderLen || [4]byte(m.Data[:4]) != magic {
			continue
		}
		r := binary.BigEndian.Uint64(m.Data[4:])
		if r != run { // a new run starts the count afresh
			if run != 0 {
				// Copies of this message are already counted; the next run's first
				// message is not in the per-path counts: close enough for a restart.
				before = v.Stats()
				start = time.Now()
			}
			run, total, seen, maxIdx, anyIdx, lat, reorders = r, binary.BigEndian.Uint64(m.Data[20:]), map[uint64]bool{}, 0, false, nil, 0
			epochs = map[uint64]bool{}
		}
		idx := binary.BigEndian.Uint64(m.Data[12:])
		if seen[idx] {
			continue
		}
		seen[idx] = true
		if anyIdx && idx < maxIdx {
			reorders++
		}
		if !anyIdx || idx > maxIdx {
			maxIdx, anyIdx = idx, true
		}
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(m.Data[28:])))
		lat = append(lat, float64(m.Received.Sub(sent))/float64(time.Millisecond))
		epochs[m.Epoch] = true
	}
	time.Sleep(50 * time.Millisecond) // let the last duplicates be counted
	after := v.Stats()
	s := RecvSummary{Sent: total, Delivered: uint64(len(seen)), Reordered: reorders,
		Duplicates: after.Duplicates - before.Duplicates, Epochs: sortedKeys(epochs), Seconds: time.Since(start).Seconds(),
		PerPath:  map[string]uint64{"0": after.PerPath[0] - before.PerPath[0], "1": after.PerPath[1] - before.PerPath[1]},
		Rejected: after.Rejected - before.Rejected, Strangers: after.Strangers - before.Strangers,
		Overflow: after.Overflow - before.Overflow}
	if total > s.Delivered {
		s.Lost = total - s.Delivered
	}
	s.Complete = total > 0 && s.Lost == 0
	s.P50, s.P99 = quantile(lat, 0.50), quantile(lat, 0.99)
	return s, nil
}

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return math.Round(s[int(q*float64(len(s)-1))]*1000) / 1000 // µs precision
}

func sortedKeys(m map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
