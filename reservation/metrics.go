package reservation

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Metrics are the manager's Prometheus series.
type Metrics struct {
	TwoPC      *prometheus.HistogramVec // seconds per 2PC round, by outcome
	Rejections *prometheus.CounterVec   // refused reservations, by reason
	AgentCalls *prometheus.CounterVec   // agent RPCs, by method and result
	Conflicts  *prometheus.CounterVec   // ledger transactions retried after losing a race, by operation
	Release    *prometheus.HistogramVec // seconds per release round, by outcome
	Expiries   prometheus.Counter       // reservations ended because their lease ran out
}

// NewMetrics registers the manager's series on reg. What is computed at scrape
// time from the manager's state (reservations by state, degraded ONs, agents,
// leadership) is Manager.StateCollector's.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		TwoPC: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "von", Subsystem: "manager", Name: "twopc_seconds",
			Help:    "Duration of two-phase commit rounds (prepare, decision, commit/abort), by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"outcome"}),
		Rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "von", Subsystem: "manager", Name: "admission_rejections_total",
			Help: "Reservations refused, by reason (capacity, unplaceable, agent_down, refused, invalid, exists).",
		}, []string{"reason"}),
		AgentCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "von", Subsystem: "manager", Name: "agent_calls_total",
			Help: "RPCs to agents, by method and result.",
		}, []string{"method", "result"}),
		Conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "von", Subsystem: "manager", Name: "ledger_conflicts_total",
			Help: "Guarded ledger transactions (admission, release) that lost to a concurrent one on the same link and were retried, by operation.",
		}, []string{"op"}),
		Release: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "von", Subsystem: "manager", Name: "release_seconds",
			Help: "Duration of release rounds (every router told, then the final state recorded and capacity freed), by outcome: " +
				"ok, unacked (some router did not ack; its partition lease runs out), error (the final state was not recorded).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17),
		}, []string{"outcome"}),
		Expiries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "von", Subsystem: "manager", Name: "lease_expiries_total",
			Help: "Reservations ended (state expired) because their holder's lease ran out without a renewal.",
		}),
	}
	reg.MustRegister(m.TwoPC, m.Rejections, m.AgentCalls, m.Conflicts, m.Release, m.Expiries)
	return m
}

// The series StateCollector reports.
var (
	reservationsDesc = prometheus.NewDesc("von_manager_reservations", "Reservations by state.", []string{"state"}, nil)
	degradedDesc     = prometheus.NewDesc("von_manager_reservations_degraded",
		"Committed reservations recorded degraded (a path crosses a link that is down or a router without a live agent), by whether they are redundant.",
		[]string{"redundant"}, nil)
	agentsDesc = prometheus.NewDesc("von_manager_agents",
		"Registered agents by liveness as this manager sees them (live: registered within --agent-liveness).", []string{"state"}, nil)
	leaderDesc = prometheus.NewDesc("von_manager_leader", "1 while this manager leads, else 0.", nil, nil)
)

// StateCollector reports at scrape time: reservations by state and the
// committed ones recorded degraded (the leader counts them in its index, any
// other manager lists etcd: the records are the same), registered agents by
// liveness as this manager judges it (the leader on its own clock, see
// liveness.go; any other manager by the time in each record), and whether this
// manager leads. Describe works on a nil Manager.
func (m *Manager) StateCollector() prometheus.Collector { return stateCollector{m} }

type stateCollector struct{ m *Manager }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{reservationsDesc, degradedDesc, agentsDesc, leaderDesc} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	if states, degraded, err := c.m.reservationCounts(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(reservationsDesc, err)
		ch <- prometheus.NewInvalidMetric(degradedDesc, err)
	} else {
		for s, n := range states {
			gauge(reservationsDesc, n, s)
		}
		for _, r := range []bool{false, true} {
			gauge(degradedDesc, degraded[r], strconv.FormatBool(r))
		}
	}
	if agents, err := c.m.agentRecords(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(agentsDesc, err)
	} else {
		live := 0
		for _, a := range agents {
			if c.m.live(a) {
				live++
			}
		}
		gauge(agentsDesc, live, "live")
		gauge(agentsDesc, len(agents)-live, "down")
	}
	leader := 0
	if c.m.Epoch() != 0 {
		leader = 1
	}
	gauge(leaderDesc, leader)
}

// reservationCounts counts reservations by state (every state, zeros too) and
// the committed ones recorded degraded, by whether they are redundant: from the
// leader's index, or listed from the store.
func (m *Manager) reservationCounts(ctx context.Context) (map[string]int, map[bool]int, error) {
	states, degraded := map[string]int{}, map[bool]int{}
	for _, st := range []vonv1.ReservationState{vonv1.ReservationState_RESERVATION_STATE_PREPARING,
		vonv1.ReservationState_RESERVATION_STATE_COMMITTED, vonv1.ReservationState_RESERVATION_STATE_RELEASING,
		vonv1.ReservationState_RESERVATION_STATE_RELEASED, vonv1.ReservationState_RESERVATION_STATE_EXPIRED,
		vonv1.ReservationState_RESERVATION_STATE_FAILED} {
		states[stateName(st)] = 0
	}
	if x := m.index(); x != nil {
		for st, n := range x.stateCounts() {
			states[stateName(st)] = n
		}
		if x.degradedCount() > 0 { // only then are records parsed
			for _, r := range x.committed(func(_ string, _ []string, d bool) bool { return d }) {
				degraded[r.GetRedundant()]++
			}
		}
		return states, degraded, nil
	}
	ons, _, err := m.store.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range ons {
		states[stateName(r.GetState())]++
		if r.GetState() == vonv1.ReservationState_RESERVATION_STATE_COMMITTED && r.GetDegraded() != "" {
			degraded[r.GetRedundant()]++
		}
	}
	return states, degraded, nil
}

func (m *Metrics) conflict(op string) {
	if m != nil {
		m.Conflicts.WithLabelValues(op).Inc()
	}
}

func (m *Metrics) rejected(reason string) {
	if m != nil {
		m.Rejections.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) call(method string, err error) {
	if m == nil {
		return
	}
	r := "ok"
	if err != nil {
		r = "error"
	}
	m.AgentCalls.WithLabelValues(method, r).Inc()
}

func (m *Metrics) round(outcome string, seconds float64) {
	if m != nil {
		m.TwoPC.WithLabelValues(outcome).Observe(seconds)
	}
}

// releaseDone records a release round begun at start: whether every router
// acked, and err, the recording of the final state's. A round that recorded
// final EXPIRED is a lease expiry.
func (m *Metrics) releaseDone(start time.Time, acked bool, final vonv1.ReservationState, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	switch {
	case err != nil:
		outcome = "error"
	case !acked:
		outcome = "unacked"
	}
	m.Release.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	if err == nil && final == vonv1.ReservationState_RESERVATION_STATE_EXPIRED {
		m.Expiries.Inc()
	}
}
