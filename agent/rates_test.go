package agent

import (
	"testing"
	"time"

	"github.com/vonproject/von/partition"
)

// What the agent reports each ON carried: the busiest of its classes on the
// router between two samples; nothing for the first sample, for an idle ON
// or for a class whose counter went back (re-created).
func TestRateMeter(t *testing.T) {
	obs := func(eth0, eth1 map[uint32]uint64) partition.Observed {
		o := partition.Observed{Interfaces: map[string]partition.InterfaceStats{}}
		for name, ons := range map[string]map[uint32]uint64{"eth0": eth0, "eth1": eth1} {
			st := partition.InterfaceStats{ONs: map[uint32]partition.Counters{}}
			for id, b := range ons {
				st.ONs[id] = partition.Counters{Bytes: b}
			}
			o.Interfaces[name] = st
		}
		return o
	}
	var m rateMeter
	t0 := time.Now()
	if got := m.sample(obs(map[uint32]uint64{1: 1000, 2: 5000, 3: 9000}, map[uint32]uint64{1: 0}), t0); got != nil {
		t.Fatalf("first sample: %v", got)
	}
	// Two seconds on: ON 1 sent 500 kB on eth0 and 250 kB on eth1, ON 2
	// nothing, ON 3's class was re-created (its counter went back).
	got := m.sample(obs(map[uint32]uint64{1: 501_000, 2: 5000, 3: 100}, map[uint32]uint64{1: 250_000}), t0.Add(2*time.Second))
	if len(got) != 1 || got[0].GetOnId() != 1 || got[0].GetRateBps() != 2_000_000 {
		t.Fatalf("rates: %v, want ON 1 at 2 Mbit/s (500 kB in 2 s on its busiest class)", got)
	}
	// ON 3 counts from its new baseline.
	got = m.sample(obs(map[uint32]uint64{1: 501_000, 3: 125_100}, nil), t0.Add(3*time.Second))
	if len(got) != 1 || got[0].GetOnId() != 3 || got[0].GetRateBps() != 1_000_000 {
		t.Fatalf("rates: %v, want ON 3 at 1 Mbit/s", got)
	}
}
