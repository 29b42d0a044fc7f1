package reservation

import (
	"context"
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
}

// NewMetrics registers the manager's series on reg. The reservations-by-state gauge
// is computed at scrape time from the manager's store (see Manager.StateCounts).
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
	}
	reg.MustRegister(m.TwoPC, m.Rejections, m.AgentCalls, m.Conflicts)
	return m
}

// StateCollector reports the number of reservations in each state at scrape time.
func (m *Manager) StateCollector() prometheus.Collector {
	return &stateCollector{
		desc: prometheus.NewDesc("von_manager_reservations", "Reservations by state.", []string{"state"}, nil),
		count: func() (map[string]int, error) {
			out := map[string]int{}
			for _, st := range []vonv1.ReservationState{vonv1.ReservationState_RESERVATION_STATE_PREPARING,
				vonv1.ReservationState_RESERVATION_STATE_COMMITTED, vonv1.ReservationState_RESERVATION_STATE_RELEASING,
				vonv1.ReservationState_RESERVATION_STATE_RELEASED, vonv1.ReservationState_RESERVATION_STATE_EXPIRED,
				vonv1.ReservationState_RESERVATION_STATE_FAILED} {
				out[stateName(st)] = 0
			}
			if x := m.index(); x != nil { // the leader counts from its index
				for st, n := range x.stateCounts() {
					out[stateName(st)] = n
				}
				return out, nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ons, _, err := m.store.List(ctx)
			if err != nil {
				return nil, err
			}
			for _, r := range ons {
				out[stateName(r.GetState())]++
			}
			return out, nil
		},
	}
}

// stateCollector reports reservations by state at scrape time.
type stateCollector struct {
	desc  *prometheus.Desc
	count func() (map[string]int, error)
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.count()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), s)
	}
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
