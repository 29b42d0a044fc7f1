package agent

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's own instruments; kernel counters are read at scrape
// time by the collector (Collect calls partition's Observe).
type metrics struct {
	calls         *prometheus.CounterVec
	callSeconds   *prometheus.HistogramVec
	register      *prometheus.CounterVec
	stateAnswers  *prometheus.CounterVec
	leaseExpired  prometheus.Counter
	holdExpired   prometheus.Counter
	applyErrors   prometheus.Counter
	journalErrors prometheus.Counter
	applySeconds  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, a *Agent) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "von_agent_rpc_calls_total",
			Help: "AgentService calls by method and outcome (ok, prepared, refused, or the gRPC code)."}, []string{"method", "outcome"}),
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "von_agent_rpc_seconds",
			Help:    "Time the agent took to answer an AgentService call (Prepare, Commit, Refresh, ...), by method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"method"}),
		register: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "von_agent_register_total",
			Help: "Register calls to the manager by outcome (ok, error)."}, []string{"outcome"}),
		stateAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "von_agent_state_answers_total",
			Help: "Answers to converging registrations (after a start or a failed call), by answer: kept (the manager said the agent's state is current) or full (it sent the router's whole desired state)."}, []string{"answer"}),
		leaseExpired: prometheus.NewCounter(prometheus.CounterOpts{Name: "von_agent_lease_expirations_total",
			Help: "Committed partitions removed by the failsafe because their lease ran out."}),
		holdExpired: prometheus.NewCounter(prometheus.CounterOpts{Name: "von_agent_hold_expirations_total",
			Help: "Prepared holds dropped because no decision came within hold_ttl."}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "von_agent_apply_errors_total",
			Help: "Failed convergences of the data plane."}),
		journalErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "von_agent_journal_errors_total",
			Help: "Failed journal writes."}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "von_agent_apply_seconds",
			Help: "Time to converge the data plane.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}),
	}
	reg.MustRegister(m.calls, m.callSeconds, m.register, m.stateAnswers, m.leaseExpired, m.holdExpired, m.applyErrors, m.journalErrors, m.applySeconds,
		&collector{a: a}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

var (
	descONBytes   = prometheus.NewDesc("von_agent_on_bytes_total", "Bytes sent through an ON's HTB class on an interface.", []string{"on_id", "interface"}, nil)
	descONPackets = prometheus.NewDesc("von_agent_on_packets_total", "Packets sent through an ON's HTB class on an interface.", []string{"on_id", "interface"}, nil)
	descONDrops   = prometheus.NewDesc("von_agent_on_drops_total", "Packets an ON's HTB class dropped on an interface.", []string{"on_id", "interface"}, nil)
	descBEBytes   = prometheus.NewDesc("von_agent_best_effort_bytes_total", "Bytes sent through the best-effort class of a managed interface.", []string{"interface"}, nil)
	descBEPackets = prometheus.NewDesc("von_agent_best_effort_packets_total", "Packets sent through the best-effort class of a managed interface.", []string{"interface"}, nil)
	descBEDrops   = prometheus.NewDesc("von_agent_best_effort_drops_total", "Packets the best-effort class of a managed interface dropped.", []string{"interface"}, nil)
	descCapacity  = prometheus.NewDesc("von_agent_interface_capacity_bps", "Capacity of a managed interface's HTB root class, bit/s.", []string{"interface"}, nil)
	descPoliced   = prometheus.NewDesc("von_agent_policed_packets_total", "ON-marked packets from non-members caught by edge policing.", nil, nil)
	descParts     = prometheus.NewDesc("von_agent_partitions", "Partitions held by the agent, by state (prepared, committed).", []string{"state"}, nil)
	descSkipped   = prometheus.NewDesc("von_agent_partitions_not_enforced", "Committed partitions the router cannot enforce now (see Status drift).", nil, nil)
	descEpoch     = prometheus.NewDesc("von_agent_leader_epoch", "Highest manager leader epoch the agent has accepted.", nil, nil)
	descConverged = prometheus.NewDesc("von_agent_converged", "1 if the last convergence of the data plane succeeded.", nil, nil)
	descIfUp      = prometheus.NewDesc("von_agent_interface_up", "1 if a manageable interface is administratively and operationally up (what the agent reports to the manager).", []string{"interface"}, nil)
	descLeaseLeft = prometheus.NewDesc("von_agent_partition_lease_remaining_seconds", "Time until the soonest committed partition lease runs out unless a manager refreshes it; absent with no committed partition.", nil, nil)
)

// MetricDescs describes every series an agent serves at /metrics, the Go and
// process collectors' included, without an agent: deploy/'s tests check the
// Grafana dashboard and the alert rules against it.
func MetricDescs() []*prometheus.Desc {
	var d describer
	newMetrics(&d, nil)
	return d
}

// describer is a Registerer that keeps the descriptions of what is registered.
type describer []*prometheus.Desc

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for x := range ch {
		*d = append(*d, x)
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return false }

type collector struct{ a *Agent }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descONBytes, descONPackets, descONDrops, descBEBytes, descBEPackets, descBEDrops,
		descCapacity, descPoliced, descParts, descSkipped, descEpoch, descConverged, descIfUp, descLeaseLeft} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	prepared, committed, skipped, epoch := len(a.st.holds), len(a.st.committed), len(a.skipped), a.st.epoch
	converged := 0.0
	if a.applyErr == nil {
		converged = 1
	}
	var soonest time.Time
	for _, c := range a.st.committed {
		if soonest.IsZero() || c.LeaseExpire.Before(soonest) {
			soonest = c.LeaseExpire
		}
	}
	a.mu.Unlock()
	if !soonest.IsZero() {
		ch <- prometheus.MustNewConstMetric(descLeaseLeft, prometheus.GaugeValue, max(time.Until(soonest).Seconds(), 0))
	}
	if ifs, err := a.dp.interfaces(); err == nil {
		for _, i := range ifs {
			if i.Name == "lo" || !a.cfg.manageable(i.Name) {
				continue
			}
			up := 0.0
			if i.Up {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(descIfUp, prometheus.GaugeValue, up, i.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(descParts, prometheus.GaugeValue, float64(prepared), "prepared")
	ch <- prometheus.MustNewConstMetric(descParts, prometheus.GaugeValue, float64(committed), "committed")
	ch <- prometheus.MustNewConstMetric(descSkipped, prometheus.GaugeValue, float64(skipped))
	ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(epoch))
	ch <- prometheus.MustNewConstMetric(descConverged, prometheus.GaugeValue, converged)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	obs, err := a.dp.observe(ctx)
	if err != nil {
		a.log.Debug("metrics: observe failed", "err", err)
		return
	}
	for ifn, st := range obs.Interfaces {
		ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, float64(st.Capacity), ifn)
		ch <- prometheus.MustNewConstMetric(descBEBytes, prometheus.CounterValue, float64(st.BestEffort.Bytes), ifn)
		ch <- prometheus.MustNewConstMetric(descBEPackets, prometheus.CounterValue, float64(st.BestEffort.Packets), ifn)
		ch <- prometheus.MustNewConstMetric(descBEDrops, prometheus.CounterValue, float64(st.BestEffort.Drops), ifn)
		for id, cnt := range st.ONs {
			on := strconv.FormatUint(uint64(id), 10)
			ch <- prometheus.MustNewConstMetric(descONBytes, prometheus.CounterValue, float64(cnt.Bytes), on, ifn)
			ch <- prometheus.MustNewConstMetric(descONPackets, prometheus.CounterValue, float64(cnt.Packets), on, ifn)
			ch <- prometheus.MustNewConstMetric(descONDrops, prometheus.CounterValue, float64(cnt.Drops), on, ifn)
		}
	}
	ch <- prometheus.MustNewConstMetric(descPoliced, prometheus.CounterValue, float64(obs.Policed.Packets))
}

func (a *Agent) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{ErrorLog: nil}))
	return mux
}

// keptState counts the answer to a converging registration.
func (m *metrics) keptState(kept bool) {
	answer := "full"
	if kept {
		answer = "kept"
	}
	m.stateAnswers.WithLabelValues(answer).Inc()
}
