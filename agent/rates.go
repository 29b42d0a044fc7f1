package agent

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/vonproject/von/partition"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// rateMeter turns the data plane's byte counters into what each ON carried
// between two registrations, for the manager's dashboard. It is used by the
// register loop alone.
type rateMeter struct {
	prev map[rateKey]uint64 // bytes by class at the previous sample
	at   time.Time
}

type rateKey struct {
	iface string
	on    uint32
}

// sample reads the counters and returns, for each ON that sent anything
// since the previous sample, the bit/s through its busiest class on this
// router, by ON id. The first sample only sets the baseline. A class whose
// counter went back (it was re-created) counts from the new baseline.
func (m *rateMeter) sample(obs partition.Observed, now time.Time) []*vonv1.OnRate {
	cur := make(map[rateKey]uint64, len(m.prev))
	for ifn, st := range obs.Interfaces {
		for id, c := range st.ONs {
			cur[rateKey{ifn, id}] = c.Bytes
		}
	}
	prev, dt := m.prev, now.Sub(m.at).Seconds()
	m.prev, m.at = cur, now
	if prev == nil || dt <= 0 {
		return nil
	}
	busiest := map[uint32]uint64{}
	for k, b := range cur {
		p, ok := prev[k]
		if !ok || b <= p {
			continue
		}
		if bps := uint64(float64(b-p) * 8 / dt); bps > busiest[k.on] {
			busiest[k.on] = bps
		}
	}
	out := make([]*vonv1.OnRate, 0, len(busiest))
	for id, bps := range busiest {
		out = append(out, &vonv1.OnRate{OnId: id, RateBps: bps})
	}
	slices.SortFunc(out, func(a, b *vonv1.OnRate) int { return cmp.Compare(a.GetOnId(), b.GetOnId()) })
	return out
}

// measure samples the data plane's counters; a failed read reports nothing.
func (a *Agent) measure(ctx context.Context, m *rateMeter) []*vonv1.OnRate {
	cctx, cancel := context.WithTimeout(ctx, a.cfg.RegisterTimeout)
	defer cancel()
	obs, err := a.dp.observe(cctx)
	if err != nil {
		a.log.Debug("reading the ON counters for the manager failed", "err", err)
		return nil
	}
	return m.sample(obs, time.Now())
}
