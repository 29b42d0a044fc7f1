package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// A simulated agent runs the real agent code — 2PC, fencing, journal, leases —
// over a data plane that only validates and records: what scale tests rely
// on. Its votes follow the same checks as on a router, and its state survives
// a restart through the journal.
func TestSimulatedAgent(t *testing.T) {
	dir := t.TempDir()
	sim := func(c *Config) {
		c.Netns = "no-such-namespace" // ignored
		c.Simulate = []SimulatedInterface{{Name: "eth0", Addrs: []string{"10.77.0.1/30"}}, {Name: "eth1", Addrs: []string{"10.77.0.5/30"}}}
	}
	r := startAgent(t, nil, dir, sim)
	install(t, r, "t1", 1, spec(1, 1e6, time.Minute))
	bad := spec(2, 1e6, time.Minute)
	bad.Classes[0].Interface = "eth9"
	if v := prepare(t, r, "t2", 1, bad, time.Second); v.GetVote() != vonv1.Vote_VOTE_REFUSED || !strings.Contains(v.GetReason(), "eth9") {
		t.Fatalf("prepare on a missing interface: %v %q", v.GetVote(), v.GetReason())
	}
	over := spec(3, bottleneck, time.Minute)
	if v := prepare(t, r, "t3", 1, over, time.Second); v.GetVote() != vonv1.Vote_VOTE_REFUSED || !strings.Contains(v.GetReason(), "cannot add") {
		t.Fatalf("prepare beyond capacity: %v %q", v.GetVote(), v.GetReason())
	}
	st, err := r.c.Status(ctxT(t), &vonv1.AgentServiceStatusRequest{})
	if err != nil || len(st.GetPartitions()) != 1 || len(st.GetInterfaces()) != 2 {
		t.Fatalf("status: %v %v", st, err)
	}
	r.stop(t)
	r = startAgent(t, nil, dir, sim)
	if _, err := r.c.Refresh(ctxT(t), &vonv1.AgentServiceRefreshRequest{LeaderEpoch: 1, OnIds: []uint32{1}}); err != nil {
		t.Fatal(err)
	}
	st, err = r.c.Status(context.Background(), &vonv1.AgentServiceStatusRequest{})
	if err != nil || len(st.GetPartitions()) != 1 || st.GetPartitions()[0].GetOnId() != 1 {
		t.Fatalf("after restart: %v %v", st, err)
	}
}

// The series the dashboard and the alert rules rely on (deploy/grafana) come out
// of a simulated agent too: RPC latency by method, interface state, and the
// soonest partition lease.
func TestSimulatedAgentMetrics(t *testing.T) {
	sim := func(c *Config) {
		c.Simulate = []SimulatedInterface{{Name: "eth0", Addrs: []string{"10.77.0.1/30"}}, {Name: "eth1", Addrs: []string{"10.77.0.5/30"}}}
	}
	r := startAgent(t, nil, t.TempDir(), sim)
	if _, err := r.a.Registry().Gather(); err != nil {
		t.Fatalf("gather with no partition: %v", err)
	}
	install(t, r, "t1", 1, spec(1, 1e6, time.Minute))
	mfs, err := r.a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetGauge() != nil:
				got[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"von_agent_interface_up,interface=eth0": 1,
		"von_agent_interface_up,interface=eth1": 1,
		"von_agent_rpc_seconds,method=Prepare":  1,
		"von_agent_rpc_seconds,method=Commit":   1,
		"von_agent_partitions,state=committed":  1,
		"von_agent_partitions_not_enforced":     0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	if left := got["von_agent_partition_lease_remaining_seconds"]; left <= 50 || left > 60 {
		t.Errorf("von_agent_partition_lease_remaining_seconds = %v, want just under the 1 min lease", left)
	}
	names := map[string]bool{}
	for _, d := range MetricDescs() {
		if names[d.String()] {
			t.Errorf("described twice: %s", d)
		}
		names[d.String()] = true
	}
	for _, mf := range mfs {
		found := false
		for n := range names {
			if strings.Contains(n, `fqName: "`+mf.GetName()+`"`) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s is served but not in MetricDescs", mf.GetName())
		}
	}
}
