package reservation

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// The series operators' alerts rely on, from a real manager on a real etcd: a
// link that goes down shows as a degraded ON, an agent that stops registering as
// a down agent, a failover as a move of von_manager_leader, and a lease that
// runs out as a lease expiry.

// metricsRegistry gives cfg metrics on a registry of their own; register adds
// a manager's state collector to it.
func metricsRegistry(cfg *Config) (reg *prometheus.Registry, register func(*Manager)) {
	reg = prometheus.NewRegistry()
	cfg.Metrics = NewMetrics(reg)
	return reg, func(m *Manager) { reg.MustRegister(m.StateCollector()) }
}

// metricsRun runs a manager (campaigning: it may not lead) until stop, which
// the test's cleanup also calls.
func metricsRun(t *testing.T, cli *clientv3.Client, cfg Config) (*Manager, func()) {
	t.Helper()
	m := New(cli, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager %s run: %v", cfg.ID, err)
			}
			m.Close()
		})
	}
	t.Cleanup(stop)
	return m, stop
}

// metricValue is the value of the sample of family name whose labels include
// labels (name, value, ...); a counter's count, a histogram's number of
// observations. ok is false when there is no such sample.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, s := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range s.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue samples
				}
			}
			switch {
			case s.Counter != nil:
				return s.GetCounter().GetValue(), true
			case s.Gauge != nil:
				return s.GetGauge().GetValue(), true
			case s.Histogram != nil:
				return float64(s.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// waitMetric waits up to 10 s for the sample to read want.
func waitMetric(t *testing.T, g prometheus.Gatherer, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok := metricValue(t, g, name, labels...)
		if ok && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v (present %v), want %v", name, labels, v, ok, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A committed ON whose path crosses a link a router reports down counts in
// von_manager_reservations_degraded, on the leader (its index) and on a
// standby (the store), until the link is back.
func TestMetricsDegradedWhileALinkIsDown(t *testing.T) {
	_, cli := newEtcd(t)
	cfg := Config{ExpiryInterval: 50 * time.Millisecond}
	reg, register := metricsRegistry(&cfg)
	m := startManager(t, cli, cfg)
	register(m)
	standby := New(cli, Config{}) // never campaigns: reads the store
	defer standby.Close()
	sreg := prometheus.NewRegistry()
	sreg.MustRegister(standby.StateCollector())

	register1 := routedWithCommitted(t, m)
	waitMetric(t, reg, 1, "von_manager_reservations", "state", "committed")
	if m.index() == nil {
		t.Fatal("the leader has no index: its count would come from the store")
	}
	time.Sleep(300 * time.Millisecond) // several degradation checks
	for name, g := range map[string]prometheus.Gatherer{"leader": reg, "standby": sreg} {
		for _, red := range []string{"false", "true"} {
			if v, ok := metricValue(t, g, "von_manager_reservations_degraded", "redundant", red); !ok || v != 0 {
				t.Fatalf("%s, every link up: degraded{redundant=%q} = %v (present %v), want 0", name, red, v, ok)
			}
		}
	}

	register1(false) // r1:eth1, on the ON's only path, goes down
	waitMetric(t, reg, 1, "von_manager_reservations_degraded", "redundant", "false")
	waitMetric(t, sreg, 1, "von_manager_reservations_degraded", "redundant", "false")
	if v, _ := metricValue(t, reg, "von_manager_reservations_degraded", "redundant", "true"); v != 0 {
		t.Errorf("a one-path ON counted as redundant: %v", v)
	}
	register1(true)
	waitMetric(t, reg, 0, "von_manager_reservations_degraded", "redundant", "false")
	waitMetric(t, sreg, 0, "von_manager_reservations_degraded", "redundant", "false")
}

// An agent that stops registering counts as down once --agent-liveness has
// passed, on the leader (its own clock) and on a standby (the record's time);
// one that keeps registering stays live.
func TestMetricsAgentsByLiveness(t *testing.T) {
	_, cli := newEtcd(t)
	cfg := Config{AgentLiveness: time.Second}
	reg, register := metricsRegistry(&cfg)
	m := startManager(t, cli, cfg)
	register(m)
	standby := New(cli, Config{AgentLiveness: time.Second})
	defer standby.Close()
	sreg := prometheus.NewRegistry()
	sreg.MustRegister(standby.StateCollector())
	ctx := context.Background()
	heartbeat := func(node string) {
		if err := m.store.PutAgent(ctx, &vonv1.Agent{Node: node, Endpoint: "127.0.0.1:1", LastSeenTime: timestamppb.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	heartbeat("r1")
	heartbeat("r2")
	waitMetric(t, reg, 2, "von_manager_agents", "state", "live")
	for name, g := range map[string]prometheus.Gatherer{"leader": reg, "standby": sreg} {
		if v, ok := metricValue(t, g, "von_manager_agents", "state", "down"); !ok || v != 0 {
			t.Fatalf("%s: down = %v (present %v) with both agents just registered", name, v, ok)
		}
	}
	// r1 keeps registering, r2 stops.
	deadline := time.Now().Add(10 * time.Second)
	for {
		heartbeat("r1")
		live, _ := metricValue(t, reg, "von_manager_agents", "state", "live")
		down, _ := metricValue(t, reg, "von_manager_agents", "state", "down")
		slive, _ := metricValue(t, sreg, "von_manager_agents", "state", "live")
		sdown, _ := metricValue(t, sreg, "von_manager_agents", "state", "down")
		if live == 1 && down == 1 && slive == 1 && sdown == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("r2 silent for 10 s: leader live %v down %v, standby live %v down %v; want 1 and 1", live, down, slive, sdown)
		}
		time.Sleep(100 * time.Millisecond)
	}
	heartbeat("r2")
	waitMetric(t, reg, 0, "von_manager_agents", "state", "down")
}

// von_manager_leader is 1 on the leader and 0 on a standby, and moves with a
// failover.
func TestMetricsLeader(t *testing.T) {
	_, cli := newEtcd(t)
	cfg1, cfg2 := Config{ID: "m1"}, Config{ID: "m2"}
	reg1, register1 := metricsRegistry(&cfg1)
	reg2, register2 := metricsRegistry(&cfg2)
	m1, stop1 := metricsRun(t, cli, cfg1)
	register1(m1)
	select {
	case <-m1.Leading():
	case <-time.After(10 * time.Second):
		t.Fatal("m1 does not lead")
	}
	m2, _ := metricsRun(t, cli, cfg2)
	register2(m2)
	waitMetric(t, reg1, 1, "von_manager_leader")
	time.Sleep(200 * time.Millisecond) // m2 campaigns meanwhile
	if v, ok := metricValue(t, reg2, "von_manager_leader"); !ok || v != 0 {
		t.Fatalf("standby m2: von_manager_leader = %v (present %v), want 0", v, ok)
	}
	stop1() // resigns: m2 takes over
	select {
	case <-m2.Leading():
	case <-time.After(10 * time.Second):
		t.Fatal("m2 does not take over")
	}
	waitMetric(t, reg2, 1, "von_manager_leader")
	waitMetric(t, reg1, 0, "von_manager_leader")
}

// A reservation whose lease runs out counts once in
// von_manager_lease_expiries_total; a release by its holder does not. Both
// are release rounds (von_manager_release_seconds), neither a reserve round.
func TestMetricsLeaseExpiries(t *testing.T) {
	_, cli := newEtcd(t)
	cfg := Config{ExpiryInterval: 50 * time.Millisecond}
	reg, _ := metricsRegistry(&cfg)
	m := startManager(t, cli, cfg)
	applyYAML(t, m, direct)
	ctx := context.Background()
	for name, ttl := range map[string]time.Duration{"short": time.Second, "long": time.Hour} {
		if _, err := m.Reserve(ctx, ReserveRequest{Name: name, Members: []string{"h1", "h2"}, Rate: 1_000_000, TTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Release(ctx, "long"); err != nil {
		t.Fatal(err)
	}
	if v, _ := metricValue(t, reg, "von_manager_release_seconds", "outcome", "ok"); v != 1 {
		t.Errorf("release rounds after one release: %v", v)
	}
	if v, ok := metricValue(t, reg, "von_manager_lease_expiries_total"); !ok || v != 0 {
		t.Fatalf("lease expiries after a release by the holder: %v (present %v), want 0", v, ok)
	}
	waitMetric(t, reg, 1, "von_manager_lease_expiries_total")
	if got, _, err := m.store.Get(ctx, "short"); err != nil || got.GetState() != vonv1.ReservationState_RESERVATION_STATE_EXPIRED {
		t.Fatalf("counted an expiry, but the reservation is %v (%v)", got.GetState(), err)
	}
	time.Sleep(300 * time.Millisecond) // more expiry scans: the record stays EXPIRED, counted once
	if v, _ := metricValue(t, reg, "von_manager_lease_expiries_total"); v != 1 {
		t.Errorf("lease expiries: %v, want 1", v)
	}
	if v, _ := metricValue(t, reg, "von_manager_release_seconds", "outcome", "ok"); v != 2 {
		t.Errorf("release rounds: %v, want 2 (a release and an expiry)", v)
	}
	if v, _ := metricValue(t, reg, "von_manager_twopc_seconds", "outcome", "commit"); v != 2 {
		t.Errorf("reserve rounds: %v, want 2 (releases are not reserve rounds)", v)
	}
}

// An expiry a leader began and did not finish (it stopped with the record
// RELEASING) is finished by the next leader's recovery, and counted there.
func TestMetricsLeaseExpiryFinishedByRecovery(t *testing.T) {
	_, cli := newEtcd(t)
	ctx := context.Background()
	m0, stop0 := metricsRun(t, cli, Config{ID: "m0"})
	select {
	case <-m0.Leading():
	case <-time.After(10 * time.Second):
		t.Fatal("m0 does not lead")
	}
	applyYAML(t, m0, direct)
	r, err := m0.Reserve(ctx, ReserveRequest{Name: "x", Members: []string{"h1", "h2"}, Rate: 1_000_000, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stop0()
	// What release writes before telling the routers, for an expiry.
	r.State, r.FailureReason = vonv1.ReservationState_RESERVATION_STATE_RELEASING, "lease expired"
	putRecord(t, m0, r)
	b, _ := json.Marshal(txnRecord{ID: "t1", Kind: "release", Name: "x", OnID: r.GetOnId(),
		Decision: stateName(vonv1.ReservationState_RESERVATION_STATE_EXPIRED)})
	if _, err := cli.Put(ctx, m0.store.txnKey("t1"), string(b)); err != nil {
		t.Fatal(err)
	}

	cfg := Config{ID: "m1"}
	reg, _ := metricsRegistry(&cfg)
	m1 := startManager(t, cli, cfg) // recovers before it is Leading
	if got, _, err := m1.store.Get(ctx, "x"); err != nil || got.GetState() != vonv1.ReservationState_RESERVATION_STATE_EXPIRED {
		t.Fatalf("after recovery: %v (%v), want expired", got.GetState(), err)
	}
	if v, _ := metricValue(t, reg, "von_manager_lease_expiries_total"); v != 1 {
		t.Errorf("lease expiries after a recovered expiry: %v, want 1", v)
	}
}
