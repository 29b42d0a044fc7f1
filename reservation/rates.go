package reservation

import (
	"sync"
	"time"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// measuredRates holds what agents last reported each ON carried through their
// router (Register's on_rates), in this manager's memory only: it is for the
// dashboard, not for decisions, and costs etcd nothing. A manager knows the
// rates of the agents that register with it (they follow the leader).
type measuredRates struct {
	mu     sync.Mutex
	byNode map[string]nodeRates
	asked  time.Time // when MeasuredRates was last called
}

// ratesWantedFor is how long after the last MeasuredRates call agents are
// asked to report rates: a dashboard page polls far more often, and when
// none is open the agents read no counters for the manager.
const ratesWantedFor = time.Minute

// wanted says whether registrations should ask agents for rates.
func (r *measuredRates) wanted(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.asked.IsZero() && now.Sub(r.asked) < ratesWantedFor
}

type nodeRates struct {
	at    time.Time
	rates map[uint32]uint64 // bit/s by ON id
}

func (r *measuredRates) note(node string, rates []*vonv1.OnRate, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byNode == nil {
		r.byNode = map[string]nodeRates{}
	}
	nr := nodeRates{at: now}
	if len(rates) > 0 {
		nr.rates = make(map[uint32]uint64, len(rates))
		for _, x := range rates {
			nr.rates[x.GetOnId()] = x.GetRateBps()
		}
	}
	r.byNode[node] = nr
}

// MeasuredRates is, for each ON that carried traffic, the bit/s through its
// busiest class on any router, as the agents reported it in their last
// registration with this manager; reports older than the agent liveness
// window are left out (the agent is down, or registers elsewhere). An ON
// missing from the answer carried nothing measurable. Agents measure only
// while someone asks: the first call makes them start, with their next
// registrations (so the first answers are empty), and a minute without one
// makes them stop.
func (m *Manager) MeasuredRates() map[uint32]uint64 {
	r := &m.rates
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = time.Now()
	out := map[uint32]uint64{}
	cutoff := time.Now().Add(-m.cfg.AgentLiveness)
	for node, nr := range r.byNode {
		if nr.at.Before(cutoff) {
			delete(r.byNode, node)
			continue
		}
		for id, bps := range nr.rates {
			out[id] = max(out[id], bps)
		}
	}
	return out
}
